"""Which layers can be clustered, and which weights.

Built-in Keras layers cluster the kernels pruning would mask, as tfmot
does: the kernel of a Conv/Dense, the input and recurrent kernels of a
recurrent layer, the four projections of a MultiHeadAttention. Any other
layer opts in as in tfmot, by implementing :class:`ClusterableLayer`: a
method ``get_clusterable_weights()`` returning ``[(name, variable)]``,
and optionally ``get_clusterable_algorithm(name)`` returning, for a
weight whose centroids are not simply the nearest, tfmot's kind of
clustering-algorithm class: built with the centroids (a ``tf.Variable``),
its ``get_pulling_indices(weight)`` says which centroid each weight takes
(:func:`algorithm_indices`).

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
import numpy as np

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


def clustering_algorithm(layer, variable):
    """The class ``layer.get_clusterable_algorithm(name)`` gives for its
    clustered weight ``variable`` (tfmot's ClusterableLayer protocol), or
    None: the nearest centroid."""
    method = getattr(layer, "get_clusterable_algorithm", None)
    if method is None or not isinstance(layer, ClusterableLayer):
        return None
    name = next(n for n, v in _pairs(layer) if v is variable)
    return method(name)


def algorithm_indices(algorithm, weight, centroids, layer_name):
    """The centroid index of each value of ``weight`` (flat, int32) as a
    clustering-algorithm class ``algorithm`` assigns them: built with the
    ``centroids`` as a ``tf.Variable``, its ``get_pulling_indices(weight)``
    gives one index per weight.

    >>> import numpy as np, tensorflow as tf
    >>> class Nearest:
    ...     def __init__(self, clusters_centroids):
    ...         self.c = clusters_centroids
    ...     def get_pulling_indices(self, weight):
    ...         return tf.argmin(tf.abs(weight[..., None] - self.c), -1)
    >>> algorithm_indices(Nearest, np.array([[0.9, -1.2]]), [-1.0, 1.0],
    ...                   "fc").tolist()
    [1, 0]

    Raises:
      InputError: the indices are not one per weight, or not in
        ``[0, len(centroids))``.
    """
    import tensorflow as tf
    centroids = np.asarray(centroids, np.float32)
    weight = tf.convert_to_tensor(np.asarray(weight, np.float32))
    found = algorithm(tf.Variable(centroids, trainable=False))
    indices = np.asarray(found.get_pulling_indices(weight))
    name = getattr(algorithm, "__name__", type(algorithm).__name__)
    if indices.shape != tuple(weight.shape) or not np.issubdtype(
            indices.dtype, np.integer) or indices.size and (
            indices.min() < 0 or indices.max() >= centroids.size):
        raise InputError(
            f"layer {layer_name!r}: {name}.get_pulling_indices gave "
            f"{indices.dtype} indices of shape {indices.shape}; it must "
            f"give one integer in [0, {centroids.size}) per weight, shape "
            f"{tuple(weight.shape)}")
    return indices.reshape(-1).astype(np.int32)
