"""What tfcompress's QAT layers share: output ranges, nested-layer
config, the input step a layer reads, and int8 bias rounding.

Bias: TFLite stores a Conv/Dense bias as int32 in steps of (input step x
weight step of the channel). A fused layer whose input comes from a
quantizer (directly or through layers that keep the scale, such as zero
padding) rounds its folded bias to that grid too, so it computes the
flatbuffer's very values: a float bias differs from the stored one by up
to half a bias step, enough to round some outputs to the neighbouring int8
value, and deep networks amplify those one-step differences.
"""

from __future__ import annotations

import contextlib
import contextvars

import keras
import numpy as np
import tensorflow as tf
from keras import layers as L

from tfcompress.quantize import fake_quant as fq
from tfcompress.quantize.graph import ChannelPermutation
# re-exported: the QAT layers take it from here
from tfcompress.utils.wrapper_build import follow_trainable  # noqa: F401


#: Prefix of the names QAT layers get from the layer they wrap; set by
#: quantize_apply's and quantize_model's ``quantized_layer_name_prefix``.
_NAME_PREFIX = contextvars.ContextVar("quantized_layer_name_prefix",
                                      default="quant_")


def wrapper_name(name) -> str:
    """The name of the QAT layer wrapping the layer ``name``: ``quant_`` +
    ``name``, or the prefix :func:`layer_name_prefix` sets.

    >>> wrapper_name("fc")
    'quant_fc'
    >>> with layer_name_prefix("q8_"):
    ...     wrapper_name("fc")
    'q8_fc'
    """
    return f"{_NAME_PREFIX.get()}{name}"


@contextlib.contextmanager
def layer_name_prefix(prefix):
    """QAT layers created inside the block are named ``prefix`` + the name
    of the layer they wrap (``None`` as ``""``: the layer's own name).

    >>> with layer_name_prefix(None):
    ...     wrapper_name("fc")
    'fc'
    """
    token = _NAME_PREFIX.set("" if prefix is None else prefix)
    try:
        yield
    finally:
        _NAME_PREFIX.reset(token)


def channel_affine(inputs, scale, shift, weight_bits, input_step=None):
    """``inputs * scale + shift`` per channel, with ``scale`` fake-quantized
    per channel as TFLite's int8 kernel stores it (a 1x1 DEPTHWISE_CONV_2D
    for images, MUL + ADD otherwise). Given the step of the int8 input,
    ``shift`` is rounded to the depthwise op's int32 bias grid."""
    scale = tf.reshape(tf.cast(scale, tf.float32), (-1,))
    rank, inner = len(inputs.shape), inputs.shape[1:-1]
    if rank != 4 and all(d is not None for d in inputs.shape[1:]):
        # vectors and sequences of known length go through the same 1x1
        # depthwise convolution between two (free) int8 RESHAPEs
        rows = int(np.prod(inner)) if len(inner) else 1
        image = tf.reshape(inputs, (-1, 1, rows, inputs.shape[-1]))
        return tf.reshape(channel_affine(image, scale, shift, weight_bits,
                                         input_step),
                          (-1,) + tuple(inputs.shape[1:]))
    if rank == 4:
        if input_step is not None:
            shift = round_bias(
                tf.broadcast_to(tf.cast(shift, tf.float32), tf.shape(scale)),
                input_step * _weight_steps(scale, weight_bits, True, 0))
        k = fq.quantize_weights(tf.reshape(scale, (1, 1, 1, -1)),
                                weight_bits, True)
        return keras.ops.depthwise_conv(
            inputs, tf.reshape(k, (1, 1, -1, 1)), 1, "valid") + shift
    # unknown length: TFLite's int8 MUL takes one scale per operand, so the
    # constant is quantized per tensor (a per-channel one fails conversion)
    return inputs * fq.quantize_weights(scale, weight_bits, False) + shift


class _NestedLayersMixin:
    """Serializes the Keras layers a QAT layer holds (the attributes named
    in ``NESTED_LAYERS``, each a layer or None) inside its config."""

    NESTED_LAYERS = ()

    def _nested_layers_config(self):
        return {name: (None if getattr(self, name) is None
                       else keras.layers.serialize(getattr(self, name)))
                for name in self.NESTED_LAYERS}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in cls.NESTED_LAYERS:
            if config.get(name):
                config[name] = keras.layers.deserialize(config[name])
        return cls(**config)


class _RangeMixin:
    """Adds an EMA-tracked activation range to a layer."""

    def _add_range(self, name="output", fixed=None):
        init_min, init_max = fixed if fixed else (0.0, 0.0)
        # Under tf.distribute the first replica's range is kept, so every
        # replica (and the converted model) uses one set of ranges.
        kw = dict(shape=(), trainable=False,
                  aggregation="only_first_replica")
        lo = self.add_weight(name=f"{name}_min",
                             initializer=keras.initializers.Constant(
                                 init_min), **kw)
        hi = self.add_weight(name=f"{name}_max",
                             initializer=keras.initializers.Constant(
                                 init_max if fixed else 6.0), **kw)
        seen = self.add_weight(name=f"{name}_seen", initializer="zeros",
                               **kw)
        return lo, hi, seen

    def _quantize_output(self, y, training, rng, bits, fixed=False):
        lo, hi, seen = rng
        if training and not fixed:
            new_lo, new_hi = fq.update_range(tf.cast(y, tf.float32), lo, hi,
                                             seen, self.ema_decay,
                                             self.activation_percentile)
            lo.assign(new_lo)
            hi.assign(new_hi)
            seen.assign(1.0)
            return fq.quantize_activations(y, new_lo, new_hi, bits)
        return fq.quantize_activations(y, lo, hi, bits)


