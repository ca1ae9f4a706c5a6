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

from tfcompress.errors import InputError


def check_counts(what: str, **counts):
    """InputError unless each of ``counts`` (``samples``, ``batch_size``)
    is None or an integer of at least 1.

    >>> check_counts("example", samples=0)
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: example: samples must be an integer of at least 1, got 0
    """
    for name, value in counts.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 1:
            raise InputError(f"{what}: {name} must be an integer of at "
                             f"least 1, got {value!r}")


def _fits(shape, expected) -> bool:
    """``shape`` is one input's shape for ``expected`` (None: any size)."""
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected))


def _batch_array(batch, rank, what):
    """One element of an iterable of batches as an array ``(n, ...)``: the
    first of an ``(x, y)`` pair, a single sample (of the input's rank)
    as a batch of one."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if isinstance(batch, dict):
        raise InputError(f"{what}: data yields a dict ({', '.join(batch)}); "
                         "give the model's inputs as an array (n, ...) or "
                         "batches of it")
    arr = np.asarray(batch)
    return arr[None] if arr.ndim == rank else arr


def as_inputs(data, model, what: str, limit: int | None = None):
    """``data`` as a float32 array matching ``model``'s input shape: an
    array or tensor ``(n, ...)``, ``(x, y)``, a list of batches, or an
    iterable (``tf.data``, generator) of batches, of ``(x, y)`` batches
    or of single samples."""
    if data is None:
        raise InputError(f"{what} needs representative data: an array of "
                         "about 100-1000 model inputs (labels not needed)")
    if len(model.inputs) != 1:
        names = ", ".join(repr(t.name) for t in model.inputs)
        raise InputError(f"{what} takes a model with one input; "
                         f"{model.name!r} has {len(model.inputs)} ({names})")
    expected = tuple(model.inputs[0].shape[1:])
    rank = len(expected)
    if isinstance(data, (tuple, list)) and len(data) == 2 and \
            np.ndim(data[1]) >= 1 and np.ndim(data[0]) > np.ndim(data[1]):
        data = data[0]
    shape = f"(n, {', '.join(str(d) for d in expected)})"
    try:
        if isinstance(data, (tuple, list)) and data and all(
                _fits(np.shape(part)[1:], expected) for part in data):
            data = np.concatenate([np.asarray(part) for part in data])
        elif not hasattr(data, "shape") and hasattr(data, "__iter__") and \
                not isinstance(data, (list, tuple, str, bytes)):
            parts = [_batch_array(batch, rank, what) for batch in data]
            data = np.concatenate(parts) if parts else np.zeros((0,))
        arr = np.asarray(data)
    except InputError:
        raise
    except ValueError:      # parts of different shapes
        raise InputError(f"{what}: data is not one array of inputs; give "
                         f"an array {shape} or batches of it") from None
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what}: data has dtype {arr.dtype}; give numbers "
                         "shaped like the model input")
    if not _fits(arr.shape[1:], expected):
        raise InputError(f"{what}: data has shape {arr.shape}, expected "
                         f"{shape} to match the model input")
    if not len(arr):
        raise InputError(f"{what}: data is empty; give at least one input")
    if limit is not None:
        arr = arr[:limit]
    return arr.astype(np.float32)
