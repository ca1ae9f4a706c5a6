"""Keeping named layers float in a post-training int8 model:
``convert(..., float_layers=[...])``, the recipe key ``convert.float_layers``
and the CLI flag ``--float_layers``."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress.convert import FloatFallbackError, convert
from tfcompress.errors import InputError
from tfcompress.inspect import inspect
from tfcompress.recipes import keys, stages
from tfcompress.recipes.schema import RecipeError, load_recipe_text

RECIPE = ("model: lenet_300_100\nvariants:\n  - name: v\n    stages:\n"
          "      - {stage}\n")


def _mlp(outlier=False):
    """8 -> fc1 -> fc2 -> out. With ``outlier``, fc1's weights of input
    feature 0 (always 0 in the data) are 1000: each of its per-channel
    scales becomes ~8, which rounds every other fc1 weight to zero."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = L.Dense(16, activation="relu", name="fc1")(inp)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Dense(16, activation="relu", name="fc2")(x)
    model = keras.Model(inp, L.Dense(4, name="out")(x))
    if outlier:
        kernel, bias = model.get_layer("fc1").get_weights()
        kernel[0, :] = 1000.0
        model.get_layer("fc1").set_weights([kernel, bias])
    return model


def _data(n=64):
    x = np.random.default_rng(0).random((n, 8), dtype=np.float32)
    x[:, 0] = 0.0
    return x


def _fully_connected(report):
    """``(output tensor name, input types, output types)`` of each
    FULLY_CONNECTED op, in graph order."""
    return [(o["output"], o["inputs"], o["outputs"]) for o in report["ops"]
            if o["op"] == "FULLY_CONNECTED"]


def test_the_float_layer_computes_in_float32_the_others_in_int8():
    result = convert(_mlp(), "int8", representative_data=_data(),
                     float_layers=["fc1"])
    fcs = _fully_connected(inspect(result.tflite_bytes))
    assert len(fcs) == 3
    name, ins, outs = fcs[0]
    assert "fc1" in name
    assert set(ins) == {"FLOAT32"} and outs == ["FLOAT32"]
    for name, ins, outs in fcs[1:]:
        assert "fc1" not in name
        assert set(ins) == {"INT8", "INT32"} or set(ins) == {"INT8"}
        assert outs == ["INT8"]
    ops = [o["op"] for o in result.report["ops"]]
    assert "QUANTIZE" in ops[ops.index("FULLY_CONNECTED"):]


def test_the_output_layer_can_stay_float():
    # the output tensor of the last op carries no layer name; its weights do
    result = convert(_mlp(), "int8", representative_data=_data(),
                     float_layers=["out"])
    fcs = _fully_connected(result.report)
    assert [outs for _, _, outs in fcs] == [["INT8"], ["INT8"], ["FLOAT32"]]


def test_keeping_a_badly_quantized_layer_float_is_closer_to_keras():
    model, x = _mlp(outlier=True), _data()
    full = convert(model, "int8", representative_data=x)
    kept = convert(model, "int8", representative_data=x,
                   float_layers=["fc1"])
    full_err = full.report["numerical_check"]["mean_abs_error"]
    kept_err = kept.report["numerical_check"]["mean_abs_error"]
    assert kept_err < full_err / 5, (kept_err, full_err)


def test_strict_accepts_requested_float_layers_and_the_report_names_them():
    result = convert(_mlp(), "int8", representative_data=_data(),
                     float_layers=["fc2"], strict=True)
    report = result.report
    assert report["float_ops"] == []
    assert report["float_layers"] == ["fc2"]
    requested = report["float_by_request"]
    assert [r["op"] for r in requested] == ["FULLY_CONNECTED"]
    assert requested[0]["layer"] == "fc2"
    assert report["fully_integer"] is False
    assert "fc2" in result.to_table()


def test_strict_still_fails_on_float_ops_that_were_not_requested():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = L.Dense(8, name="fc1")(inp)
    # no int8 kernel for COS: stays float without being asked to
    x = L.Lambda(lambda t: keras.ops.cos(t), name="cosine")(x)
    model = keras.Model(inp, L.Dense(4, name="out")(x))
    with pytest.raises(FloatFallbackError) as caught:
        convert(model, "int8", representative_data=_data(),
                float_layers=["fc1"])
    assert [f["op"] for f in caught.value.result.fallback_ops] == ["COS"]


