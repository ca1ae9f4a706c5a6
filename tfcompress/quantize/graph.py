"""The nodes of a Functional model, with keras.ops calls as layers.

``x + 3.0`` or ``keras.ops.multiply(x, y)`` in a functional graph are
recorded as operations, not layers; :func:`functional_graph` turns each one
into the equivalent layer (``Add``/``Multiply``/... for two tensors,
:class:`ConstantArithmetic` for a tensor and a number) so the QAT
transform sees layers only.

>>> import keras
>>> i = keras.Input((4,))
>>> m = keras.Model(i, keras.layers.ReLU(6.0)(i + 3.0) * (1 / 6))
>>> [type(op).__name__ for op, _ in functional_graph(m)]
['InputLayer', 'ConstantArithmetic', 'ReLU', 'ConstantArithmetic']
"""

from __future__ import annotations

import numbers

import keras
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


class UnsupportedOperationError(InputError):
    """A keras.ops call in a functional graph with no layer equivalent."""


def _as_layer(op, node):
    """The layer computing what the operation ``op`` computed at ``node``
    (a :class:`tfcompress.utils.graph.Node`)."""
    kind = type(op).__name__
    args = list(node.call_args)
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


def functional_graph(model):
    """``[(layer, [parent names])]`` of a Functional model in topological
    order (:func:`tfcompress.utils.graph.layer_graph`); operations
    (keras.ops calls) come as new equivalent layers."""
    out = []
    for node in graph_lib.node_graph(model):
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
