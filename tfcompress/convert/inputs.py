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

from tfcompress.compat import CompatError, keras_history
from tfcompress.errors import InputError


def input_names(model) -> list:
    """The names of ``model.inputs`` (empty for a subclassed model)."""
    return [t.name.split(":")[0] for t in getattr(model, "inputs", None)
            or []]


def input_layer_names(model) -> list:
    """The names of the InputLayers behind ``model.inputs``, what the
    user named (an unnamed ``keras.Input`` gives its layer a name such as
    ``input_layer_1`` and its tensor one such as ``keras_tensor_9``, the
    name :func:`input_names` and dict-keyed data use); the tensor's name
    where the input has no Keras history (a tf_keras model).

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,), name="pixels"),
    ...                           keras.layers.Dense(2)])
    >>> input_layer_names(model)
    ['pixels']
    """
    names = []
    for tensor, name in zip(getattr(model, "inputs", None) or [],
                            input_names(model)):
        try:
            names.append(keras_history(tensor).operation.name)
        except CompatError:
            names.append(name)
    return names


def signature_input_names(model) -> list:
    """The names a converted model's signature gives its inputs, in the
    order of ``model.inputs``: a dict-input model's keys, else the names
    of the InputLayers (:func:`input_layer_names`), which an unnamed
    ``keras.Input`` gets from its layer (``input_layer_1``), not from a
    tensor counter (``keras_tensor_9``): the float, post-training and QAT
    flatbuffers of one model are fed alike.

    >>> import keras
    >>> a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    >>> model = keras.Model({"b": b, "a": a},
    ...                     keras.layers.Concatenate()([a, b]))
    >>> signature_input_names(model)
    ['a', 'b']
    """
    structure = getattr(model, "input", None) if getattr(
        model, "inputs", None) else None
    if isinstance(structure, dict):
        return sorted(structure)          # tf.nest's order of the inputs
    return input_layer_names(model)


def model_feed(model, samples):
    """``samples`` (an array, or a list per input in the order of
    ``model.inputs``) as ``model.predict`` takes them: a dict for a
    dict-input model, keyed as :func:`signature_input_names`.

    >>> import keras, numpy as np
    >>> a, b = keras.Input((2,)), keras.Input((3,))
    >>> model = keras.Model({"b": b, "a": a},
    ...                     keras.layers.Concatenate()([a, b]))
    >>> sorted(model_feed(model, [np.ones((1, 2)), np.ones((1, 3))]))
    ['a', 'b']
    """
    structure = getattr(model, "input", None) if getattr(
        model, "inputs", None) else None
    if isinstance(structure, dict) and isinstance(samples, (list, tuple)):
        return dict(zip(signature_input_names(model), samples))
    return samples


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


def input_ranges(model) -> list:
    """Per model input, the ``(low, high)`` its values are expected in,
    for random inputs: a QAT model's input range (what its first
    fake-quant learned), else [0, 255] for a model that scales its own
    pixels (a Rescaling or Normalization first, as keras.applications'
    MobileNetV3 and EfficientNet), else [0, 1].

    >>> import keras
    >>> input_ranges(keras.Sequential([keras.Input((4, 4, 3)),
    ...                                keras.layers.Rescaling(1 / 255)]))
    [(0.0, 255.0)]
    """
    from tfcompress.models.applications import rescales_input
    from tfcompress.quantize.layers import QuantizeOutput
    inputs = getattr(model, "inputs", None) or []
    default = (0.0, 255.0) if inputs and rescales_input(model) else (0.0,
                                                                    1.0)
    learned = {}
    for layer in getattr(model, "layers", []):
        if isinstance(layer, QuantizeOutput) and layer.layer is None and \
                getattr(layer, "range", None) is not None:
            low, high = (float(v) for v in layer.range[:2])
            if high > low:
                learned[id(layer.input)] = (low, high)
    return [learned.get(id(t), default) for t in inputs] or [default]