def test_layer_names_that_extend_each_other_are_told_apart():
    # TensorFlow writes layer "fc" as fc_1 and layer "fc_1" as fc_1_2
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    x = L.Dense(8, activation="relu", name="fc")(inp)
    x = L.Dense(8, activation="relu", name="fc_1")(x)
    model = keras.Model(inp, L.Dense(4, name="out")(x))
    for kept, types in (("fc", [["FLOAT32"], ["INT8"], ["INT8"]]),
                        ("fc_1", [["INT8"], ["FLOAT32"], ["INT8"]])):
        result = convert(model, "int8", representative_data=_data(),
                         float_layers=[kept])
        assert [o for _, _, o in _fully_connected(result.report)] == types


def _cnn():
    """conv1 + BatchNormalization + ReLU (fused into one CONV_2D), then a
    nested model's conv2 block, pooling and a Dense head."""
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.Input((8, 8, 4)),
                              L.Conv2D(4, 3, padding="same", name="conv2"),
                              L.ReLU(name="relu2")], name="block")
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = block(L.ReLU(name="relu1")(x))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


@pytest.mark.parametrize("kept, float_op", [("conv1", 0), ("conv2", 1)])
def test_a_fused_or_nested_convolution_can_stay_float(kept, float_op):
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    result = convert(_cnn(), "int8", representative_data=x,
                     float_layers=[kept])
    convs = [o for o in result.report["ops"] if o["op"] == "CONV_2D"]
    assert [c["outputs"] for c in convs] == [
        ["FLOAT32"] if i == float_op else ["INT8"] for i in range(2)]
    assert [r["layer"] for r in result.report["float_by_request"]] == [kept]


def test_a_folded_batch_normalization_is_an_input_error_saying_so():
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    with pytest.raises(InputError, match=r"'bn1' has no op.*fused"):
        convert(_cnn(), "int8", representative_data=x, float_layers=["bn1"])


def test_a_nested_model_name_is_an_input_error_naming_its_layers():
    # it was "no layer named 'block'", though block is a layer of the model
    x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    with pytest.raises(InputError, match=r"'block' is a nested model.*"
                       r"\(conv2, relu2\)"):
        convert(_cnn(), "int8", representative_data=x,
                float_layers=["block"])


def test_an_unknown_layer_name_is_an_input_error_listing_the_names():
    with pytest.raises(InputError, match=r"fc3.*fc1, .*fc2, .*out"):
        convert(_mlp(), "int8", representative_data=_data(),
                float_layers=["fc3"])


def test_a_layer_without_ops_of_its_own_is_an_input_error():
    with pytest.raises(InputError, match=r"drop.* no op"):
        convert(_mlp(), "int8", representative_data=_data(),
                float_layers=["drop"])


def test_float_layers_need_post_training_int8():
    with pytest.raises(InputError, match="float_layers.*int8"):
        convert(_mlp(), "float16", float_layers=["fc1"])


def test_float_layers_keep_integer_io_types():
    result = convert(_mlp(), "int8", representative_data=_data(),
                     float_layers=["fc1"], input_type="int8",
                     output_type="int8")
    assert result.report["inputs"][0]["dtype"] == "INT8"
    assert result.report["outputs"][0]["dtype"] == "INT8"
    assert _fully_connected(result.report)[0][2] == ["FLOAT32"]


def test_float_layers_with_percentile_calibration():
    result = convert(_mlp(), "int8", representative_data=_data(),
                     float_layers=["fc1"], calibration="percentile")
    assert [outs for _, _, outs in _fully_connected(result.report)] == \
        [["FLOAT32"], ["INT8"], ["INT8"]]


# -- recipe and CLI ---------------------------------------------------------
def _convert_params(stage):
    loaded = load_recipe_text(RECIPE.format(stage=stage), "r.yaml")
    return loaded["variants"][0]["stages"][0]["convert"]


def test_recipe_float_layers_default_to_empty_and_stay_out_of_the_key():
    default = _convert_params("convert: {}")
    assert default["float_layers"] == []
    # the key of a stage written before the setting existed
    before = {k: v for k, v in default.items() if k != "float_layers"}
    assert keys.stage_settings("convert", default) == \
        keys.stage_settings("convert", before)
    kept = dict(default, float_layers=["fc1"])
    assert keys.stage_settings("convert", kept)["float_layers"] == ["fc1"]


