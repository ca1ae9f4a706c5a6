"""The conversion report's check that each weighted op's bias is stored at
input scale x weight scale, as TFLite's kernels read it."""

import struct

import keras
import numpy as np
import pytest

from tfcompress.convert import convert
from tfcompress.convert.result import ConversionResult
from tfcompress.inspect import format_report, inspect
from tfcompress.inspect.bias_scales import bias_scale_mismatches
from tfcompress.inspect.model_reader import read_model

L = keras.layers


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(
        size=(32, 8, 8, 3)).astype("float32")


def _model():
    # biases other than zero: a zero bias reads the same at any scale
    keras.utils.set_random_seed(0)
    bias = {"bias_initializer": "random_normal"}
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, activation="relu", **bias)(inp)
    x = L.DepthwiseConv2D(3, **bias)(x)
    x = L.Conv2DTranspose(4, 3, **bias)(x)
    return keras.Model(inp, L.Dense(5, **bias)(L.Flatten()(x)))


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_ordinary_conversions_store_every_bias_at_the_kernels_scale(
        data, mode):
    r = convert(_model(), mode, representative_data=data)
    weighted = [op for op in r.report["ops"] if op["op"] in (
        "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
        "FULLY_CONNECTED")]
    assert len(weighted) == 4
    assert bias_scale_mismatches(read_model(r.tflite_bytes)) == []
    assert not any("bias stored" in n for n in r.report["notes"])


def _halve_first_bias_scale(tflite_bytes):
    """The flatbuffer with the first CONV_2D's bias scales halved in
    place (each is a float32 found once in the file)."""
    model = read_model(tflite_bytes)
    graph = model["subgraphs"][0]
    op = next(o for o in graph["operators"]
              if model["opcodes"][o["opcode"]]["name"] == "CONV_2D")
    data = bytearray(tflite_bytes)
    for scale in graph["tensors"][op["inputs"][2]]["quantization"]["scale"]:
        old = struct.pack("<f", scale)
        assert data.count(old) == 1
        at = data.index(old)
        data[at:at + 4] = struct.pack("<f", scale / 2)
    return bytes(data)


def test_a_bias_stored_at_another_scale_is_found_and_noted(data):
    r = convert(_model(), "int8", representative_data=data)
    bad = _halve_first_bias_scale(r.tflite_bytes)
    found = bias_scale_mismatches(read_model(bad))
    assert [(m["op"], m["name"]) for m in found] == [
        (next(op["index"] for op in r.report["ops"]
              if op["op"] == "CONV_2D"), "CONV_2D")]
    assert found[0]["ratio"] == pytest.approx(0.5, rel=1e-3)
    report = inspect(bad)
    assert [(m["index"], m["op"]) for m in
            report["bias_scale_mismatches"]] == [(found[0]["op"], "CONV_2D")]
    assert "WARNING bias scale: #" in format_report(report)
    assert inspect(r.tflite_bytes)["bias_scale_mismatches"] == []


def test_the_note_names_the_convolution_not_its_fused_activation(data):
    # a squeeze-and-excite convolution with ReLU6 fused into it: the op's
    # output tensor is named after the ReLU6, float_layers needs the conv
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 1, bias_initializer="random_normal", name="se_conv")(inp)
    model = keras.Model(inp, L.Flatten()(L.ReLU(6.0, name="se_relu6")(x)))
    r = convert(model, "int8", representative_data=data)
    bad = _halve_first_bias_scale(r.tflite_bytes)
    result = ConversionResult.build(
        bad, "int8", model, False, "minmax", None, [], 0.0,
        [layer.name for layer in model.layers])
    notes = [n for n in result.report["notes"] if "bias is stored" in n]
    assert len(notes) == 1
    assert "(layer se_conv)" in notes[0] and "0.5x" in notes[0]
    assert result.report["bias_scale_mismatches"][0]["layer"] == "se_conv"
