"""Read .tflite flatbuffers without TensorFlow: ``inspect(path_or_bytes)``.

>>> from tfcompress.inspect import inspect, format_report
>>> print(format_report(inspect("model.tflite")))   # doctest: +SKIP
"""

from tfcompress.inspect.flatbuffer import FlatbufferError
from tfcompress.inspect.report import format_report, inspect, layer_of

__all__ = ["FlatbufferError", "format_report", "inspect", "layer_of"]
