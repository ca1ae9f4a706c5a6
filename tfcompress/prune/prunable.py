"""Which layers can be pruned, and which of their weights.

Built-in Keras layers are listed here. Any other layer (a subclassed one,
say) opts in by implementing the :class:`PrunableLayer` protocol: a method
``get_prunable_weights()`` returning the variables to prune.

>>> import keras
>>> layer = keras.layers.Dense(4)
>>> layer.build((None, 3))
>>> [w.name for w in get_prunable_weights(layer)]
['kernel']
"""

from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import keras
from keras import layers as L

from tfcompress.errors import InputError
from tfcompress.prune.masks import block_fits


@runtime_checkable
class PrunableLayer(Protocol):
    """Protocol for layers that say which weights to prune.

    >>> class MyDense(keras.layers.Dense):
    ...     def get_prunable_weights(self):
    ...         return [self.kernel]
    """

    def get_prunable_weights(self) -> list:
        ...


def _mha_kernels(layer):
    return [sub.kernel for sub in (layer.query_dense, layer.key_dense,
                                   layer.value_dense, layer.output_dense)]


def _rnn_kernels(layer):
    # as tfmot: the input and recurrent kernels of each cell
    cells = getattr(layer.cell, "cells", [layer.cell])
    return [w for cell in cells for w in (cell.kernel,
                                          cell.recurrent_kernel)]


def _bidirectional_kernels(layer):
    return (_rnn_kernels(layer.forward_layer) +
            _rnn_kernels(layer.backward_layer))


def _is_rnn_with_known_cells(layer):
    cells = getattr(getattr(layer, "cell", None), "cells", None) or [
        getattr(layer, "cell", None)]
    return all(isinstance(c, (L.SimpleRNNCell, L.LSTMCell, L.GRUCell))
               for c in cells)


# layer class -> function returning its prunable variables
_BUILTIN = {
    L.Dense: lambda l: [l.kernel],
    L.EinsumDense: lambda l: [l.kernel],
    L.Conv1D: lambda l: [l.kernel],
    L.Conv2D: lambda l: [l.kernel],
    L.Conv3D: lambda l: [l.kernel],
    L.Conv1DTranspose: lambda l: [l.kernel],
    L.Conv2DTranspose: lambda l: [l.kernel],
    L.Conv3DTranspose: lambda l: [l.kernel],
    L.DepthwiseConv2D: lambda l: [l.kernel],
    L.DepthwiseConv1D: lambda l: [l.kernel],
    L.SeparableConv1D: lambda l: [l.pointwise_kernel],
    L.SeparableConv2D: lambda l: [l.pointwise_kernel],
    L.Embedding: lambda l: [l.embeddings],
    L.MultiHeadAttention: _mha_kernels,
    L.SimpleRNN: _rnn_kernels,
    L.LSTM: _rnn_kernels,
    L.GRU: _rnn_kernels,
}

# Layers that hold no weights worth pruning: never reported as skipped.
_WEIGHTLESS_OK = (L.InputLayer,)


def _builtin_getter(layer):
    # exact type first (a Conv2DTranspose is also a Conv2D subclass? no, but
    # subclasses of Dense etc. should match their parent)
    if isinstance(layer, L.RNN):   # keras.layers.RNN(cell), LSTM, ...
        return _rnn_kernels if _is_rnn_with_known_cells(layer) else None
    if isinstance(layer, L.Bidirectional):
        return _bidirectional_kernels if all(
            isinstance(l, L.RNN) and _is_rnn_with_known_cells(l)
            for l in (layer.forward_layer, layer.backward_layer)) else None
    getter = _BUILTIN.get(type(layer))
    if getter is None:
        for cls, fn in _BUILTIN.items():
            if isinstance(layer, cls):
                return fn
    return getter


def is_prunable(layer) -> bool:
    """True if tfcompress knows which weights of ``layer`` to prune.

    >>> is_prunable(keras.layers.Conv2D(8, 3)), is_prunable(L.ReLU())
    (True, False)
    >>> is_prunable(keras.layers.BatchNormalization())
    False
    """
    return (isinstance(layer, PrunableLayer)
            or _builtin_getter(layer) is not None)


