"""Strip-and-convert: Keras models to TFLite flatbuffers, with a report.

>>> from tfcompress.convert import convert
>>> result = convert(model, "int8", representative_data=x_train[:200],
...                  output_path="model_int8.tflite")   # doctest: +SKIP
>>> print(result.to_table())                            # doctest: +SKIP
"""

from tfcompress.convert.calibration import (choose_range, entropy_range,
                                            percentile_range)
from tfcompress.convert.converter import (convert, has_fake_quant,
                                          strip_training_wrappers)
from tfcompress.convert.options import (CALIBRATIONS, IO_TYPES, MODES,
                                        io_types_for)
from tfcompress.convert.result import (ConversionResult, FloatFallbackError,
                                       UnrunnableModelError)

__all__ = ["CALIBRATIONS", "ConversionResult", "FloatFallbackError",
           "IO_TYPES", "MODES", "choose_range", "io_types_for",
           "convert", "entropy_range", "has_fake_quant", "percentile_range",
           "strip_training_wrappers", "UnrunnableModelError"]
