"""Which layers can be clustered, and which weight.

Built-in Keras layers cluster their main kernel (the first weight
pruning would mask). Any other layer opts in as in tfmot, by implementing
:class:`ClusterableLayer`: a method ``get_clusterable_weights()``
returning ``[(name, variable)]``.

>>> import keras
>>> layer = keras.layers.Dense(4)
>>> layer.build((None, 3))
>>> clusterable_weight(layer).name
'kernel'
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from tfcompress.errors import InputError
from tfcompress.prune.prunable import get_prunable_weights, is_prunable


@runtime_checkable
class ClusterableLayer(Protocol):
    """tfmot's protocol for layers that say which weight to cluster.

    tfcompress clusters one weight per layer: return one ``(name,
    variable)`` pair, or none to leave the layer as it is.

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
    >>> is_clusterable(layer), tuple(clusterable_weight(layer).shape)
    (True, (6,))
    """

    def get_clusterable_weights(self) -> list:
        ...


def _pairs(layer):
    return list(layer.get_clusterable_weights())


def is_clusterable(layer) -> bool:
    """True if ``cluster_weights`` clusters a weight of built ``layer``.

    >>> import keras
    >>> is_clusterable(keras.layers.ReLU())
    False
    """
    if isinstance(layer, ClusterableLayer):
        return bool(_pairs(layer))
    return is_prunable(layer)


def clusterable_weight(layer):
    """The variable of built ``layer`` that clustering shares among
    centroids.

    Raises:
      InputError: a ClusterableLayer names several weights.
    """
    if not isinstance(layer, ClusterableLayer):
        return get_prunable_weights(layer)[0]
    pairs = _pairs(layer)
    if len(pairs) != 1:
        names = ", ".join(str(name) for name, _ in pairs)
        raise InputError(
            f"layer {layer.name!r}: get_clusterable_weights() returns "
            f"{len(pairs)} weights ({names}); tfcompress clusters one weight "
            "per layer: return the one to cluster, e.g. [('kernel', "
            "self.kernel)]")
    return pairs[0][1]
