"""Evaluate a QAT model with the rounding of the int8 kernels it becomes.

A QAT model rounds each activation with TensorFlow's fake-quant op, which
computes ``(x - min) * (1 / step)`` in float32. A value within about 1e-5
of a step of a rounding boundary can land on the other side of it; the
int8 kernels (XNNPACK and LiteRT's built-in ones) round it exactly. The
converter reads its ranges from that op, so training and conversion keep
it; but the rare one-step differences grow through deep networks, most in
squeeze-and-excitation gates (docs/effnet_agreement.md), so the Keras
model's logits drift from the flatbuffer's.

Inside :func:`device_rounding`, QAT layers round in float64 at the
converter's step and zero point; convolutions and dense layers sum in
float64 (the int8 kernels' int32 sums are exact, float32 ones are not);
the model input is rounded as XNNPACK's QUANTIZE rounds it; average
poolings divide their int8 window sums as TFLite's AVERAGE_POOL_2D does
(half-way values away from zero). The Keras model then predicts what the
flatbuffer computes, without converting it. Gradients are the fake-quant
op's (straight-through), so training inside the block works, only
slower.

>>> import numpy as np, keras
>>> from tfcompress import quantize
>>> inputs = keras.Input((4,))
>>> qat = quantize.quantize_model(
...     keras.Model(inputs, keras.layers.Dense(3)(inputs)))
>>> with quantize.device_rounding(qat):
...     y = qat.predict(np.ones((2, 4), "float32"), verbose=0)
>>> y.shape
(2, 3)
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

# A stack, not a thread-local: tf.distribute traces replicas in threads.
_MODES = ["fake_quant"]


def active() -> bool:
    """True inside :func:`device_rounding` (and not inside a conversion).

    >>> active()
    False
    """
    return _MODES[-1] == "device"


def _reset_compiled(model):
    # Keras caches the traced step functions; a cached one keeps the
    # rounding it was traced with
    for name in ("predict_function", "test_function", "train_function"):
        if getattr(model, name, None) is not None:
            setattr(model, name, None)


@contextlib.contextmanager
def device_rounding(model=None):
    """Within the block, QAT models round as their int8 flatbuffer does.

    ``model``: a QAT model whose ``predict``/``evaluate``/``fit`` functions
    Keras has already traced; they are traced again on entry and on exit.
    A ``tf.function`` of your own keeps the rounding it was traced with:
    trace it inside the block. ``tfcompress.convert`` called inside the
    block converts as usual (with the fake-quant op); calling
    ``tf.lite.TFLiteConverter`` yourself inside it would write float ops.

    >>> with device_rounding():
    ...     active()
    True
    """
    _MODES.append("device")
    if model is not None:
        _reset_compiled(model)
    try:
        yield
    finally:
        _MODES.pop()
        if model is not None:
            _reset_compiled(model)


@contextlib.contextmanager
def fake_quant_rounding():
    """Within the block, QAT layers use the fake-quant op, even inside
    :func:`device_rounding` (for tracing a model to convert it).

    >>> with device_rounding(), fake_quant_rounding():
    ...     active()
    False
    """
    _MODES.append("fake_quant")
    try:
        yield
    finally:
        _MODES.pop()


def _grid(lo, hi, bits):
    """``(step, zero point, nudged min)`` in float64, as the converter
    derives them from a fake-quant op's range."""
    levels = 2.0 ** bits - 1
    lo = tf.cast(lo, tf.float64)
    step = (tf.cast(hi, tf.float64) - lo) / levels
    zero = tf.floor(tf.clip_by_value(-lo / step, 0.0, levels) + 0.5)
    return step, zero, -zero * step


def round_activations(x, lo, hi, bits, fake_quantized):
    """``x`` rounded exactly to the ``bits`` grid of ``[lo, hi]`` (nudged
    as the converter nudges it), with the gradient of ``fake_quantized``
    (the fake-quant op's output for the same ``x``)."""
    step, zero, low = _grid(lo, hi, bits)
    high = (2.0 ** bits - 1 - zero) * step
    x64 = tf.clip_by_value(tf.cast(x, tf.float64), low, high)
    exact = tf.cast(tf.floor((x64 - low) / step + 0.5) * step + low,
                    fake_quantized.dtype)
    return fake_quantized + tf.stop_gradient(exact - fake_quantized)


def quantize_input(x, lo, hi, bits, fake_quantized):
    """The model input on the ``bits`` grid of ``[lo, hi]`` as XNNPACK's
    QUANTIZE computes it: ``x * (1 / step)`` in float32, rounded half to
    even, plus the zero point; with the gradient of ``fake_quantized``."""
    step, zero, _ = _grid(lo, hi, bits)
    inverse = 1.0 / tf.cast(step, tf.float32)
    levels = 2.0 ** bits - 1
    index = tf.clip_by_value(
        tf.cast(tf.round(tf.cast(x, tf.float32) * inverse), tf.float64)
        + zero, 0.0, levels)
    exact = tf.cast((index - zero) * step, fake_quantized.dtype)
    return fake_quantized + tf.stop_gradient(exact - fake_quantized)


def _window_sums(pool, values):
    """Sums and counts of ``pool``'s windows (the padding left out)."""
    size = pool.pool_size
    size = (size,) if isinstance(size, int) else tuple(size)
    strides = pool.strides
    ones = keras.ops.ones(tuple(size) + (1, 1), values.dtype)
    shape = tf.concat([tf.shape(values)[:-1], [1]], 0)
    counts = keras.ops.conv(tf.ones(shape, values.dtype), ones, strides,
                            pool.padding)
    channels = values.shape[-1]
    kernel = keras.ops.ones(tuple(size) + (channels, 1), values.dtype)
    sums = keras.ops.depthwise_conv(values, kernel, strides, pool.padding)
    return sums, counts


def average_pool(pool, x, lo, hi, bits, plain):
    """``pool`` (an average pooling) of ``x`` as TFLite's int8 kernel
    computes it: the window's int8 values (zero point included) summed and
    divided by the count, half-way values rounded away from zero, on the
    input's grid ``[lo, hi]``; with the gradient of ``plain``
    (``pool(x)``)."""
    step, zero, low = _grid(lo, hi, bits)
    offset = 2.0 ** (bits - 1)        # int8 value = grid index - 128
    x64 = tf.cast(x, tf.float64)
    values = tf.floor((x64 - low) / step + 0.5) - offset
    sums, counts = _window_sums(pool, values)
    half = tf.floor(counts / 2)
    mean = tf.sign(sums) * tf.floor((tf.abs(sums) + half) / counts)
    exact = tf.cast((mean + offset) * step + low, plain.dtype)
    return plain + tf.stop_gradient(exact - plain)
