"""Inputs other than a float batch of one: uint8 pixels, a fixed batch
size, and mixed-precision models (converted computing in float32)."""

import keras
import numpy as np
import pytest

from tfcompress.convert import convert
from tfcompress.errors import InputError


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((16, 8, 8, 3), dtype=np.float32)


def _dense_on(inputs, body=lambda t: t):
    keras.utils.set_random_seed(0)
    h = keras.layers.Flatten()(body(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(h))


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_uint8_pixel_input_is_calibrated_and_checked_as_pixels(x, mode):
    model = _dense_on(keras.Input((8, 8, 3), dtype="uint8"),
                      keras.layers.Rescaling(1 / 255.0))
    pixels = np.round(x * 255).astype("uint8")
    # int8: the uint8 -> float CAST stays float (input_type="uint8" on a
    # float-input model is the fully integer way)
    r = convert(model, mode, representative_data=pixels, strict=False)
    assert r.report["inputs"][0]["dtype"].lower() == "uint8"
    # the check feeds the pixels as they are, not "quantized" by scale 0
    assert r.report["numerical_check"]["max_abs_error"] < (
        1e-5 if mode == "float32" else 0.05)


@pytest.mark.parametrize("scale, shift", [(1.0, 0.0), (255.0, 0.0),
                                          (255.0, -10.0)])
def test_pixels_a_uint8_input_cannot_hold_are_an_input_error(x, scale, shift):
    # they were cast: [0, 1] floats calibrated on black images, -10 on 246
    model = _dense_on(keras.Input((8, 8, 3), dtype="uint8"),
                      keras.layers.Rescaling(1 / 255.0))
    with pytest.raises(InputError, match=r"the model input is uint8: give "
                       r"whole numbers from 0 to 255"):
        convert(model, "float32", representative_data=x * scale + shift)


def test_uint8_input_without_check_data_gets_random_pixels():
    model = _dense_on(keras.Input((8, 8, 3), dtype="uint8"),
                      keras.layers.Rescaling(1 / 255.0))
    r = convert(model, "float32")
    assert r.report["numerical_check_data"] == "random inputs in [0, 255]"
    assert r.report["numerical_check"]["max_abs_error"] < 1e-5


def test_a_nested_base_that_rescales_is_checked_on_pixels():
    inner = keras.Input((8, 8, 3))
    base = keras.Model(inner, keras.layers.Rescaling(1 / 255.0)(inner))
    model = _dense_on(keras.Input((8, 8, 3)), base)
    r = convert(model, "float32")
    assert r.report["numerical_check_data"] == "random inputs in [0, 255]"


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_fixed_batch_model_is_checked_in_batches_of_its_size(x, mode):
    model = _dense_on(keras.Input((8, 8, 3), batch_size=4))
    r = convert(model, mode, representative_data=x[:10])
    check = r.report["numerical_check"]
    assert check["samples"] == 10
    assert check["max_abs_error"] < (1e-5 if mode == "float32" else 0.05)


def _mixed_precision_model():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((8, 8, 3))
        h = keras.layers.Conv2D(4, 3, name="half_conv")(inputs)
        h = keras.layers.BatchNormalization(name="half_bn")(h)
        model = keras.Model(inputs, keras.layers.Dense(
            3, dtype="float32")(keras.layers.Flatten()(h)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_mixed_precision_model_converts_computing_in_float32(x, mode):
    model = _mixed_precision_model()
    assert model.get_layer("half_conv").compute_dtype == "float16"
    r = convert(model, mode, representative_data=x)
    assert any("float16 (mixed precision)" in n for n in r.report["notes"])
    # checked against the float32 copy: float32 is exact, int8 within
    # its usual error
    limit = 1e-5 if mode == "float32" else 0.1
    assert r.report["numerical_check"]["max_abs_error"] < limit
    # the user's model is left as it was
    assert model.get_layer("half_conv").compute_dtype == "float16"


def test_subclassed_mixed_precision_error_names_the_fix(x):
    class Half(keras.Model):
        def __init__(self):
            super().__init__(dtype="mixed_float16")
            self.conv = keras.layers.Conv2D(4, 3, name="half_conv",
                                            dtype="mixed_float16")
            self.out = keras.layers.Dense(3, dtype="float32")

        def call(self, t):
            return self.out(keras.ops.reshape(self.conv(t), (-1, 144)))
    model = Half()
    model(x[:1])
    with pytest.raises(RuntimeError,
                       match=r"half_conv.*float16.*set_global_policy"):
        convert(model, "float32")


def test_input_of_any_image_size_is_an_input_error_naming_the_fix(x):
    # keras.Input((None, None, 3)), as a base of any input size is used
    from tfcompress.errors import InputError
    model = _dense_on(keras.Input((None, None, 3)),
                      lambda t: keras.layers.GlobalAveragePooling2D()(
                          keras.layers.Conv2D(4, 3)(t)))
    for mode, data in (("float32", None), ("int8", x)):
        with pytest.raises(InputError, match=r"\(None, None, 3\).*"
                           r"keras.Input\(\(n, n, 3\)\)"):
            convert(model, mode, representative_data=data, check_data=x)
    i = keras.Input((8, 8, 3))
    r = convert(keras.Model(i, model(i)), "int8", representative_data=x)
    assert r.report["fully_integer"]


def _data_kinds(x):
    import tensorflow as tf
    onehot = np.eye(3, dtype=np.float32)[np.arange(len(x)) % 3]
    return {
        "dataset of batches": tf.data.Dataset.from_tensor_slices(x).batch(4),
        "dataset of (x, y)": tf.data.Dataset.from_tensor_slices(
            (x, onehot)).batch(4),
        "endless dataset": tf.data.Dataset.from_tensor_slices(x).repeat(),
        "generator": (sample for sample in x),
        "generator of dicts": lambda: ({"pixels": s[None]} for s in x),
        "dict keyed by the input's name": {"pixels": x},
        "generator of batches": lambda: ([x[i:i + 4]]
                                         for i in range(0, len(x), 4)),
        "(x, one-hot y)": (x, onehot),
        "list of batches": [x[:6], x[6:11], x[11:]],
        "two batches": [x[:6], x[6:]],
        "tensor": tf.constant(x),
    }


@pytest.mark.parametrize("kind", list(_data_kinds(np.zeros((1, 1)))))
def test_data_sets_generators_and_one_hot_pairs_calibrate_as_arrays(x, kind):
    # each was "has dtype object", a numpy error or a 5-D shape error
    model = _dense_on(keras.Input((8, 8, 3), name="pixels"))
    expected = convert(model, "int8", representative_data=x)
    r = convert(model, "int8", representative_data=_data_kinds(x)[kind],
                calibration_samples=len(x), check_samples=len(x))
    assert r.report["numerical_check"]["samples"] == len(x)
    assert r.tflite_bytes == expected.tflite_bytes


def test_dict_not_keyed_by_the_input_name_is_an_input_error(x):
    model = _dense_on(keras.Input((8, 8, 3), name="pixels"))
    with pytest.raises(InputError, match=r"representative_data has keys "
                       r"\['image'\]; the model's inputs are \['pixels'\]"):
        convert(model, "int8", representative_data={"image": x})


def test_batches_of_different_sample_shapes_are_an_input_error(x):
    # numpy's "inhomogeneous shape" ValueError before
    model = _dense_on(keras.Input((8, 8, 3), name="pixels"))
    with pytest.raises(InputError, match=r"representative_data is "
                       r"not one array of inputs.*\(n, 8, 8, 3\)"):
        convert(model, "int8", representative_data=[x[:6], x[6:, :4]])


def test_open_size_error_names_the_input_layer_not_its_tensor():
    sized, unnamed = keras.Input((4,), name="sized"), keras.Input((None,))
    pooled = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Reshape((-1, 1))(unnamed))
    model = keras.Model([sized, unnamed],
                        keras.layers.Concatenate()([sized, pooled]))
    layer_name, = [layer.name for layer in model.layers     # set by Keras
                   if isinstance(layer, keras.layers.InputLayer)
                   and layer.name != "sized"]
    assert unnamed.name != layer_name      # the tensor: "keras_tensor..."
    with pytest.raises(InputError) as err:
        convert(model, "float32")
    assert f"input {layer_name!r} of model" in str(err.value)
    assert unnamed.name not in str(err.value)
