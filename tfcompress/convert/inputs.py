"""The inputs ``convert`` calibrates and checks with.

A single-input model takes an array ``(n, *input shape)`` (or ``(x, y)``,
or a generator function as TFLite takes). A model with several inputs
takes a list of such arrays in the order of ``model.inputs``, or a dict
keyed by input name; the samples are then a list of arrays, one per
input, with the same ``n``.

>>> import keras, numpy as np
>>> a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
>>> model = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
>>> x = as_samples({"b": np.zeros((5, 3)), "a": np.ones((5, 4))}, model)
>>> [v.shape for v in x], count(x), [v.shape for v in first(x, 2)]
([(5, 4), (5, 3)], 5, [(2, 4), (2, 3)])
"""

from __future__ import annotations

import numpy as np

from tfcompress.errors import InputError


def input_names(model) -> list:
    """The names of ``model.inputs`` (empty for a subclassed model)."""
    return [t.name.split(":")[0] for t in getattr(model, "inputs", None)
            or []]


def input_shapes(model):
    """``[shape without batch, ...]`` of ``model.inputs``, or None for a
    subclassed model."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    return [tuple(t.shape[1:]) for t in inputs]


def input_dtypes(model) -> list:
    """The numpy dtypes of ``model.inputs`` (float32 for a subclassed
    model); a tf_keras model's ``tf.DType`` too."""
    inputs = getattr(model, "inputs", None) or [None]
    dtypes = [getattr(t, "dtype", None) or "float32" for t in inputs]
    return [np.dtype(getattr(d, "as_numpy_dtype", d)) for d in dtypes]


def count(samples) -> int:
    """How many samples ``samples`` (an array or a list of them) holds."""
    return len(samples[0]) if isinstance(samples, list) else len(samples)


def first(samples, n):
    """The first ``n`` samples."""
    if isinstance(samples, list):
        return [v[:n] for v in samples]
    return samples[:n]


def one_at_a_time(samples):
    """TFLite's representative dataset: a list of ``(1, ...)`` arrays per
    sample, one per input."""
    if isinstance(samples, list):
        return ([v[i:i + 1] for v in samples] for i in range(count(samples)))
    return ([samples[i:i + 1]] for i in range(len(samples)))


def random_samples(shapes, n, seed, dtypes=None):
    """``n`` random samples for inputs of ``shapes``: uniform [0, 1) for
    float inputs, the whole range of 8-bit integer inputs (pixels), 0 or 1
    for wider integers (indices valid for any vocabulary)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for shape, dtype in zip(shapes, dtypes or [np.dtype("float32")] *
                            len(shapes)):
        if dtype == np.float32:
            arrays.append(rng.random((n, *shape), dtype=np.float32))
        elif dtype.kind == "f":
            arrays.append(rng.random((n, *shape)).astype(dtype))
        else:
            high = np.iinfo(dtype).max + 1 if dtype.itemsize == 1 else 2
            low = np.iinfo(dtype).min if dtype.itemsize == 1 else 0
            arrays.append(rng.integers(low, high, (n, *shape)).astype(dtype))
    return arrays[0] if len(arrays) == 1 else arrays


def _checked(arr, expected, what, dtype=np.dtype("float32")):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what} has dtype {arr.dtype}; expected numbers "
                         "(float32 like the model input)")
    if expected is not None and arr.shape[1:] != tuple(expected):
        if arr.shape == tuple(expected):
            arr = arr[None]
        else:
            raise InputError(
                f"{what} has shape {arr.shape}, expected (n, "
                f"{', '.join(str(d) for d in expected)}) to match the "
                "model input")
    if arr.shape[0] == 0:
        raise InputError(f"{what} is empty; give at least one sample")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            # ranges from them are meaningless (and inf crashes the
            # converter's calibration)
            rows = int(bad.reshape(len(arr), -1).any(axis=1).sum())
            raise InputError(
                f"{what} holds {int(bad.sum())} NaN or infinite value(s) (in "
                f"{rows} of {len(arr)} samples); drop or repair those "
                "samples before calibrating")
    return arr.astype(dtype)


def _from_generator(data, inputs):
    per_input = [[] for _ in range(inputs)]
    for item in data():
        parts = list(item) if isinstance(item, (list, tuple)) else [item]
        for i, part in enumerate(parts[:inputs]):
            part = np.asarray(part)
            per_input[i].append(part if part.ndim and part.shape[0] == 1
                                else part[None])
    return [np.concatenate(p) for p in per_input]


def as_samples(data, model, what="representative_data"):
    """Validated samples (an array, or a list per input) in the dtype of
    each model input (float32 for most), or None.

    Raises InputError naming what does not match the model's inputs."""
    if data is None:
        return None
    shapes = input_shapes(model)
    names = input_names(model)
    dtypes = input_dtypes(model)
    if shapes is None or len(shapes) == 1:
        expected = shapes[0] if shapes else None
        if callable(data):
            data = _from_generator(data, 1)[0]
        if isinstance(data, (tuple, list)) and len(data) == 2 and \
                np.ndim(data[1]) == 1:
            data = data[0]   # (x, y)
        return _checked(data, expected, what, dtypes[0])
    if callable(data):
        data = _from_generator(data, len(shapes))
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(names))
        absent = [n for n in names if n not in data]
        if unknown or absent:
            raise InputError(
                f"{what} has keys {sorted(data)}; the model's inputs are "
                f"{names}: give one array per input")
        data = [data[n] for n in names]
    if not isinstance(data, (list, tuple)) or len(data) != len(shapes):
        raise InputError(
            f"{what}: the model has {len(shapes)} inputs ({', '.join(names)})"
            f"; give a list of {len(shapes)} arrays in that order, or a "
            "dict keyed by input name")
    arrays = [_checked(v, shape, f"{what} for input {name!r}", dtype)
              for v, shape, name, dtype in zip(data, shapes, names, dtypes)]
    if len({len(a) for a in arrays}) > 1:
        raise InputError(
            f"{what}: the inputs hold different numbers of samples "
            f"({', '.join(str(len(a)) for a in arrays)}); give the same "
            "number for each")
    return arrays
