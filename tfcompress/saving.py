"""Loading the ``.keras`` files tfcompress writes.

Every layer and object tfcompress puts into a model (pruning and clustering
wrappers, pruning schedules, QAT layers) is registered with Keras under the
package name ``tfcompress``. ``import tfcompress`` registers them as soon as
Keras is imported (at once when Keras already is), so after it plain
``keras.saving.load_model`` loads any tfcompress model in safe mode.
``import tfcompress`` itself still imports no TensorFlow.

>>> import tfcompress
>>> model = tfcompress.load_model("runs/fashion_mnist_cnn/baseline.keras")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
import zipfile

from tfcompress import compat
from tfcompress.errors import InputError

# Importing these registers every Keras serializable tfcompress defines.
SERIALIZABLE_PACKAGES = ("tfcompress.prune", "tfcompress.quantize",
                         "tfcompress.cluster", "tfcompress.ptq")

# An import of either runs the other; registration waits for the outer one.
_WATCHED = ("keras", "tensorflow")
# ... and for a tfcompress module being imported around it: a module that
# imports keras before defining its own names (tfcompress.utils.flatten)
# would otherwise be imported again, half done, by the registration.
_WATCHED_PREFIX = "tfcompress."


def register_serializables():
    """Registers tfcompress's layers and objects with Keras (idempotent).

    >>> register_serializables()
    >>> import keras
    >>> keras.saving.get_registered_object("tfcompress>PruneLowMagnitude")
    <class 'tfcompress.prune.wrapper.PruneLowMagnitude'>
    """
    for name in SERIALIZABLE_PACKAGES:
        importlib.import_module(name)


def load_model(path, compile=True, safe_mode=True):
    """Loads a ``.keras`` model tfcompress (or anyone) saved.

    Works for every kind of model tfcompress writes: pruned (with wrappers
    or stripped), quantization-aware (any scheme), clustered (with wrappers
    or stripped), shrunk and distilled students. Arguments are those of
    ``keras.saving.load_model``; safe mode stays on by default.

    Raises:
      InputError: the file does not exist or is not a Keras model.

    >>> import os, tempfile, keras
    >>> from tfcompress import prune
    >>> pruned = prune.prune_low_magnitude(
    ...     keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
    ...     prune.ConstantSparsity(0.5, begin_step=0))
    >>> path = os.path.join(tempfile.mkdtemp(), "pruned.keras")
    >>> pruned.save(path)
    >>> type(load_model(path).layers[0]).__name__
    'PruneLowMagnitude'
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"model {path} does not exist; give the path of a "
                         ".keras file")
    if os.path.isdir(path):
        raise InputError(f"model {path} is a folder; give the path of a "
                         ".keras file")
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise InputError(f"model {path} is not a .keras file (a .keras file "
                         "is a zip archive; this one is not, or is cut "
                         "short): save the model again with "
                         "model.save(path)")
    register_serializables()
    import keras
    try:
        return keras.saving.load_model(path, compile=compile,
                                       safe_mode=safe_mode)
    except Exception as e:  # any unreadable or foreign file
        if "Lambda" in str(e) and "safe_mode" in str(e):
            raise InputError(
                f"cannot load {path}: it holds a Lambda layer with a Python "
                "lambda, which Keras loads only with safe_mode=False; "
                "replace the Lambda with a layer or a keras.ops call, or "
                "load it in Python with tfcompress.saving.load_model(path, "
                "safe_mode=False) if you trust the file") from e
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise InputError(f"cannot load {path} as a Keras model: {first}") \
            from e


def _register_or_warn():
    try:
        register_serializables()
    except ImportError as e:  # pragma: no cover - broken installation
        warnings.warn(f"tfcompress could not register its Keras layers "
                      f"({e}); use tfcompress.load_model to load "
                      "tfcompress models", stacklevel=2)


def register_on_keras_import():
    """Registers the serializables now if Keras is loaded, else right after
    Keras (or TensorFlow) is first imported. Called by ``import
    tfcompress``."""
    if sys.modules.get("keras") is not None:
        register_serializables()
        return
    compat.run_after_import("keras", _WATCHED, _WATCHED_PREFIX,
                            _register_or_warn)
