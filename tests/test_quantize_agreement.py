"""The QAT Keras model computes what its int8 flatbuffer computes: the same
int8 values, not only close ones (LiteRT's default XNNPACK kernels, whose
requantization rounds the exact product once)."""

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.convert.result import litert_interpreter, run_flatbuffer


def _qat(model, x, steps=4):
    q = quantize.quantize_model(model)
    q.compile(keras.optimizers.Adam(1e-3), "mse")
    target = np.asarray(model.predict(x, verbose=0))
    q.fit(x[:32 * steps], target[:32 * steps], batch_size=32, epochs=1,
          verbose=0)
    return q


def _steps_apart(q, x):
    """|flatbuffer - Keras| of every output, in output quantization steps."""
    r = convert(q, "int8", strict=True, representative_data=x[:32],
                output_type="int8")
    interp, refused = litert_interpreter(r.tflite_bytes)
    assert refused is None, refused           # XNNPACK ran the model
    step = interp.get_output_details()[0]["quantization"][0]
    got = run_flatbuffer(interp, x)
    ref = np.asarray(q.predict(x, verbose=0)).reshape(got.shape)
    return np.abs(got - ref) / step


def _coarse_conv():
    """Small pixel values and a rare 255 (the input step is 1) into
    Conv+BN+ReLU6: the int32 bias step (input step x weight step) is a
    good fraction of the output step, so a float bias rounds many outputs
    differently from the flatbuffer."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    y = L.Conv2D(16, 3, use_bias=False)(i)
    y = L.BatchNormalization()(y)
    model = keras.Model(i, L.ReLU(6.0)(y))
    model.layers[2].set_weights([np.full(16, 3.0), np.full(16, 3.0),
                                 np.zeros(16), np.ones(16)])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (256, 8, 8, 3)).astype("float32")
    x[:, 0, 0, 0] = 255.0
    return model, x


def test_conv_outputs_equal_their_flatbuffer_when_input_step_is_coarse():
    model, x = _coarse_conv()
    apart = _steps_apart(_qat(model, x, steps=2), x)
    assert np.mean(apart > 0.5) <= 0.001, np.mean(apart > 0.5)


def test_saved_and_loaded_qat_model_keeps_the_rounded_bias(tmp_path):
    # the bias grid comes from the input quantizer's range: a loaded model
    # finds it again and computes the very same outputs
    model, x = _coarse_conv()
    q = _qat(model, x, steps=2)
    q.save(tmp_path / "q.keras")
    with quantize.quantize_scope():
        loaded = keras.models.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0),
                                  q.predict(x, verbose=0))


def test_small_mobilenet_block_logits_within_one_step():
    # Conv-BN-ReLU6, depthwise, projection, Add, GAP, Dense: every op of a
    # MobileNetV2 block; the logits of the flatbuffer and the Keras model
    # are the same int8 values (within one step where float32 sums tie)
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 3))
    x = L.Conv2D(16, 3, 2, padding="same", use_bias=False)(i)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    y = L.Conv2D(32, 1, use_bias=False)(x)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    y = L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(y))
    x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(i, L.Dense(10)(x))
    data = np.random.default_rng(1).uniform(0, 255, (200, 16, 16, 3))
    data = data.astype("float32")
    apart = _steps_apart(_qat(model, data), data)
    assert np.mean(apart <= 1 + 1e-4) >= 0.99, np.mean(apart <= 1 + 1e-4)
    assert np.mean(apart > 0.5) <= 0.02, np.mean(apart > 0.5)


def test_lone_batchnorm_outputs_equal_their_flatbuffer():
    # a BatchNormalization after no Conv/Dense is a 1x1 DEPTHWISE_CONV_2D
    # with an int32 bias too; channel 0 (rare 255s, small gamma) sets the
    # coarse input step, the others (small values, larger gamma) have a
    # bias step that is a good fraction of the output step
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 16))
    model = keras.Model(i, L.BatchNormalization()(i))
    gamma = np.linspace(0.2, 0.6, 16)
    gamma[0] = 0.01
    model.layers[1].set_weights([gamma, np.linspace(-0.3, 0.35, 16),
                                 np.zeros(16), np.ones(16)])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (128, 8, 8, 16)).astype("float32")
    x[:, 0, 0, 0] = 255.0
    apart = _steps_apart(_qat(model, x, steps=2), x)
    assert np.mean(apart > 0.5) <= 0.001, np.mean(apart > 0.5)


def _swish_block(with_excitation):
    """Conv-BN-swish as EfficientNet writes it, optionally followed by its
    squeeze-and-excitation (GAP, Conv+swish, Conv+sigmoid, Multiply)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    x = L.BatchNormalization()(L.Conv2D(16, 3, use_bias=False)(i))
    x = L.Activation("swish")(x)
    if with_excitation:
        s = L.GlobalAveragePooling2D(keepdims=True)(x)
        s = L.Conv2D(4, 1, activation="swish")(s)
        s = L.Conv2D(16, 1, activation="sigmoid")(s)
        x = L.Multiply()([x, s])
    model = keras.Model(i, x)
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 12.75, (256, 8, 8, 3)).astype("float32")
    return model, data