def get_prunable_weights(layer) -> list:
    """The variables of a built ``layer`` that pruning masks.

    Raises:
      ValueError: if the layer is not prunable.

    Kernels only (biases are never pruned); several for layers made of
    several projections:

    >>> conv = keras.layers.SeparableConv2D(8, 3)
    >>> conv.build((None, 8, 8, 4))
    >>> [(w.name, tuple(w.shape)) for w in get_prunable_weights(conv)]
    [('pointwise_kernel', (1, 1, 4, 8))]
    >>> mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> mha.build((None, 3, 8), (None, 3, 8))
    >>> len(get_prunable_weights(mha))  # query, key, value, output
    4
    """
    if isinstance(layer, PrunableLayer):
        weights = layer.get_prunable_weights()
        if not isinstance(weights, (list, tuple)) or not all(
                isinstance(w, keras.Variable) for w in weights):
            # a bare variable would be iterated row by row, an array has
            # no variable to assign the masked values to
            raise InputError(
                f"layer {layer.name!r}: get_prunable_weights() must return "
                f"a list of the layer's variables (e.g. [self.kernel]), got "
                f"{_describe(weights)}")
        return list(weights)
    getter = _builtin_getter(layer)
    if getter is None:
        raise InputError(unsupported_message(layer))
    return getter(layer)


def _describe(weights) -> str:
    if isinstance(weights, (list, tuple)):
        kinds = sorted({type(w).__name__ for w in weights
                        if not isinstance(w, keras.Variable)})
        return f"a {type(weights).__name__} holding {', '.join(kinds)}"
    return type(weights).__name__


def input_channel_axis(layer, weight) -> Optional[int]:
    """Axis along which N:M groups run (the input channels)."""
    rank = len(weight.shape)
    einsum = _einsum_owner(layer, weight)
    if einsum is not None:
        axis = _contracted_kernel_axis(einsum.equation)
        if axis is not None:
            return axis
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose,
                          L.Conv3DTranspose)):
        return rank - 1  # (..., out, in)
    if isinstance(layer, L.Embedding):
        return 1
    if rank >= 3:
        return rank - 2  # (..., in, out)
    return 0


def _einsum_owner(layer, weight):
    """The EinsumDense whose kernel ``weight`` is (``layer`` itself, or one
    of MultiHeadAttention's projections), else None."""
    candidates = [layer]
    if isinstance(layer, L.MultiHeadAttention):
        candidates = [layer.query_dense, layer.key_dense, layer.value_dense,
                      layer.output_dense]
    for sub in candidates:
        if isinstance(sub, L.EinsumDense) and sub.kernel is weight:
            return sub
    return None


def _contracted_kernel_axis(equation) -> Optional[int]:
    """The last kernel axis an EinsumDense equation sums over (its input
    features: ``d_model`` of a query projection ``abc,cde->abde``, and
    ``key_dim`` of the output projection ``abcd,cde->abe``, the inner one
    of the two it flattens), or None if the equation has no such axis."""
    try:
        inputs, output = equation.replace(" ", "").split("->")
        lhs, kernel = inputs.split(",")
    except ValueError:
        return None
    summed = [i for i, c in enumerate(kernel)
              if c in lhs and c not in output and c != "."]
    return summed[-1] if summed else None


def supports_n_of_m(layer, m) -> bool:
    """True if every prunable weight of the built ``layer`` has an input
    channel axis whose length is a multiple of ``m``."""
    return all(w.shape[input_channel_axis(layer, w)] % m == 0
               for w in get_prunable_weights(layer))


def supports_block(layer, block_size) -> bool:
    """True if no prunable weight of the built ``layer`` is spanned by one
    ``block_size`` block (which ranking would always keep)."""
    return all(block_fits(w.shape, block_size)
               for w in get_prunable_weights(layer))


def unsupported_message(layer) -> str:
    return (f"layer {layer.name!r} ({type(layer).__name__}) cannot be "
            "pruned: tfcompress does not know which of its weights to "
            "prune. Implement tfcompress.prune.PrunableLayer on it (a "
            "get_prunable_weights() method returning the variables to "
            "prune), or leave it out of the layers you prune.")
