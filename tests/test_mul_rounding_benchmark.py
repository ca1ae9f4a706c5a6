"""benchmarks/mul_rounding.py: the rule it says x86 XNNPACK rounds an int8
MUL with is the one LiteRT's x86 XNNPACK uses."""

import os
import sys

import numpy as np

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")
sys.path.insert(0, BENCH)
import mul_rounding  # noqa: E402


def test_x86_xnnpack_int8_mul_outputs_follow_the_fp32_rule(tmp_path):
    import keras
    from tfcompress.bench.first_difference import EveryOutputCopy
    from tfcompress.convert import convert
    from tfcompress.inspect.model_reader import read_model
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same")(i)
    g = keras.layers.Conv2D(8, 1, activation="sigmoid")(i)
    model = keras.Model(i, keras.layers.Multiply()([a, g]))
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    path = tmp_path / "mul.tflite"
    convert(model, "int8", representative_data=x, output_path=str(path))
    every = EveryOutputCopy(str(path), {"x": x}, str(tmp_path))
    tflite = read_model(path.read_bytes())
    counts = mul_rounding.mul_counts(
        tflite["subgraphs"][0], [o["name"] for o in tflite["opcodes"]],
        every.dump())
    assert counts["ops"] == 1 and counts["elements"] == 64 * 8 * 8 * 8
    assert counts["fp32_misses"] == 0


def _mul_with_scales(scales_and_zeros):
    """An int8 flatbuffer of a * b (two int8 inputs of 4 values) whose
    MUL tensors get the given (scale, zero point)s: a, b, output."""
    import keras
    from tfcompress import compat
    from tfcompress.convert import convert
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    model = keras.Model([a, b], keras.layers.Multiply()([a, b]))
    rng = np.random.default_rng(0)
    calib = {k: rng.normal(size=(8, 4)).astype("float32") for k in "ab"}
    raw = convert(model, "int8", representative_data=calib,
                  input_type="int8", output_type="int8").tflite_bytes
    tree = compat.read_tflite_object(raw)
    graph = tree.subgraphs[0]
    [mul] = graph.operators
    for t, (scale, zero) in zip([*mul.inputs, *mul.outputs],
                                scales_and_zeros):
        q = graph.tensors[t].quantization
        q.scale = np.array([scale], np.float32)
        q.zeroPoint = np.array([zero], np.int64)
    return compat.write_tflite_object(tree, len(raw) + 1024)


def test_x86_xnnpack_rounds_a_mul_tie_as_the_fp32_rule_and_not_rndnu():
    """77 * 116 = 8932 times the scale 0.0041983877 is 37.4999992, which
    float32 makes 37.5: the fp32 rule gives 38, the rndnu rule 37. x86
    XNNPACK must give the fp32 rule's value on each element."""
    from ai_edge_litert.interpreter import Interpreter
    scale = np.float32(0.0041983877)
    raw = _mul_with_scales([(1.0, -128), (float(scale), 0), (1.0, 0)])
    a = np.array([[-51, -51, -128, 27]], np.int8)
    b = np.array([[116, 115, 0, 3]], np.int8)
    interp = Interpreter(model_content=raw)
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), (a, b)):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])[0]
    prod = (a[0].astype(np.int64) + 128) * b[0].astype(np.int64)
    fp32 = mul_rounding.requantized(prod, scale, 0, "fp32")
    rndnu = mul_rounding.requantized(prod, scale, 0, "rndnu")
    assert fp32[0] != rndnu[0]                # the tie tells them apart
    np.testing.assert_array_equal(got, fp32)
