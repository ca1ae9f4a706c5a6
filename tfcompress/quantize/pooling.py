"""Average pooling rounded to its input's int8 step, as TFLite rounds it.

TFLite's int8 AVERAGE_POOL_2D keeps its input's scale and rounds each
average to it. A QAT model that passes the float average on unrounded
feeds the next op values up to half a step away from the flatbuffer's:
NASNet's 3x3 average poolings put a whole network's logits 2.6 output
steps from its flatbuffer's on average.

:class:`QuantizeAveragePooling` rounds the average with its input
quantizer's range (it has none of its own, so the converter writes no
extra op). Only windows of odd area are rounded: an average of an even
number of values can fall exactly half-way between two steps, which
TFLite rounds away from zero in the int8 domain and a fake-quant op
rounds up; for 2x2 windows (a quarter of the values are such ties)
rounding made the QAT model agree with its flatbuffer less than leaving
the average unrounded (docs/zoo_quantize.md). Inside
:func:`tfcompress.quantize.device_rounding` every window, odd or even,
is rounded as TFLite rounds it.

>>> import keras
>>> rounds_average(keras.layers.AveragePooling2D(3))
True
>>> rounds_average(keras.layers.AveragePooling2D(2))
False
"""

from __future__ import annotations

import math

import keras

from tfcompress.quantize import int8_rounding
from tfcompress.quantize import fake_quant as fq
from tfcompress.quantize.layers import (_InputStep, _InputStepMixin,
                                        _NestedLayersMixin, follow_trainable)
from tfcompress.quantize.qat_base import wrapper_name

AVERAGE_POOLING = (keras.layers.AveragePooling1D,
                   keras.layers.AveragePooling2D)
# the interpolations of keras.layers.Resizing TFLite has int8 kernels for
# (RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR)
TFLITE_RESIZE = ("bilinear", "nearest")


def rounds_average(layer) -> bool:
    """True if ``layer`` is an average pooling whose window has an odd
    number of values (no average falls half-way between two steps)."""
    if not isinstance(layer, AVERAGE_POOLING):
        return False
    size = layer.pool_size
    size = (size,) if isinstance(size, int) else tuple(size)
    return math.prod(size) % 2 == 1


def rounds_resize(layer) -> bool:
    """True if ``layer`` is a ``Resizing`` the converter writes as one
    int8 RESIZE_BILINEAR or RESIZE_NEAREST_NEIGHBOR op, which keeps its
    input's scale and rounds each interpolated value to it.

    >>> rounds_resize(keras.layers.Resizing(8, 8))
    True
    >>> rounds_resize(keras.layers.Resizing(8, 8, interpolation="bicubic"))
    False
    """
    return isinstance(layer, keras.layers.Resizing) and \
        layer.interpolation in TFLITE_RESIZE and \
        not getattr(layer, "antialias", False) and \
        not layer.crop_to_aspect_ratio and \
        not layer.pad_to_aspect_ratio and \
        layer.data_format == "channels_last"


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeAveragePooling(_InputStepMixin, _NestedLayersMixin,
                             keras.layers.Layer):
    """An average pooling whose output is fake-quantized with the range
    of the quantizer that makes its input (found when the layer is
    called on a symbolic tensor, as the bias step of a fused layer is)."""

    NESTED_LAYERS = ("layer",)

    def __init__(self, layer, round_output=None, **kwargs):
        kwargs.setdefault("name", wrapper_name(layer.name))
        follow_trainable(kwargs, layer)
        super().__init__(**kwargs)
        self.layer = layer
        # an even window's average is left unrounded (see the module
        # docstring) but for quantize.device_rounding, which rounds it as
        # TFLite does; a resizing is always rounded
        if round_output is None:
            round_output = rounds_average(layer) or not isinstance(
                layer, AVERAGE_POOLING)
        self.round_output = bool(round_output)
        self._input_step = _InputStep()

    @property
    def _source(self):
        return self._input_step.quantizer

    @property
    def range(self):
        """The input quantizer's range (None when there is none)."""
        return None if self._source is None else self._source.range

    @property
    def activation_bits(self):
        return 8 if self._source is None else self._source.activation_bits

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)

    def call(self, inputs, training=None):
        y = self.layer(inputs)
        if self._source is None:
            return y
        lo, hi, _ = self._source.range
        if int8_rounding.active() and isinstance(self.layer,
                                                   AVERAGE_POOLING):
            return int8_rounding.average_pool(self.layer, inputs, lo, hi,
                                                self.activation_bits, y)
        if not self.round_output:
            return y
        return fq.quantize_activations(y, lo, hi, self.activation_bits)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), **self._nested_layers_config(),
                "round_output": self.round_output}


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeResizing(QuantizeAveragePooling):
    """A ``Resizing`` (bilinear or nearest) whose output is rounded to its
    input's int8 step, as TFLite's int8 resize ops keep their input's
    scale: no range of its own, so the converter writes no extra op.

    >>> layer = QuantizeResizing(keras.layers.Resizing(4, 4, name="resize"))
    >>> layer.name
    'quant_resize'
    """
