"""Models with several inputs or outputs: calibration data per input, and
the numerical check output by output through the flatbuffer's signature."""

import keras
import numpy as np
import pytest

from tfcompress.convert import convert
from tfcompress.errors import InputError


@pytest.fixture(scope="module")
def two_inputs():
    keras.utils.set_random_seed(0)
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    h = keras.layers.Dense(8, activation="relu")(
        keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], keras.layers.Dense(5)(h))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return [rng.random((64, 4), dtype=np.float32),
            rng.random((64, 3), dtype=np.float32)]


def test_two_input_model_converts_to_int8_and_is_checked(two_inputs, data):
    r = convert(two_inputs, "int8", representative_data=data)
    assert r.report["fully_integer"]
    check = r.report["numerical_check"]
    assert check["samples"] == 64
    assert check["top1_agreement"] >= 0.9
    assert 0 < check["max_abs_error"] < 0.1


def test_two_input_calibration_data_may_be_a_dict(two_inputs, data):
    by_list = convert(two_inputs, "int8", representative_data=data)
    by_dict = convert(two_inputs, "int8",
                      representative_data={"b": data[1], "a": data[0]})
    assert by_list.tflite_bytes == by_dict.tflite_bytes


def test_swapped_inputs_are_refused_naming_the_inputs(two_inputs, data):
    with pytest.raises(InputError, match=r"input 'a'.*\(n, 4\)"):
        convert(two_inputs, "int8", representative_data=data[::-1])
    with pytest.raises(InputError, match=r"2 inputs \(a, b\).*list of 2"):
        convert(two_inputs, "int8", representative_data=data[0])
    with pytest.raises(InputError, match="same number"):
        convert(two_inputs, "int8",
                representative_data=[data[0], data[1][:10]])


def test_two_input_model_refuses_recalibration(two_inputs, data):
    with pytest.raises(InputError, match="single-input"):
        convert(two_inputs, "int8", representative_data=data,
                calibration="entropy")


@pytest.fixture(scope="module")
def dict_model():
    keras.utils.set_random_seed(0)
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    joined = keras.layers.Concatenate()([a, b])
    return keras.Model({"a": a, "b": b},
                       {"y": keras.layers.Dense(2)(joined),
                        "z": keras.layers.Dense(1)(a)})


def test_dict_outputs_are_checked_by_key_with_random_inputs(dict_model):
    r = convert(dict_model, "float32")
    check = r.report["numerical_check"]
    assert r.report["numerical_check_data"] == \
        "random inputs in [0, 1], [0, 1]"
    assert sorted(check["outputs"]) == ["y", "z"]
    assert check["max_abs_error"] < 1e-5


def test_signature_names_the_inputs_and_the_output_keys(dict_model):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=convert(dict_model,
                                               "float32").tflite_bytes)
    assert interp.get_signature_list() == {
        "serving_default": {"inputs": ["a", "b"], "outputs": ["y", "z"]}}
    xa = np.ones((1, 4), np.float32)
    xb = np.full((1, 3), 2.0, np.float32)
    got = interp.get_signature_runner()(a=xa, b=xb)
    want = dict_model({"a": xa, "b": xb})
    np.testing.assert_allclose(got["y"], want["y"], atol=1e-5)
    np.testing.assert_allclose(got["z"], want["z"], atol=1e-5)


def _signature_inputs(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter(model_content=tflite_bytes).get_signature_list()[
        "serving_default"]["inputs"]


def test_unnamed_inputs_are_named_after_their_input_layers_in_every_mode():
    """An unnamed keras.Input's tensor is keras_tensor_<counter> (the
    counter depends on what else the program built), its layer
    input_layer[_N]: the signature takes the layer's name, so the float,
    post-training and QAT flatbuffers of one model are fed alike."""
    from tfcompress import quantize
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(2)(
        keras.layers.Concatenate()([a, b])))
    layers = [model.layers[0].name, model.layers[1].name]
    assert a.name.startswith("keras_tensor")
    data = [np.random.default_rng(0).random((32, n), dtype=np.float32)
            for n in (4, 3)]
    float_model = convert(model, "float32")
    ptq = convert(model, "int8", representative_data=data)
    qat = convert(quantize.quantize_model(model), "int8")
    for r in (float_model, ptq, qat):
        assert sorted(_signature_inputs(r.tflite_bytes)) == sorted(layers)
        assert r.report["numerical_check"]["max_abs_error"] < 0.1


def test_calibration_dict_may_be_keyed_as_the_signature_names_the_inputs():
    """Keyed by a dict-input model's keys (its unnamed keras.Inputs'
    tensors are keras_tensor_N), the arrays calibrate the inputs they
    name, as keyed by tensor name."""
    keras.utils.set_random_seed(0)
    a, b = keras.Input((4,)), keras.Input((3,))
    model = keras.Model({"zeta": a, "alpha": b}, keras.layers.Dense(2)(
        keras.layers.Concatenate()([a, b])))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((32, 4), np.float32), rng.random((32, 3),
                                                         np.float32)
    by_key = convert(model, "int8", representative_data={"zeta": xa,
                                                         "alpha": xb})
    by_tensor = convert(model, "int8", representative_data={a.name: xa,
                                                            b.name: xb})
    assert by_key.tflite_bytes == by_tensor.tflite_bytes
    assert sorted(_signature_inputs(by_key.tflite_bytes)) == ["alpha",
                                                              "zeta"]
    with pytest.raises(InputError, match=r"alpha.*zeta"):
        convert(model, "int8", representative_data={"a": xa, "b": xb})
