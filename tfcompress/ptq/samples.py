"""Representative data for the post-training steps: an array of model
inputs ``(n, ...)``, ``(x, y)`` (labels ignored), or a ``tf.data`` /
iterable of batches."""

from __future__ import annotations

import numpy as np

from tfcompress.errors import InputError


def as_inputs(data, model, what: str, limit: int | None = None):
    """``data`` as a float32 array matching ``model``'s input shape."""
    if data is None:
        raise InputError(f"{what} needs representative data: an array of "
                         "about 100-1000 model inputs (labels not needed)")
    if isinstance(data, (tuple, list)) and len(data) == 2 and \
            np.ndim(data[1]) >= 1 and np.ndim(data[0]) > np.ndim(data[1]):
        data = data[0]
    if not isinstance(data, np.ndarray) and hasattr(data, "__iter__") and \
            not isinstance(data, (list, tuple)):
        parts = []
        for batch in data:
            batch = batch[0] if isinstance(batch, (tuple, list)) else batch
            parts.append(np.asarray(batch))
        data = np.concatenate(parts) if parts else np.zeros((0,))
    arr = np.asarray(data)
    expected = tuple(model.inputs[0].shape[1:])
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what}: data has dtype {arr.dtype}; give numbers "
                         "shaped like the model input")
    if arr.shape[1:] != expected:
        raise InputError(f"{what}: data has shape {arr.shape}, expected "
                         f"(n, {', '.join(str(d) for d in expected)}) to "
                         "match the model input")
    if not len(arr):
        raise InputError(f"{what}: data is empty; give at least one input")
    if limit is not None:
        arr = arr[:limit]
    return arr.astype(np.float32)
