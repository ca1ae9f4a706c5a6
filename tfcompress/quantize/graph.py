"""The nodes of a Functional model, with keras.ops calls as layers.

``x + 3.0`` or ``keras.ops.multiply(x, y)`` in a functional graph are
recorded as operations, not layers; :func:`functional_graph` turns each one
into the equivalent layer (``Add``/``Multiply``/... for two tensors,
:class:`ConstantArithmetic` for a tensor and a number, ``Rescaling`` for a
tensor and per-channel constants, :class:`ChannelPermutation` for the
channel reordering ``x[..., ::-1]`` or ``stack([x[..., 2], x[..., 1],
x[..., 0]], axis=-1)``) so the QAT transform sees layers only. These are
what ``keras.applications.<family>.preprocess_input`` applied to a Keras
tensor writes into the graph.

>>> import keras
>>> i = keras.Input((4,))
>>> m = keras.Model(i, keras.layers.ReLU(6.0)(i + 3.0) * (1 / 6))
>>> [type(op).__name__ for op, _ in functional_graph(m)]
['InputLayer', 'ConstantArithmetic', 'ReLU', 'ConstantArithmetic']
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import layers as L

from tfcompress.errors import InputError
from tfcompress.utils import graph as graph_lib

# keras.ops class name -> (layer for two tensors, ConstantArithmetic op)
_BINARY = {"Add": (L.Add, "add"), "Subtract": (L.Subtract, "subtract"),
           "Multiply": (L.Multiply, "multiply"),
           "TrueDivide": (None, "divide"), "Divide": (None, "divide"),
           "Maximum": (L.Maximum, None), "Minimum": (L.Minimum, None)}


@keras.saving.register_keras_serializable(package="tfcompress")
class ConstantArithmetic(keras.layers.Layer):
    """``x <op> constant`` (or ``constant <op> x``) for a Python number:
    the layer form of ``x + 3.0`` or ``x * (1 / 6)`` in a functional graph.
    One TFLite ADD/SUB/MUL with a constant operand.

    >>> import numpy as np
    >>> ConstantArithmetic("multiply", 0.5)(np.ones((1, 2))).numpy().tolist()
    [[0.5, 0.5]]
    """

    OPS = ("add", "subtract", "multiply", "divide")

    def __init__(self, op, constant, tensor_first=True, **kwargs):
        super().__init__(**kwargs)
        if op not in self.OPS:
            raise InputError(f"op {op!r} is not one of {self.OPS}")
        self.op = op
        self.constant = float(constant)
        self.tensor_first = bool(tensor_first)

    def call(self, x):
        a, b = (x, self.constant) if self.tensor_first else (self.constant, x)
        return getattr(keras.ops, self.op)(a, b)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"op": self.op, "constant": self.constant,
                       "tensor_first": self.tensor_first})
        return config


@keras.saving.register_keras_serializable(package="tfcompress")
class ChannelPermutation(keras.layers.Layer):
    """The last axis reordered: ``output[..., i] = x[..., order[i]]`` (an
    RGB to BGR flip is ``order=[2, 1, 0]``). One TFLite GATHER; int8
    values keep their scale.

    >>> import numpy as np
    >>> ChannelPermutation([2, 1, 0])(np.array([[1.0, 2.0, 3.0]])).numpy()
    array([[3., 2., 1.]], dtype=float32)
    """

    def __init__(self, order, **kwargs):
        super().__init__(**kwargs)
        self.order = [int(i) for i in order]

    def call(self, x):
        return keras.ops.take(x, self.order, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (len(self.order),)

    def get_config(self):
        config = super().get_config()
        config.update({"order": self.order})
        return config


class UnsupportedOperationError(InputError):
    """A keras.ops call in a functional graph with no layer equivalent."""


def _constant_array(value):
    """A serialized constant tensor or array operand as a numpy array, or
    None for anything else."""
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, numbers.Number) and not isinstance(v, bool)
            for v in value):
        return np.asarray(value, np.float64)
    if isinstance(value, dict) and value.get("class_name") in (
            "__tensor__", "__numpy__"):
        try:
            return np.asarray(value["config"]["value"], np.float64)
        except (KeyError, TypeError, ValueError):
            return None
    return None


def _channel_affine(op, kind, args, channels):
    """``Rescaling(scale, offset)`` computing ``x <op> constant`` (or
    ``constant <op> x``) for a constant of one value per channel of the
    last axis, or None."""
    at = [i for i, a in enumerate(args) if a is not graph_lib.TENSOR]
    if len(args) != 2 or len(at) != 1:
        return None
    c = _constant_array(args[at[0]])
    if c is None or c.ndim == 0 or any(d != 1 for d in c.shape[:-1]) or \
            c.shape[-1] not in (1, channels):
        return None
    c = c.reshape(-1)
    constant_first = at[0] == 0
    if kind == "Add":
        scale, offset = np.ones_like(c), c
    elif kind == "Subtract":
        scale, offset = ((-np.ones_like(c), c) if constant_first
                         else (np.ones_like(c), -c))
    elif kind == "Multiply":
        scale, offset = c, np.zeros_like(c)
    elif kind in ("TrueDivide", "Divide") and not constant_first and \
            (c != 0).all():
        scale, offset = 1.0 / c, np.zeros_like(c)
    else:
        return None
    return L.Rescaling([float(v) for v in scale],
                       offset=[float(v) for v in offset], name=op.name)


def _is_ellipsis(value):
    return value is Ellipsis or (isinstance(value, dict) and
                                 value.get("class_name") == "__ellipsis__")


def _slice_step(value):
    """``(start, stop, step)`` of a (serialized) slice, or None."""
    if isinstance(value, slice):
        return value.start, value.stop, value.step
    if isinstance(value, dict) and value.get("class_name") == "__slice__":
        c = value.get("config", {})
        return c.get("start"), c.get("stop"), c.get("step")
    return None


def _last_axis_key(node):
    """``k`` if ``node`` is ``x[..., k]`` on a tensor ``x`` (an index or a
    slice of the last axis), else None."""
    if node.is_layer or type(node.op).__name__ != "GetItem" or \
            node.call_kwargs or len(node.call_args) != 2 or \
            node.call_args[0] is not graph_lib.TENSOR:
        return None
    key = node.call_args[1]
    if isinstance(key, (list, tuple)) and len(key) == 2 and \
            _is_ellipsis(key[0]):
        return key[1]
    return None


def _channel_index(node):
    """``i`` if ``node`` is ``x[..., i]`` (one channel of the last axis,
    an int), else None."""
    key = _last_axis_key(node)
    return key if isinstance(key, int) and not isinstance(key, bool) \
        else None


def _channels(shape):
    return int(shape[-1]) if shape and shape[-1] is not None else None


def _reversed_channels(node):
    """The :class:`ChannelPermutation` of ``x[..., ::-1]`` at ``node``,
    or None."""
    key = _last_axis_key(node)
    channels = _channels(node.parent_shapes[0]) if node.parent_shapes \
        else None
    if key is None or _slice_step(key) != (None, None, -1) or \
            channels is None:
        return None
    return ChannelPermutation(list(range(channels))[::-1],
                              name=node.op.name)


def _as_layer(op, node):
    """The layer computing what the operation ``op`` computed at ``node``
    (a :class:`tfcompress.utils.graph.Node`)."""
    kind = type(op).__name__
    args = list(node.call_args)
    flip = _reversed_channels(node)
    if flip is not None:
        return flip
    if kind in _BINARY and not node.call_kwargs and node.parent_shapes:
        affine = _channel_affine(op, kind, args,
                                 _channels(node.parent_shapes[0]))
        if affine is not None:
            return affine
    if node.call_kwargs or kind not in _BINARY or len(args) != 2:
        raise UnsupportedOperationError(
            f"operation {op.name!r} (keras.ops.{kind}) applied as a "
            "function has no quantize rule; express it with a Keras layer "
            "(e.g. keras.layers.Add, Multiply) or wrap it in a custom layer "
            "and annotate that with quantize_annotate_layer")
    pair_layer, const_op = _BINARY[kind]
    if all(a is graph_lib.TENSOR for a in args) and pair_layer is not None:
        return pair_layer(name=op.name)
    numbers_at = [i for i, a in enumerate(args)
                  if isinstance(a, numbers.Number)]
    if len(numbers_at) == 1 and const_op is not None:
        return ConstantArithmetic(const_op, args[numbers_at[0]],
                                  tensor_first=numbers_at[0] == 1,
                                  name=op.name)
    raise UnsupportedOperationError(
        f"operation {op.name!r} (keras.ops.{kind}) has operands tfcompress "
        "cannot quantize (only two tensors, or a tensor and a Python "
        "number); use a Keras layer for it")


def _channel_permutations(nodes, outputs=()):
    """``{stack key: (source key, order)}`` for each ``stack([x[..., i],
    x[..., j], ...], axis=-1)`` of channels of one tensor ``x``, and the
    keys of the ``x[..., i]`` nodes read by such stacks only (none of
    them a model output: ``outputs``)."""
    readers = {}
    for node in nodes:
        for p in node.parents:
            readers.setdefault(p, []).append(node.key)
    by_key = {n.key: n for n in nodes}
    stacks, dropped = {}, set()
    for node in nodes:
        if node.is_layer or type(node.op).__name__ != "Stack" or \
                node.call_kwargs or not node.parents:
            continue
        rank = len(node.parent_shapes[0]) if node.parent_shapes[0] else 0
        axis = getattr(node.op, "axis", None)
        if axis not in (-1, rank):
            continue
        sources = [by_key.get(p) for p in node.parents]
        if any(s is None or _channel_index(s) is None or
               len(s.parents) != 1 or readers.get(s.key) != [node.key] or
               s.key in outputs for s in sources):
            continue
        if len({s.parents[0] for s in sources}) != 1:
            continue
        channels = _channels(sources[0].parent_shapes[0])
        order = [_channel_index(s) for s in sources]
        if channels is None:
            continue
        order = [i % channels for i in order]
        stacks[node.key] = (sources[0].parents[0], order)
        dropped.update(s.key for s in sources)
    return stacks, dropped


def functional_graph(model):
    """``[(layer, [parent names])]`` of a Functional model in topological
    order (:func:`tfcompress.utils.graph.layer_graph`); operations
    (keras.ops calls) come as new equivalent layers."""
    out = []
    nodes = graph_lib.node_graph(model)
    stacks, dropped = _channel_permutations(
        nodes, set(graph_lib.output_keys(model)))
    for node in nodes:
        if node.key in dropped:
            continue
        if node.key in stacks:
            source, order = stacks[node.key]
            op = ChannelPermutation(order, name=node.op.name)
            op._tfcompress_from_op = True
            out.append((op, [source.split("#")[0]]))
            continue
        if node.calls > 1:
            raise InputError(f"layer {node.op.name!r} is shared (called "
                             f"{node.calls} times); quantize needs each "
                             "layer used once: give each call a copy of "
                             "its own (keras.models.clone_model of a "
                             "shared base, then set_weights)")
        if node.is_layer:
            op = node.op
        else:
            op = _as_layer(node.op, node)
            op._tfcompress_from_op = True   # no annotation of its own
        out.append((op, [p.split("#")[0] for p in node.parents]))
    return out
