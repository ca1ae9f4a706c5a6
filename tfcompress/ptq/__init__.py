"""Post-training quantization: better int8 and 4-bit models without
retraining or labels.

- :func:`fold_batchnorm`: batch norms folded into the layer before them.
- :func:`equalize`: cross-layer equalization with high-bias absorption,
  for per-tensor int8 weights.
- :func:`correct_bias`: empirical bias correction of the mean shift
  weight quantization causes.
- :func:`adaround`: learned rounding (AdaRound) of 8- or 4-bit weights
  onto the exact grid the converter uses; :func:`for_conversion` wraps a
  4-bit result so ``convert`` writes INT4 weights.
- :func:`reestimate_batchnorm`: batch-norm statistics recomputed on data.

Each returns a new model (the input is never changed) that
``tfcompress.convert.convert(model, "int8", ..., strict=True)`` turns into a
fully integer flatbuffer.

>>> from tfcompress import ptq
>>> from tfcompress.convert import convert
>>> m = ptq.equalize(model)                                 # doctest: +SKIP
>>> m = ptq.correct_bias(m, x_calib, per_channel=False)    # doctest: +SKIP
>>> convert(m, "int8", representative_data=x_calib,
...         per_channel=False)                              # doctest: +SKIP
"""

from tfcompress.ptq.adaround import adaround, for_conversion
from tfcompress.ptq.batchnorm import reestimate_batchnorm
from tfcompress.ptq.bias_correction import correct_bias
from tfcompress.ptq.equalize import EqualizationReport, equalize
from tfcompress.ptq.fold import fold_batchnorm

__all__ = ["EqualizationReport", "adaround", "correct_bias", "equalize",
           "fold_batchnorm", "for_conversion", "reestimate_batchnorm"]
