"""Analysis tools: per-layer sensitivity to pruning and quantization.

>>> from tfcompress.analyze import sensitivity, propose_sparsities  # doctest: +SKIP
"""

from tfcompress.analyze.sensitivity import (SensitivityResult,
                                            layers_to_keep_float,
                                            propose_sparsities, sensitivity)

__all__ = ["SensitivityResult", "layers_to_keep_float", "propose_sparsities",
           "sensitivity"]
