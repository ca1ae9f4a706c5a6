"""convert() hands the converter the frozen inference function (no
SavedModel round trip) and writes the signature the round trip would."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.convert import convert, frozen
from tfcompress.convert.result import run_flatbuffer
from tfcompress.models import seed_cnn
from tfcompress.quantize import quantize_model
from tfcompress.quiet import converter_output_silenced


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def cnn():
    keras.utils.set_random_seed(0)
    return seed_cnn()


def litert_interpreter(tflite_bytes):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_content=tflite_bytes)
    interp.allocate_tensors()
    return interp


def _outputs(tflite_bytes, x):
    return run_flatbuffer(litert_interpreter(tflite_bytes), x)


def _savedmodel_int8(model, x):
    """What the TFLite converter's own Keras path writes."""
    converter = frozen.keras_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i:i + 1]]
                                                for i in range(len(x)))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with converter_output_silenced():
        return converter.convert()


def test_convert_does_not_write_a_savedmodel(cnn, x, monkeypatch):
    def refuse(model):
        raise AssertionError("from_keras_model was used")
    monkeypatch.setattr(frozen, "keras_converter", refuse)
    r = convert(cnn, "int8", representative_data=x)
    assert r.report["fully_integer"]
    assert not any("SavedModel" in n for n in r.report["notes"])


def test_frozen_int8_equals_the_savedmodel_path_output_for_output(cnn, x):
    ours = convert(cnn, "int8", representative_data=x).tflite_bytes
    theirs = _savedmodel_int8(cnn, x)
    np.testing.assert_array_equal(_outputs(ours, x), _outputs(theirs, x))


def test_frozen_qat_int8_equals_the_savedmodel_path_output_for_output(cnn,
                                                                     x):
    qat = quantize_model(cnn)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    qat.fit(x, np.arange(len(x)) % 10, epochs=1, batch_size=16, verbose=0)
    ours = convert(qat, "int8").tflite_bytes
    from tfcompress.convert import strip_training_wrappers
    theirs = _savedmodel_int8(strip_training_wrappers(qat), x[:8])
    np.testing.assert_array_equal(_outputs(ours, x), _outputs(theirs, x))


def test_flatbuffer_has_the_serving_default_signature(cnn, x):
    r = convert(cnn, "int8", representative_data=x)
    interp = litert_interpreter(r.tflite_bytes)
    signatures = interp.get_signature_list()
    assert list(signatures) == ["serving_default"]
    [name] = signatures["serving_default"]["inputs"]
    assert signatures["serving_default"]["outputs"] == ["output_0"]
    runner = interp.get_signature_runner()
    got = runner(**{name: x[:1]})["output_0"]
    np.testing.assert_array_equal(got, _outputs(r.tflite_bytes, x[:1]))


def test_savedmodel_round_trip_when_freezing_fails(cnn, x, monkeypatch):
    def fail(model):
        raise ValueError("cannot freeze this graph")
    monkeypatch.setattr(frozen, "inference_converter", fail)
    r = convert(cnn, "int8", representative_data=x)
    assert r.report["fully_integer"]
    assert any("SavedModel" in n and "cannot freeze" in n
               for n in r.report["notes"])
    assert litert_interpreter(r.tflite_bytes).get_signature_list()


def test_add_signature_refuses_a_count_mismatch(cnn, x):
    converter, inputs, outputs = frozen.inference_converter(cnn)
    with converter_output_silenced():
        flat = converter.convert()
    with pytest.raises(ValueError, match="1 input"):
        frozen.add_signature(flat, inputs + ["extra"], outputs)


def test_a_qat_model_converts_with_the_tflite_converter_directly(x):
    # tfmot's QAT guide converts with TFLiteConverter.from_keras_model and
    # Optimize.DEFAULT; a tfcompress QAT model (pooling, residual add,
    # batch norm folded) must give an int8 graph that way too
    from tfcompress.inspect import inspect
    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    pooled = keras.layers.AveragePooling2D(3, 1, "same")(h)
    h = keras.layers.Add()([h, keras.layers.MaxPooling2D(3, 1, "same")(
        pooled)])
    h = keras.layers.GlobalAveragePooling2D()(h)
    qat = quantize_model(keras.Model(inputs, keras.layers.Dense(10)(h)))
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    qat.fit(x, np.arange(len(x)) % 10, epochs=1, batch_size=16, verbose=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(qat)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    with converter_output_silenced():
        report = inspect(converter.convert())
    ops = sorted({op["op"] for op in report["ops"]})
    assert report["fully_integer"], ops
    assert ops == ["ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEQUANTIZE",
                   "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "QUANTIZE"]
