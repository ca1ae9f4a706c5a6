"""quantize.device_rounding: a QAT model predicts its int8 flatbuffer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.convert.result import litert_interpreter, run_flatbuffer
from tfcompress.quantize import int8_rounding as dr


def _qat(layers, shape, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape)
    y = inputs
    for layer in layers:
        y = layer(y)
    qat = quantize.quantize_model(keras.Model(inputs, y))
    x = np.random.RandomState(seed).rand(64, *shape).astype("float32")
    for k in range(0, 64, 16):
        qat(x[k:k + 16], training=True)
    for layer in qat.layers:     # ranges that do not move with the float32
        for v in getattr(layer, "range", None) or ():   # sums' threading
            v.assign(np.round(np.asarray(v), 3))
    return qat, x


def _int8_outputs(model, x):
    """The flatbuffer's int8 outputs on ``x`` and their (scale, zero
    point)."""
    r = convert(model, "int8", strict=True, output_type="int8")
    runner = litert_interpreter(r.tflite_bytes)[0].get_signature_runner()
    (name,) = runner.get_input_details()
    details = runner.get_output_details()
    got = runner(**{name: x})
    return [(got[k].astype(np.float64), details[k]["quantization"])
            for k in sorted(got)], r


def _values_off(keras_outputs, int8_outputs):
    return [int((np.round(ref / scale) + zero != got).sum())
            for ref, (got, (scale, zero)) in zip(keras_outputs,
                                                 int8_outputs)]


@pytest.fixture(scope="module")
def conv_model():
    """A 1x1 convolution, its input quantizer an output too: of 0.5M
    inputs and 2M outputs a few fall within 1e-5 of a step of a rounding
    boundary."""
    qat, x = _qat([keras.layers.Conv2D(32, 1, name="conv")], (32, 32, 8))
    taps = keras.Model(qat.input, [qat.layers[1].output, qat.output])
    flat, r = _int8_outputs(taps, x)
    return taps, x, r, flat


def test_device_rounding_predicts_the_flatbuffer_where_fake_quant_misses(
        conv_model):
    """The input's QUANTIZE (x / step rounded in float32, half to even)
    and the convolution (summed in float64 and rounded exactly)."""
    taps, x, _, flat = conv_model
    plain = _values_off(taps.predict(x, verbose=0, batch_size=64), flat)
    with quantize.device_rounding(taps):
        device = _values_off(taps.predict(x, verbose=0, batch_size=64),
                             flat)
    assert plain[0] > 0 and device[0] == 0, (plain, device)
    # the rest: XNNPACK scales its int32 sums in float32 (0-6 of 2M, where
    # the fake-quant op and float32 sums miss 15-24)
    assert device[1] <= 10 and device[1] < plain[1], (plain, device)


def test_round_activations_is_exact_where_the_fake_quant_op_is_not():
    """Values 1e-6 of a step either side of a half step: TensorFlow's op
    computes (x - min) * (1 / step) in float32 and rounds some of them to
    the wrong side."""
    lo, hi = -1.3, 2.9
    step = (hi - lo) / 255
    zero = np.floor(-lo / step + 0.5)
    half = (np.arange(1, 250) - zero + 0.5) * step
    x = np.concatenate([half * (1 - 1e-6), half * (1 + 1e-6)])
    x = x.astype("float32")
    exact = np.floor(x.astype(np.float64) / step + 0.5)
    op = tf.quantization.fake_quant_with_min_max_vars(x, lo, hi)
    ours = dr.round_activations(x, lo, hi, 8, op)
    assert (np.round(np.asarray(op) / step) != exact).any()
    np.testing.assert_array_equal(np.round(np.asarray(ours) / step), exact)


def test_predict_traced_before_the_block_is_traced_again(conv_model):
    qat, x, _, _ = conv_model
    before = qat.predict(x, verbose=0, batch_size=64)
    with quantize.device_rounding(qat):
        inside = qat.predict(x, verbose=0, batch_size=64)
    after = qat.predict(x, verbose=0, batch_size=64)
    assert not np.array_equal(before[0], inside[0])
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_convert_inside_the_block_writes_the_same_flatbuffer(conv_model):
    qat, _, outside, _ = conv_model
    with quantize.device_rounding(qat):
        inside = convert(qat, "int8", strict=True, output_type="int8")
    assert inside.tflite_bytes == outside.tflite_bytes


def test_average_pool_ties_round_away_from_zero_as_tflite():
    """A 3x3 ``same`` pooling averages 4 or 6 values at the border: some
    fall half-way between two steps, which the int8 kernel rounds away
    from zero in the int8 domain and the fake-quant op rounds up."""
    qat, x = _qat([keras.layers.Conv2D(8, 3, padding="same"),
                   keras.layers.AveragePooling2D(3, 1, padding="same")],
                  (8, 8, 3))
    r = convert(qat, "int8", strict=True)
    interp, _ = litert_interpreter(r.tflite_bytes)
    flat = run_flatbuffer(interp, x)
    step = float(np.diff(np.asarray(qat.layers[-2].range[:2]))[0]) / 255
    plain = np.round(np.abs(qat.predict(x, verbose=0) - flat) / step)
    with quantize.device_rounding(qat):
        device = np.round(np.abs(qat.predict(x, verbose=0) - flat) / step)
    assert (plain > 0).sum() > 50
    assert (device > 0).sum() == 0


def test_gradients_are_the_fake_quant_gradients(conv_model):
    qat, x, _, _ = conv_model

    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(qat(x[:4], training=False)[1] ** 2)
        return tape.gradient(loss, qat.trainable_variables)

    plain = grads()
    with quantize.device_rounding():
        device = grads()
    for a, b in zip(plain, device):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3,
                                   atol=1e-3 * float(np.abs(a).max()))


def test_outside_the_block_the_fake_quant_op_rounds():
    assert not dr.active()
    with dr.device_rounding():
        assert dr.active()
        with dr.fake_quant_rounding():
            assert not dr.active()
        assert dr.active()
    assert not dr.active()


def test_separable_and_depthwise_convolutions_round_as_their_kernels():
    """Xception's and NASNet's separable convolutions and a depthwise one
    with batch norm and ReLU6 folded in: every int8 value of the
    flatbuffer's."""
    qat, x = _qat([keras.layers.SeparableConv2D(8, 3, padding="same",
                                                activation="relu"),
                   keras.layers.DepthwiseConv2D(3, padding="same"),
                   keras.layers.BatchNormalization(),
                   keras.layers.ReLU(6.0)], (16, 16, 4))
    quantizers = [layer for layer in qat.layers
                  if getattr(layer, "range", None) is not None]
    taps = keras.Model(qat.input, [layer.output for layer in quantizers])
    flat, _ = _int8_outputs(taps, x)
    with quantize.device_rounding(taps):
        device = _values_off(taps.predict(x, verbose=0), flat)
    assert device == [0] * len(quantizers), device


def test_numerical_check_also_compares_with_the_int8_kernels_rounding():
    """convert's report: the errors against the QAT model as it predicts,
    and (``device_rounding``) as it predicts with the int8 kernels'
    rounding, which misses fewer values."""
    qat, x = _qat([keras.layers.Conv2D(32, 1, name="conv")], (32, 32, 8))
    check = convert(qat, "int8", check_data=x).report["numerical_check"]
    device = check["device_rounding"]
    assert check["mean_abs_error"] > 0
    assert device["mean_abs_error"] < check["mean_abs_error"] / 2, check


def test_numerical_check_of_a_float_model_has_no_device_rounding():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    x = np.random.RandomState(0).rand(8, 4, 4, 2).astype("float32")
    check = convert(model, "int8", representative_data=x).report[
        "numerical_check"]
    assert "device_rounding" not in check
