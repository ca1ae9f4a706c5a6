"""QAT layers: fused Conv/Dense(+BN)(+ReLU) with weight and activation
fake-quant (:mod:`tfcompress.quantize.fused`), per-channel affine for a
lone BatchNormalization, and output quantizers for everything else.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers as L

from tfcompress.quantize import int8_rounding
from tfcompress.quantize import fake_quant as fq
from tfcompress.quantize.fused import QuantizeFused
# shared pieces, also imported from here by older code
from tfcompress.quantize.qat_base import (  # noqa: F401
    KEEPS_SCALE, _InputStep, _InputStepMixin, _NestedLayersMixin,
    _RangeMixin, batch_statistics, channel_affine, follow_trainable,
    input_quantizer, round_bias, wrapper_name)


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeAffine(_InputStepMixin, _RangeMixin, _NestedLayersMixin,
                     keras.layers.Layer):
    """A BatchNormalization that follows no Conv/Dense, as an int8
    per-channel affine op: a 1x1 depthwise convolution (TFLite
    DEPTHWISE_CONV_2D) for images, multiply-add otherwise.

    >>> from tfcompress.quantize import quantize_model
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 3)),
    ...     keras.layers.BatchNormalization(name="bn_in"),  # no Conv before
    ...     keras.layers.Conv2D(4, 3, name="conv")])
    >>> qat = quantize_model(model)
    >>> affine = qat.get_layer("quant_bn_in")
    >>> type(affine).__name__, affine.batchnorm.name, affine.weight_bits
    ('QuantizeAffine', 'bn_in', 8)
    >>> x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    >>> y = np.asarray(affine(x))  # moving mean 0, variance 1: identity
    >>> y.shape, float(np.abs(y - x).max()) < 0.05
    ((2, 8, 8, 3), True)
    """

    NESTED_LAYERS = ("batchnorm",)

    def __init__(self, batchnorm, weight_bits=8, activation_bits=8,
                 ema_decay=0.999, quantize_output=True,
                 activation_percentile=None, **kwargs):
        kwargs.setdefault("name", wrapper_name(batchnorm.name))
        follow_trainable(kwargs, batchnorm)
        super().__init__(**kwargs)
        self.batchnorm = batchnorm
        self.weight_bits = int(weight_bits)
        self.activation_bits = int(activation_bits)
        self.ema_decay = float(ema_decay)
        self.activation_percentile = activation_percentile
        # False when TFLite fuses the next ReLU into the op: the output is
        # rounded once, at the ReLU's range
        self.quantize_output = bool(quantize_output)
        self._input_step = _InputStep()

    def build(self, input_shape):
        if not self.batchnorm.built:
            self.batchnorm.build(input_shape)
        self.range = self._add_range()

    def call(self, inputs, training=None):
        bn = self.batchnorm
        mean, variance = bn.moving_mean, bn.moving_variance
        if training and bn.trainable:
            # as Keras trains a BatchNormalization: the batch's statistics,
            # which move the moving ones; inference (and the flatbuffer)
            # uses the moving ones
            mean, variance = batch_statistics(bn, tf.cast(inputs,
                                                          tf.float32))
        scale = tf.math.rsqrt(variance + bn.epsilon)
        if bn.gamma is not None:
            scale = scale * bn.gamma
        shift = -mean * scale
        if bn.beta is not None:
            shift = shift + bn.beta
        y = channel_affine(inputs, scale, shift, self.weight_bits,
                           self._input_step.step())
        if not self.quantize_output:
            return y
        return self._quantize_output(y, training, self.range,
                                     self.activation_bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(self._nested_layers_config())
        config.update({"weight_bits": self.weight_bits,
                       "activation_bits": self.activation_bits,
                       "ema_decay": self.ema_decay,
                       "activation_percentile": self.activation_percentile,
                       "quantize_output": self.quantize_output})
        return config


SWISH = ("swish", "silu")


def _is_swish(layer):
    """An Activation layer computing x * sigmoid(x)."""
    return isinstance(layer, L.Activation) and getattr(
        layer.activation, "__name__", "") in SWISH


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeOutput(_RangeMixin, _NestedLayersMixin, keras.layers.Layer):
    """Runs a weightless layer (Add, pooling, activation, ...) or nothing
    (``layer=None``: the model input), then fake-quantizes its output.

    The range starts at [0, 6], is set by the first training batch and
    then follows an exponential moving average of the batches' ranges:

    >>> layer = QuantizeOutput(keras.layers.ReLU(name="relu"))
    >>> x = np.linspace(-1.0, 7.0, 9, dtype=np.float32)[None]
    >>> _ = layer(x, training=True)
    >>> [float(v) for v in layer.range[:2]]
    [0.0, 7.0]
    >>> y = np.asarray(layer(x))  # ReLU, then 255 levels over [0, 7]
    >>> step = 7.0 / 255
    >>> bool(np.allclose(y / step, np.round(y / step), atol=1e-3))
    True
    >>> layer.name, float(y.min()), float(y.max())
    ('quant_relu', 0.0, 7.0)
    """

    NESTED_LAYERS = ("layer",)

    # TFLite's int8 LOGISTIC and SOFTMAX write a fixed output scale of
    # 1/256 (zero point -128): the range [0, 255/256], not [0, 1] (whose
    # 1/255 step would make the converter add a requantizing op).
    FIXED_UNIT = ("softmax", "sigmoid")

    @classmethod
    def fixed_range_for(cls, activation, bits=8):
        """The fixed output range TFLite gives ``activation``, or None.

        >>> QuantizeOutput.fixed_range_for("sigmoid")
        (0.0, 0.99609375)
        """
        if activation not in cls.FIXED_UNIT:
            return None
        return (0.0, 1.0 - 2.0 ** -int(bits))

    def __init__(self, layer=None, activation_bits=8, ema_decay=0.999,
                 fixed_range=None, quantize_output=True,
                 activation_percentile=None, **kwargs):
        name = layer.name if layer is not None else "input"
        kwargs.setdefault("name", wrapper_name(name))
        if layer is not None:
            follow_trainable(kwargs, layer)
        super().__init__(**kwargs)
        self.layer = layer
        self.activation_bits = int(activation_bits)
        self.ema_decay = float(ema_decay)
        self.activation_percentile = activation_percentile
        self.fixed_range = tuple(fixed_range) if fixed_range else None
        self.quantize_output = bool(quantize_output)

    def build(self, input_shape):
        if self.layer is not None and not self.layer.built:
            self.layer.build(input_shape)
        self.range = self._add_range(fixed=self.fixed_range)

    def call(self, inputs, training=None, update_range=True):
        # ``update_range=False``: a call that uses the range without moving
        # it (one range shared by several tensors, moved by one of them)
        if _is_swish(self.layer):
            y = self._swish(inputs)
        else:
            y = inputs if self.layer is None else self.layer(inputs)
        if not self.quantize_output:
            return y
        out = self._quantize_output(y, training and update_range,
                                    self.range, self.activation_bits,
                                    fixed=self.fixed_range is not None)
        if self.layer is None and int8_rounding.active():
            lo, hi, _ = self.range      # the input's QUANTIZE op
            return int8_rounding.quantize_input(
                inputs, lo, hi, self.activation_bits, out)
        return out

    def _swish(self, inputs):
        # TFLite writes x * sigmoid(x) as LOGISTIC, whose int8 output has
        # the fixed step 1/256, then MUL: the sigmoid is rounded first
        lo, hi = self.fixed_range_for("sigmoid", self.activation_bits)
        gate = fq.quantize_activations(tf.sigmoid(inputs), lo, hi,
                                       self.activation_bits)
        return inputs * gate

    def get_config(self):
        config = super().get_config()
        config.update(self._nested_layers_config())
        config.update({"activation_bits": self.activation_bits,
                       "ema_decay": self.ema_decay,
                       "activation_percentile": self.activation_percentile,
                       "fixed_range": (list(self.fixed_range)
                                       if self.fixed_range else None),
                       "quantize_output": self.quantize_output})
        return config


QUANTIZE_LAYERS = (QuantizeFused, QuantizeAffine, QuantizeOutput)
