"""Strip-and-convert: Keras models to TFLite flatbuffers, with a report.

>>> from tfcompress.convert import convert
>>> result = convert(model, "int8", representative_data=x_train[:200],
...                  output_path="model_int8.tflite")   # doctest: +SKIP
>>> print(result.to_table())                            # doctest: +SKIP
"""

from tfcompress.convert.calibration import (choose_range, entropy_range,
                                            percentile_range)
from tfcompress.convert.converter import (MODES, convert, has_fake_quant,
                                          strip_training_wrappers)
from tfcompress.convert.result import ConversionResult, FloatFallbackError

__all__ = ["ConversionResult", "FloatFallbackError", "MODES", "choose_range",
           "convert", "entropy_range", "has_fake_quant", "percentile_range",
           "strip_training_wrappers"]
