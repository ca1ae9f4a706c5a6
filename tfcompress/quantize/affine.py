"""Input scaling (``Rescaling``, ``Normalization``) for QAT.

Both compute ``x * scale + offset`` per channel. :func:`layer_affine` reads
that pair from the layer; :class:`QuantizeChannelAffine` runs it as one
int8 op (a 1x1 DEPTHWISE_CONV_2D with a bias for images, whose scale is
quantized per channel like any depthwise kernel) when it cannot be folded
into the following convolution.

>>> import keras
>>> s, o = layer_affine(keras.layers.Rescaling(1 / 127.5, offset=-1.0), 3)
>>> [round(float(v), 4) for v in s], [float(v) for v in o]
([0.0078, 0.0078, 0.0078], [-1.0, -1.0, -1.0])
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers as L

from tfcompress.quantize.layers import (_InputStep, _InputStepMixin,
                                        _RangeMixin, channel_affine)

AFFINE_LAYERS = (L.Rescaling, L.Normalization)


def layer_affine(layer, channels):
    """``(scale, offset)`` float32 arrays of length ``channels`` such that
    ``layer(x) == x * scale + offset`` (channels last), or None when the
    layer is not a per-channel affine map on the last axis."""
    if isinstance(layer, L.Rescaling):
        scale = np.asarray(layer.scale, np.float64)
        offset = np.asarray(layer.offset, np.float64)
    elif isinstance(layer, L.Normalization):
        axis = layer.axis
        if tuple(axis) not in ((-1,), (len(layer.input.shape) - 1,)):
            return None
        mean = np.asarray(layer.mean, np.float64).reshape(-1)
        std = np.maximum(np.sqrt(np.asarray(layer.variance,
                                            np.float64).reshape(-1)),
                         keras.backend.epsilon())
        if layer.invert:
            scale, offset = std, mean
        else:
            scale, offset = 1.0 / std, -mean / std
    else:
        return None
    if scale.size not in (1, channels) or offset.size not in (1, channels):
        return None
    scale = np.broadcast_to(scale.reshape(-1), (channels,))
    offset = np.broadcast_to(offset.reshape(-1), (channels,))
    return scale.astype(np.float32), offset.astype(np.float32)


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeChannelAffine(_InputStepMixin, _RangeMixin,
                            keras.layers.Layer):
    """``x * scale + offset`` per channel as one int8 op with its output
    fake-quantized: the QAT form of ``Rescaling``/``Normalization`` layers
    that cannot be folded into the next convolution."""

    def __init__(self, scale, offset, source=None, weight_bits=8,
                 activation_bits=8, ema_decay=0.999,
                 activation_percentile=None, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in np.reshape(scale, -1)]
        self.offset = [float(v) for v in np.reshape(offset, -1)]
        self.source = list(source or [])
        self.weight_bits = int(weight_bits)
        self.activation_bits = int(activation_bits)
        self.ema_decay = float(ema_decay)
        self.activation_percentile = activation_percentile
        self._input_step = _InputStep()

    def build(self, input_shape):
        self.range = self._add_range()

    def call(self, inputs, training=None):
        scale = tf.constant(self.scale, tf.float32)
        offset = tf.constant(self.offset, tf.float32)
        y = channel_affine(inputs, scale, offset, self.weight_bits,
                           self._input_step.step())
        return self._quantize_output(y, training, self.range,
                                     self.activation_bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "offset": self.offset,
                       "source": self.source,
                       "weight_bits": self.weight_bits,
                       "activation_bits": self.activation_bits,
                       "ema_decay": self.ema_decay,
                       "activation_percentile":
                           self.activation_percentile})
        return config