def _keras_layers(*names):
    """The ``keras.layers`` classes of these names this Keras has."""
    return tuple(getattr(L, n) for n in names if hasattr(L, n))


# Layers that act only while training and are the identity at inference,
# so TFLite has no op for them: data augmentation inside the model (Keras'
# transfer-learning guide), noise and dropout regularization of a head.
# While QAT trains they still act; as with Dropout, a training step may
# then feed the next layer values off its input's int8 grid.
INFERENCE_IDENTITY = (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D) + \
    _keras_layers(
        "SpatialDropout3D", "GaussianNoise", "GaussianDropout",
        "AlphaDropout", "ActivityRegularization",
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
        "RandomContrast", "RandomBrightness", "RandomGrayscale",
        "RandomHue", "RandomSaturation", "RandomColorJitter",
        "RandomColorDegeneration", "RandomSharpness", "RandomShear",
        "RandomPerspective", "RandomErasing", "RandomGaussianBlur",
        "RandomInvert", "RandomPosterization", "RandomElasticTransform",
        "AugMix", "RandAugment")

# Layers that pass int8 values on with their input's scale (TFLite gives
# their output the input's quantization parameters).
KEEPS_SCALE = (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D,
               L.AveragePooling2D, L.GlobalMaxPooling1D,
               L.GlobalMaxPooling2D, L.Flatten, L.Reshape,
               L.ZeroPadding1D, L.ZeroPadding2D, L.UpSampling1D,
               L.UpSampling2D, L.Cropping1D, L.Cropping2D,
               L.Permute, ChannelPermutation) + INFERENCE_IDENTITY


def input_quantizer(tensor):
    """The layer whose fake-quant sets the int8 scale of the symbolic
    ``tensor`` (walking back through :data:`KEEPS_SCALE` layers), or None
    when the tensor is not quantized by a tfcompress quantizer."""
    from tfcompress import compat
    for _ in range(1000):
        try:
            layer = compat.keras_history(tensor).operation
        except compat.CompatError:
            return None
        if getattr(layer, "range", None) is not None and getattr(
                layer, "quantize_output", True):
            return layer
        if not isinstance(layer, KEEPS_SCALE):
            return None
        try:
            tensor = layer.input
        except (AttributeError, ValueError):    # a layer called twice
            return None
    return None


class _InputStep:
    """The quantization step of a layer's input, read from the range of the
    quantizer that produces it. Found when the layer is called on a
    symbolic tensor (building, cloning or loading a model); the range
    belongs to that other layer, so it is kept out of Keras' tracking."""

    def __init__(self):
        self.quantizer = None

    def find(self, tensor):
        found = input_quantizer(tensor)
        if found is not None:       # keep a link a rebuilt graph hides
            self.quantizer = found

    def step(self):
        q = self.quantizer
        if q is None:
            return None
        lo, hi, _ = q.range
        return fq.activation_step(lo, hi, q.activation_bits)


class _InputStepMixin:
    """Links ``self._input_step`` to the input's quantizer whenever the
    layer is called on a symbolic tensor."""

    def __call__(self, inputs, *args, **kwargs):
        if isinstance(inputs, keras.KerasTensor):
            self._input_step.find(inputs)
        return super().__call__(inputs, *args, **kwargs)


def _weight_steps(kernel, bits, per_channel, channel_axis=-1):
    """TFLite's weight scale of each output channel (a scalar per tensor)
    for a symmetric narrow-range ``bits`` fake quant of ``kernel``."""
    return (fq.weight_range(kernel, per_channel, channel_axis)
            / float(2 ** (bits - 1) - 1))


def round_bias(bias, step):
    """``bias`` on the int32 grid ``step`` (per channel), as the converter
    stores it; the gradient passes straight through."""
    step = tf.stop_gradient(tf.cast(step, bias.dtype))
    safe = tf.where(step > 0, step, tf.ones_like(step))
    rounded = tf.where(step > 0, tf.round(bias / safe) * safe, bias)
    return bias + tf.stop_gradient(rounded - bias)


def batch_statistics(bn, x):
    """``(mean, variance)`` of ``x`` over all axes but the channels, as a
    training call of BatchNormalization ``bn`` computes them (across
    replicas when ``bn.synchronized``), after moving ``bn``'s moving
    statistics towards them with its momentum."""
    axes = list(range(len(x.shape) - 1))
    mean, variance = keras.ops.moments(x, axes,
                                       synchronized=bn.synchronized)
    m = bn.momentum
    bn.moving_mean.assign(bn.moving_mean * m +
                          tf.cast(mean, bn.moving_mean.dtype) * (1 - m))
    bn.moving_variance.assign(
        bn.moving_variance * m +
        tf.cast(variance, bn.moving_variance.dtype) * (1 - m))
    return mean, variance


def _batchnorm_scale(bn):
    """``gamma / sqrt(moving_variance + eps)`` of a BatchNormalization."""
    scale = tf.math.rsqrt(bn.moving_variance + bn.epsilon)
    return scale if bn.gamma is None else scale * bn.gamma