def test_recipe_float_layers_need_mode_int8():
    with pytest.raises(RecipeError, match=r"float_layers: .*mode is float16"):
        _convert_params("convert: {mode: float16, float_layers: [fc1]}")


def test_recipe_float_layers_must_be_a_list_of_names():
    with pytest.raises(RecipeError, match=r"r\.yaml:5: .*convert\."
                                          r"float_layers: expected a list"):
        _convert_params("convert: {float_layers: fc1}")


def test_recipe_float_layers_reach_the_flatbuffer(tmp_path):
    path = str(tmp_path / "kept.tflite")
    x = _data()
    stages.run_convert(_mlp(),
                       _convert_params("convert: {float_layers: [fc2]}"),
                       ((x, None), (x, None)), path)
    fcs = _fully_connected(inspect(path))
    assert [outs for _, _, outs in fcs] == [["INT8"], ["FLOAT32"], ["INT8"]]


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_float_layers_flag(tmp_path):
    model = tmp_path / "mlp.keras"
    _mlp().save(model)
    data = tmp_path / "data.npz"
    np.savez(data, x=_data())
    out = tmp_path / "mlp.tflite"
    r = _cli("convert", str(model), "--mode", "int8", "--data", str(data),
             "--samples", "32", "--output", str(out),
             "--float_layers=fc1,out")
    assert r.returncode == 0, r.stderr[-1500:]
    fcs = _fully_connected(inspect(str(out)))
    assert [outs for _, _, outs in fcs] == [["FLOAT32"], ["INT8"],
                                            ["FLOAT32"]]
    assert "float by request" in r.stdout


def test_cli_flag_and_recipe_key_share_the_default():
    from absl import flags

    import tfcompress.commands.convert  # noqa: F401  defines the flags
    from tfcompress.recipes.schema import STAGE_SCHEMAS
    assert not flags.FLAGS["float_layers"].default
    assert STAGE_SCHEMAS["convert"]["float_layers"].default == []


def test_float_layers_on_a_qat_model_is_an_input_error():
    from tfcompress.quantize import quantize_model
    qat = quantize_model(_mlp())
    with pytest.raises(InputError, match="QAT.*quantize_annotate_layer"):
        convert(qat, "int8", float_layers=["fc1"])


def test_an_op_fused_from_two_float_layers_is_listed_under_both():
    # a CONV_2D whose output tensor names the convolution and the x + 3.0
    # folded into it (MobileNetV3's hard sigmoid) belongs to both layers
    from tfcompress.convert.fallback import mark_requested
    report = {"float_ops": [{"index": 4, "op": "CONV_2D", "layer": "conv"},
                            {"index": 7, "op": "MEAN", "layer": "pool"}],
              "ops": [{"index": 4, "output": "m/add_1;m/conv/Conv2D"},
                      {"index": 7, "output": "m/pool/Mean"}],
              "notes": [], "fully_integer": True}
    mark_requested(report, {"conv": ["m/add_1;m/conv/Conv2D"],
                            "add_1": ["m/add_1;m/conv/Conv2D"]})
    assert [(r["op"], r["layer"]) for r in report["float_by_request"]] == [
        ("CONV_2D", "conv, add_1")]
    assert report["float_layers"] == ["conv", "add_1"]
    assert [r["layer"] for r in report["float_ops"]] == ["pool"]
    assert report["fully_integer"] is False


def test_an_unknown_name_among_many_layers_gives_the_closest_names():
    # an application model has hundreds of layers: all of them were listed
    inputs = keras.Input((8,))
    x = inputs
    for i in range(20):
        x = keras.layers.Dense(8, name=f"block_{i}_fc")(x)
    model = keras.Model(inputs, x)
    x8 = np.random.default_rng(0).normal(size=(8, 8)).astype("float32")
    with pytest.raises(InputError, match=r"^float_layers: no layer named "
                       r"'block_3_fcc'; did you mean block_3_fc.*\? "
                       r"\(model.summary\(\) lists all 20 layers\)$"):
        convert(model, "int8", representative_data=x8,
                float_layers=["block_3_fcc"])
