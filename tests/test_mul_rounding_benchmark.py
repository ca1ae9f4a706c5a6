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
