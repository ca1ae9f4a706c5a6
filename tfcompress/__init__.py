"""tfcompress: model compression for Keras 3.

Pruning (``tfcompress.prune``), quantization-aware training
(``tfcompress.quantize``), int8 TFLite conversion (``tfcompress.convert``)
and on-device benchmarks (``tfcompress.bench``).

Importing ``tfcompress`` itself imports no TensorFlow, so the device-side
benchmark runner works with only numpy and a TFLite runtime installed.
Subpackages are imported on first use:

>>> import tfcompress
>>> tfcompress.__version__
'0.1.0'

Models tfcompress saves load back with ``tfcompress.load_model(path)``, or
with plain ``keras.saving.load_model`` once ``tfcompress`` is imported (its
layers register with Keras when Keras is imported; see
``tfcompress.saving``).
"""

import importlib

from tfcompress.saving import load_model
from tfcompress.saving import register_on_keras_import as _register

__version__ = "0.1.0"

_SUBPACKAGES = ("analyze", "bench", "cluster", "convert", "data", "distill",
                "ptq",
                "distribute",
                "inspect", "models", "prune", "quantize", "recipes",
                "utils")

_register()


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"tfcompress.{name}")
    raise AttributeError(f"module 'tfcompress' has no attribute {name!r}")
