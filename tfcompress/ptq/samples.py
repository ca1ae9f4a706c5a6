"""Representative data for the post-training steps: an array or tensor of
model inputs ``(n, ...)``, ``(x, y)`` (labels ignored), a list of batches,
or a ``tf.data`` / iterable of batches (or of single samples).

>>> import keras
>>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
>>> x = np.arange(12, dtype="float32").reshape(4, 3)
>>> as_inputs(iter(x), m, "example").shape       # single samples
(4, 3)
>>> as_inputs([x[:2], x[2:]], m, "example").shape  # a list of batches
(4, 3)
"""

from __future__ import annotations

import numpy as np

from tfcompress.convert.inputs import as_samples
from tfcompress.errors import InputError


def as_inputs(data, model, what: str, limit: int | None = None):
    """``data`` as a float32 array of ``model``'s inputs, read as
    ``convert`` reads representative data
    (:func:`tfcompress.convert.inputs.as_samples`): an array or tensor
    ``(n, ...)``, ``(x, y)``, a list of batches, or an iterable
    (``tf.data``, generator) of batches, of ``(x, y)`` batches or of
    single samples; at most ``limit`` samples."""
    if data is None:
        raise InputError(f"{what} needs representative data: an array of "
                         "about 100-1000 model inputs (labels not needed)")
    if len(model.inputs) != 1:
        names = ", ".join(repr(t.name) for t in model.inputs)
        raise InputError(f"{what} takes a model with one input; "
                         f"{model.name!r} has {len(model.inputs)} ({names})")
    arr = as_samples(data, model, f"{what}: data", limit)
    if limit is not None:
        arr = arr[:limit]
    return arr.astype(np.float32)
