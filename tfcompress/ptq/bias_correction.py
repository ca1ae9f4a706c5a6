"""Empirical bias correction (Nagel et al. 2019, section 4.2).

Rounding weights shifts the mean of each output channel: ``E[(W_q - W)
x] != 0`` in general, and the shifts add up layer after layer. Bias
correction measures, on representative inputs, each channel's mean
pre-activation output of the float model and of the model with quantized
weights (layers before it already quantized and corrected), and adds the
difference to the bias. The returned model keeps float kernels: the
converter quantizes them to the same grid the correction assumed, so
``bits`` and ``per_channel`` must match the conversion
(``convert(..., per_channel=False)`` for per-tensor weights).

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
>>> x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
>>> corrected = correct_bias(m, x, bits=4)
>>> tuple(corrected.get_layer("fc").kernel.shape), corrected is m
((4, 3), False)
"""

from __future__ import annotations

import keras
import numpy as np

from tfcompress.ptq import grid
from tfcompress.ptq import layer_walk
from tfcompress.ptq import layers as lyr
from tfcompress.ptq.fold import fold_batchnorm
from tfcompress.ptq.samples import as_inputs
from tfcompress.quantize.bit_widths import check_bits
from tfcompress.utils.arguments import check_counts
from tfcompress.utils.graph import node_graph


def weight_layers(model) -> list:
    """The Conv2D/DepthwiseConv2D/Dense layers of ``model`` in
    topological order (layers called once only)."""
    return [n.op for n in node_graph(model)
            if n.is_layer and lyr.is_weight_layer(n.op) and n.calls == 1]


def quantized_kernel(layer, kernel, bits, per_channel):
    """``kernel`` rounded to nearest on the converter's grid for ``layer``."""
    return grid.quantize_nearest(
        kernel, bits, grid.layer_per_channel(layer, bits, per_channel),
        lyr.is_depthwise(layer))


def _channel_means(layer, kernel, bias, inputs):
    """Mean per output channel of ``layer``'s pre-activation output with
    ``kernel`` and ``bias`` over the ``inputs`` batches."""
    return lyr.channel_moments(lyr.preactivation(layer, batch, kernel, bias)
                               for batch in inputs)[0]


def correct_bias(model, data, bits: int = 8, per_channel: bool = True,
                 samples: int = 512, batch_size: int = 64,
                 memory_limit: int = layer_walk.DEFAULT_MEMORY_LIMIT):
    """A new model whose biases cancel the mean output shift of weight
    quantization.

    Args:
      model: a Sequential or Functional Keras 3 model (not changed); batch
        norms are folded first.
      data: representative inputs (array ``(n, ...)`` or ``(x, y)``; no
        labels needed); the first ``samples`` are used.
      bits: weight bits of the conversion (8, or 4 with
        :func:`tfcompress.ptq.for_conversion`).
      per_channel: whether the conversion quantizes weights per channel
        (``convert(..., per_channel=...)``).
      samples: how many of ``data``'s inputs to read.
      batch_size: inference batch size.
      memory_limit: bytes of layer outputs each pass over the data may
        hold at once (the float model and the quantized one each run once,
        layer by layer); past it, the layers not yet done each get a pass
        from the model input.

    Returns:
      The corrected model: batch norms folded, float kernels, new biases.

    Rounding the kernels to 4-bit per-tensor shifts the mean output; the
    corrected model, rounded the same way, keeps the float model's mean:

    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu", name="fc1"),
    ...     keras.layers.Dense(3, name="fc2")])
    >>> x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    >>> corrected = correct_bias(model, x, bits=4, per_channel=False)
    >>> def rounded(m):  # the weights a 4-bit per-tensor conversion keeps
    ...     m2 = keras.models.clone_model(m)
    ...     m2.set_weights(m.get_weights())
    ...     for layer in m2.layers:
    ...         k = layer.kernel.numpy()
    ...         step = np.abs(k).max() / 7
    ...         layer.kernel.assign(np.round(k / step) * step)
    ...     return m2
    >>> def mean_shift(m):
    ...     return float(np.abs(np.mean(m(x) - model(x), axis=0)).max())
    >>> mean_shift(rounded(model)) > 100 * mean_shift(rounded(corrected))
    True
    """
    model = lyr.flat_model(model, "correct_bias")
    check_counts("correct_bias", optional=("samples",), samples=samples,
                 batch_size=batch_size)
    bits = check_bits(bits, "correct_bias: bits")
    base = fold_batchnorm(model)
    x = as_inputs(data, base, "correct_bias", limit=samples)
    quant = lyr.copy_model(base)
    layers = weight_layers(base)
    quantized = {layer.name: quantized_kernel(layer, lyr.kernel_and_bias(
        layer)[0], bits, per_channel) for layer in layers}

    # the float model's mean outputs, then the quantized model's, each
    # layer's with the layers before it quantized and corrected
    want = layer_walk.each_layer(
        base, layers, x, batch_size, lambda layer, inputs: _channel_means(
            layer, *lyr.kernel_and_bias(layer), inputs), memory_limit)
    weights = {}

    def correct(qlayer, inputs):
        kernel, bias = lyr.kernel_and_bias(qlayer)
        qlayer.kernel.assign(quantized[qlayer.name])
        got = _channel_means(qlayer, quantized[qlayer.name], bias, inputs)
        new_bias = (bias + (want[qlayer.name] - got)).astype(np.float32)
        qlayer.bias.assign(new_bias)
        weights[qlayer.name] = (kernel, new_bias)
    layer_walk.each_layer(
        quant, [quant.get_layer(layer.name) for layer in layers], x,
        batch_size, correct, memory_limit)
    return lyr.with_weights(base, weights)