def describe_ranges(dtypes, ranges) -> str:
    """The ranges :func:`random_samples` draws each input from, as the
    report shows them: ``ranges`` for float inputs, the type's for 8-bit
    integer inputs, [0, 1] for wider integers.

    >>> import numpy as np
    >>> describe_ranges([np.dtype("float32"), np.dtype("uint8")],
    ...                 [(0.0, 255.0), (0.0, 1.0)])
    '[0, 255], [0, 255]'
    """
    return ", ".join("[{:.4g}, {:.4g}]".format(*_drawn_range(dtype, given))
                     for dtype, given in zip(dtypes, ranges))


def _drawn_range(dtype, given):
    """The closed range random inputs of ``dtype`` are drawn from:
    ``given`` for floats, the whole type for 8-bit integers (pixels), 0 or
    1 for wider integers (indices valid for any vocabulary)."""
    if dtype.kind == "f":
        return given
    if dtype.itemsize == 1:
        return np.iinfo(dtype).min, np.iinfo(dtype).max
    return 0, 1


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


def random_samples(shapes, n, seed, dtypes=None, ranges=None):
    """``n`` random samples for inputs of ``shapes``: uniform in each float
    input's ``(low, high)`` of ``ranges`` (default [0, 1)), the whole range
    of 8-bit integer inputs (pixels), 0 or 1 for wider integers (indices
    valid for any vocabulary)."""
    rng = np.random.default_rng(seed)
    arrays = []
    ranges = ranges or [(0.0, 1.0)] * len(shapes)
    for shape, dtype, (low, high) in zip(
            shapes, dtypes or [np.dtype("float32")] * len(shapes), ranges):
        if dtype.kind == "f":
            unit = rng.random((n, *shape), dtype=np.float32)
            arrays.append((low + unit * (high - low)).astype(dtype))
        else:
            low, high = _drawn_range(dtype, (low, high))
            arrays.append(rng.integers(low, high + 1, (n, *shape))
                          .astype(dtype))
    return arrays[0] if len(arrays) == 1 else arrays


def fits(shape, expected) -> bool:
    """Whether ``shape`` is the shape ``expected`` (None: any size there).

    >>> fits((32, 32, 3), (None, None, 3)), fits((32, 3), (None, None, 3))
    (True, False)
    """
    return len(shape) == len(expected) and all(
        e is None or s == e for s, e in zip(shape, expected))


def _batch_shape(expected) -> str:
    return f"(n, {', '.join(str(d) for d in expected)})"


def _concatenated(batches, expected, what):
    """A list of batches ``(n_i, *expected)`` of one input as one array;
    ``batches`` itself if it is not such a list."""
    if expected is None or not isinstance(batches, (list, tuple)) or \
            not batches:
        return batches
    shapes = [np.shape(b) for b in batches]
    if all(fits(s, expected) for s in shapes):
        return batches                  # samples, not batches
    if all(fits(s[1:], expected) for s in shapes):
        return np.concatenate([np.asarray(b) for b in batches])
    raise InputError(f"{what} is not one array of inputs; give an "
                     f"array {_batch_shape(expected)} or a list of batches "
                     "of it")


def _checked(arr, expected, what, dtype=np.dtype("float32")):
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{what} has dtype {arr.dtype}; expected numbers "
                         "(float32 like the model input)")
    if expected is not None and not fits(arr.shape[1:], expected):
        if fits(arr.shape, expected):
            arr = arr[None]
        else:
            raise InputError(
                f"{what} has shape {arr.shape}, expected "
                f"{_batch_shape(expected)} to match the model input")
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
    if dtype.kind in "iu" and arr.dtype != dtype:
        info = np.iinfo(dtype)
        if (arr != np.round(arr)).any() or arr.min() < info.min or \
                arr.max() > info.max:
            # a cast would floor fractions ([0, 1] pixels to 0) and wrap
            # values outside the type
            raise InputError(
                f"{what} holds values in [{float(arr.min()):g}, "
                f"{float(arr.max()):g}] but the model input is {dtype}: give "
                f"whole numbers from {info.min} to {info.max} (pixels as "
                "the model takes them, not scaled to [0, 1])")
    return arr.astype(dtype)


