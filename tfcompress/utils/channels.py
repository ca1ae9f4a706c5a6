"""A kernel's output channels as rows: what int8 conversion scales one by
one, and what per-channel clustering gives centroids of their own.

Most kernels keep their output channels on the last axis. A depthwise
kernel ``(h, w, C, M)`` has ``C * M`` output channels (channel
``c * M + m``); a transposed convolution's kernel ``(h, w, out, in)``
keeps them on axis -2.

>>> import keras, numpy as np
>>> layer = keras.layers.Conv2DTranspose(5, 3)
>>> layer.build((None, 8, 8, 2))
>>> output_channels(layer, layer.kernel.shape)
5
>>> rows = output_channel_rows(layer, layer.kernel)
>>> tuple(rows.shape)
(5, 18)
>>> back = from_output_channel_rows(layer, rows, layer.kernel.shape)
>>> bool(np.array_equal(back, layer.kernel.numpy()))
True
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
               keras.layers.Conv3DTranspose)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _order(layer, rank):
    """Kernel axes with the output channels last (None: as they are)."""
    if isinstance(layer, _TRANSPOSED) and rank >= 3:
        return list(range(rank - 2)) + [rank - 1, rank - 2]
    return None


def output_channels(layer, shape) -> int:
    """How many output channels a kernel of ``shape`` of ``layer`` has."""
    shape = tuple(shape)
    if isinstance(layer, _TRANSPOSED) and len(shape) >= 3:
        return int(shape[-2])
    if isinstance(layer, _DEPTHWISE) and len(shape) >= 3:
        return int(shape[-2] * shape[-1])
    return int(shape[-1])


def output_channel_rows(layer, kernel):
    """``(output channels, weights per channel)`` view of ``kernel``."""
    kernel = tf.convert_to_tensor(kernel)
    channels = output_channels(layer, kernel.shape)
    order = _order(layer, len(kernel.shape))
    if order is not None:
        kernel = tf.transpose(kernel, order)
    return tf.transpose(tf.reshape(kernel, (-1, channels)))


def from_output_channel_rows(layer, rows, shape):
    """The kernel of ``shape`` whose output channels are ``rows``."""
    shape = tuple(shape)
    order = _order(layer, len(shape))
    columns = tf.transpose(rows)
    if order is None:
        return tf.reshape(columns, shape)
    permuted = tf.reshape(columns, [shape[i] for i in order])
    return tf.transpose(permuted, order)   # the order is its own inverse


def repeated_positions(positions, repeat):
    """Where channels ``positions`` of a depthwise convolution's input go
    in its output with ``depth_multiplier = repeat``: input channel ``c``
    feeds outputs ``c * repeat`` to ``c * repeat + repeat - 1``; one row
    per position.

    >>> repeated_positions([0, 2], 3).tolist()
    [[0, 1, 2], [6, 7, 8]]
    """
    positions = np.asarray(positions, np.int64).reshape(-1, 1)
    return positions * repeat + np.arange(repeat)