def test_swish_outputs_equal_their_flatbuffer():
    # TFLite writes swish as LOGISTIC (fixed output step 1/256) then MUL:
    # the sigmoid is rounded to int8 before the product
    model, x = _swish_block(with_excitation=False)
    apart = _steps_apart(_qat(model, x, steps=2), x)
    assert np.mean(apart > 0.5) <= 0.001, np.mean(apart > 0.5)


def test_squeeze_excitation_block_outputs_equal_their_flatbuffer():
    model, x = _swish_block(with_excitation=True)
    apart = _steps_apart(_qat(model, x, steps=2), x)
    assert np.mean(apart > 0.5) <= 0.001, np.mean(apart > 0.5)


def test_depthwise_with_depth_multiplier_folds_batchnorm_per_output_channel():
    # MobileNet(depth_multiplier=2): the depthwise kernel is (3, 3, C, 2)
    # and its BatchNormalization has C * 2 channels (c * 2 + m); QAT folds
    # each into its own output channel and converts fully integer
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, use_bias=False)(i)))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)(x)
    bn = L.BatchNormalization()
    x = L.ReLU(6.0)(bn(x))
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(i, L.Dense(10)(x))
    rng = np.random.default_rng(3)
    bn.set_weights([rng.uniform(0.5, 2.0, 16), rng.normal(0, 0.5, 16),
                    rng.normal(0, 0.5, 16), rng.uniform(0.5, 2.0, 16)])
    data = rng.uniform(0, 255, (160, 12, 12, 3)).astype("float32")
    # with frozen batch norm and no weight updates, the ranges set by a few
    # steps, the QAT model computes the float model up to rounding
    q = quantize.quantize_model(
        model, quantize.Default8BitScheme(freeze_bn_delay=0))
    q.compile(keras.optimizers.SGD(0.0), "mse")
    ref = np.asarray(model.predict(data, verbose=0))
    q.fit(data, ref, batch_size=32, epochs=1, verbose=0)
    got = np.asarray(q.predict(data, verbose=0))
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max(), \
        np.abs(got - ref).max()
    apart = _steps_apart(_qat(model, data), data)
    assert np.mean(apart <= 1 + 1e-4) >= 0.99, np.mean(apart <= 1 + 1e-4)


def _read_by_two_relus(lone_batchnorm):
    """NASNet's stem and adjusting batch norms: a tensor read only by
    the ReLU opening each of two branches (Conv+BN, or a lone BN)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 4))
    x = L.Conv2D(8, 3, padding="same")(i)
    if lone_batchnorm:
        x = L.Concatenate()([x, L.Conv2D(8, 1)(i)])
    x = L.BatchNormalization()(x)
    a = L.Conv2D(6, 1)(L.ReLU()(x))
    b = L.Conv2D(6, 1)(L.ReLU()(x))
    model = keras.Model(i, L.Add()([a, b]))
    x = np.random.default_rng(0).normal(size=(128, 8, 8, 4)).astype(
        "float32")
    return model, x


@pytest.mark.parametrize("lone_batchnorm", [False, True],
                         ids=["conv_bn", "lone_bn"])
def test_tensor_read_only_by_relus_is_rounded_once(lone_batchnorm):
    # the converter merges the ReLUs and fuses them into the op making
    # the tensor, which rounds once, at the ReLUs' range; rounding first
    # to a range of the tensor's own put 20% of the outputs a step or
    # more off (up to 3)
    model, x = _read_by_two_relus(lone_batchnorm)
    q = _qat(model, x, steps=3)
    apart = _steps_apart(q, x)
    assert np.mean(apart > 0.5) <= 0.001, np.mean(apart > 0.5)
    ops = {op["op"] for op in convert(q, "int8").report["ops"]}
    assert "RELU" not in ops, ops
