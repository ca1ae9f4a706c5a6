"""Which layers can be clustered, and which weights.

Built-in Keras layers cluster the kernels pruning would mask, as tfmot
does: the kernel of a Conv/Dense, the input and recurrent kernels of a
recurrent layer, the four projections of a MultiHeadAttention. Any other
layer opts in as in tfmot, by implementing :class:`ClusterableLayer`: a
method ``get_clusterable_weights()`` returning ``[(name, variable)]``.

>>> import keras
>>> layer = keras.layers.Dense(4)
>>> layer.build((None, 3))
>>> [w.name for w in clusterable_weights(layer)]
['kernel']
>>> lstm = keras.layers.LSTM(4)
>>> lstm.build((None, 5, 3))
>>> [w.name for w in clusterable_weights(lstm)]
['kernel', 'recurrent_kernel']
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import keras

from tfcompress.errors import InputError
from tfcompress.prune.prunable import get_prunable_weights, is_prunable


@runtime_checkable
class ClusterableLayer(Protocol):
    """tfmot's protocol for layers that say which weights to cluster.

    Return one ``(name, variable)`` pair per weight to cluster (each gets
    centroids of its own), or none to leave the layer as it is.

    >>> import keras
    >>> class Scale(keras.layers.Layer):
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight(shape=(input_shape[-1],))
    ...     def call(self, x):
    ...         return x * self.w
    ...     def get_clusterable_weights(self):
    ...         return [("w", self.w)]
    >>> layer = Scale()
    >>> layer.build((None, 6))
    >>> is_clusterable(layer), [tuple(w.shape) for w in
    ...                          clusterable_weights(layer)]
    (True, [(6,)])
    """

    def get_clusterable_weights(self) -> list:
        ...


def _pairs(layer):
    """The ``(name, variable)`` pairs of a ClusterableLayer, checked: each
    variable one of the layer's own float weights."""
    pairs = layer.get_clusterable_weights()
    own = {id(v) for v in layer.weights}
    if not isinstance(pairs, (list, tuple)) or not all(
            isinstance(p, (list, tuple)) and len(p) == 2 and
            isinstance(p[1], keras.Variable) and id(p[1]) in own and
            "float" in str(p[1].dtype) for p in pairs):
        raise InputError(
            f"layer {layer.name!r}: get_clusterable_weights() must return "
            "a list of (name, variable) pairs naming the layer's own float "
            f"weights (e.g. [('kernel', self.kernel)]), got "
            f"{_describe(pairs)}")
    return list(pairs)


def _describe(pairs) -> str:
    if not isinstance(pairs, (list, tuple)):
        return type(pairs).__name__
    items = [type(p).__name__ if not isinstance(p, (list, tuple)) else
             "(" + ", ".join(type(x).__name__ for x in p) + ")"
             for p in pairs]
    return f"[{', '.join(items)}]"


def is_clusterable(layer) -> bool:
    """True if ``cluster_weights`` clusters a weight of built ``layer``.

    >>> import keras
    >>> is_clusterable(keras.layers.ReLU())
    False
    """
    if isinstance(layer, ClusterableLayer):
        return bool(_pairs(layer))
    return is_prunable(layer)


def clusterable_weights(layer) -> list:
    """The variables of built ``layer`` that clustering shares among
    centroids (each among centroids of its own).

    Raises:
      InputError: a ClusterableLayer names the same weight twice.
    """
    if not isinstance(layer, ClusterableLayer):
        return list(get_prunable_weights(layer))
    pairs = _pairs(layer)
    variables = [v for _, v in pairs]
    if len({id(v) for v in variables}) != len(variables):
        names = ", ".join(str(name) for name, _ in pairs)
        raise InputError(
            f"layer {layer.name!r}: get_clusterable_weights() names a "
            f"weight twice ({names}); return each weight to cluster once")
    return variables