def _items(data):
    """The items of a generator function, generator, iterator or
    ``tf.data.Dataset`` ``data``, as numpy; None if ``data`` is none of
    these (an array, a list of arrays, a dict)."""
    if callable(data):
        data = data()
    if hasattr(data, "as_numpy_iterator"):       # tf.data.Dataset
        return data.as_numpy_iterator()
    if hasattr(data, "__next__"):                # generator, iterator
        return data
    return None


def _from_generator(items, shapes, names, what, limit=None):
    """One array per input from ``items`` (each an array, a list or tuple
    with one array per input, or a dict keyed by input name, maybe
    followed by labels), each a single sample or a batch; at most
    ``limit`` samples are read."""
    per_input = [[] for _ in shapes]
    n = 0
    for item in items:
        if isinstance(item, (list, tuple)) and item and \
                isinstance(item[0], (list, tuple, dict)):
            item = item[0]      # (inputs, labels)
        if isinstance(item, dict):
            absent = [k for k in names if k not in item]
            if absent and len(names) == 1 and len(item) == 1:
                item = list(item.values())
            elif absent:
                raise InputError(
                    f"{what} yields dicts with keys {sorted(item)}; the "
                    f"model's inputs are {names}")
            else:
                item = [item[k] for k in names]
        parts = list(item) if isinstance(item, (list, tuple)) else [item]
        for i, (part, shape) in enumerate(zip(parts, shapes)):
            part = np.asarray(part)
            batched = part.ndim == len(shape) + 1 if shape is not None \
                else part.ndim and part.shape[0] == 1
            per_input[i].append(part if batched else part[None])
        n += len(per_input[0][-1]) if per_input[0] else 0
        if limit is not None and n >= limit:
            break
    if not per_input[0]:
        raise InputError(f"{what} yielded no samples; give at least one")
    return [np.concatenate(p) for p in per_input]


def _one_hot_pair(data, expected):
    """Whether ``data`` (two items) is ``(x, one-hot y)`` for an input of
    shape ``expected``, not two batches of inputs."""
    if expected is None or np.ndim(data[1]) != 2:
        return False
    x, y = np.shape(data[0]), np.shape(data[1])
    return len(x) == len(expected) + 1 and x[0] == y[0] and x != y


def _by_input_name(data, names, what, signature_names=None):
    """The arrays of dict ``data`` in the order of the model's input
    ``names`` (the one array for a single input); keyed either by those
    (tensor) names or by the ``signature_names`` the flatbuffer gives the
    same inputs (:func:`signature_input_names`)."""
    if not names and len(data) == 1:
        return next(iter(data.values()))   # subclassed: no input names
    for keys in (names, signature_names or names):
        if sorted(data) == sorted(keys):
            arrays = [data[n] for n in keys]
            return arrays[0] if len(arrays) == 1 else arrays
    shown = signature_names or names
    raise InputError(
        f"{what} has keys {sorted(data)}; the model's inputs are "
        f"{shown}: give one array per input, keyed by input name")


def as_samples(data, model, what="representative_data", limit=None):
    """Validated samples (an array, or a list per input) in the dtype of
    each model input (float32 for most), or None.

    ``data`` is an array or tensor (``(x, y)`` too), a list of batches
    of a single input, a list or dict of arrays (one per input), or a
    generator function, generator or ``tf.data.Dataset`` yielding samples
    or batches (of which at most ``limit`` samples are read). A size the
    model leaves open (None) takes any size.

    Raises InputError naming what does not match the model's inputs."""
    if data is None:
        return None
    shapes = input_shapes(model)
    names = input_names(model)
    dtypes = input_dtypes(model)
    items = _items(data)
    if items is not None:
        data = _from_generator(items, shapes or [None], names or [None],
                               what, limit)
        data = data[0] if len(data) == 1 else data
    if isinstance(data, dict):
        data = _by_input_name(data, names, what,
                              signature_input_names(model) if names
                              else None)
    if shapes is None or len(shapes) == 1:
        expected = shapes[0] if shapes else None
        if isinstance(data, (tuple, list)) and len(data) == 2 and (
                np.ndim(data[1]) == 1 or _one_hot_pair(data, expected)):
            data = data[0]   # (x, y), y labels or one-hot
        data = _concatenated(data, expected, what)
        return _checked(data, expected, what, dtypes[0])
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
