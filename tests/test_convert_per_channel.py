"""Per-tensor int8 weights as a user option: the recipe key
``convert.per_channel`` and the CLI flag ``--per_channel/--noper_channel``
(default: one scale per output channel)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress.inspect import inspect
from tfcompress.recipes import keys, stages
from tfcompress.recipes.schema import load_recipe_text

RECIPE = ("model: lenet_300_100\nvariants:\n  - name: v\n    stages:\n"
          "      - {stage}\n")


def _tiny_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x))


def _tiny_data():
    x = np.random.default_rng(0).random((16, 6, 6, 1), dtype=np.float32)
    y = np.zeros(16, "int32")
    return (x, y), (x, y)


def _weight_scales(path):
    """Layer ('conv', 'fc') -> number of scales of its int8 weight tensor."""
    out = {}
    for w in inspect(path)["weights"]:
        if w["dtype"] == "INT8" and len(w["shape"]) >= 2:
            layer = "conv" if "conv" in w["name"] else "fc"
            out[layer] = w["quantization"]["scales"]
    return out


def _convert_params(stage):
    loaded = load_recipe_text(RECIPE.format(stage=stage), "r.yaml")
    return loaded["variants"][0]["stages"][0]["convert"]


def test_recipe_per_channel_defaults_to_true():
    assert _convert_params("convert: {}")["per_channel"] is True


def test_recipe_per_channel_must_be_a_bool():
    from tfcompress.recipes.schema import RecipeError
    with pytest.raises(RecipeError, match=r"r\.yaml:5: .*convert\."
                                          r"per_channel: expected bool"):
        _convert_params("convert: {per_channel: sometimes}")


def test_recipe_per_channel_false_writes_one_scale_per_weight_tensor(
        tmp_path):
    path = str(tmp_path / "per_tensor.tflite")
    stages.run_convert(_tiny_model(),
                       _convert_params("convert: {per_channel: false}"),
                       _tiny_data(), path)
    assert _weight_scales(path) == {"conv": 1, "fc": 1}


def test_recipe_default_writes_a_scale_per_output_channel(tmp_path):
    path = str(tmp_path / "per_channel.tflite")
    stages.run_convert(_tiny_model(), _convert_params("convert: {}"),
                       _tiny_data(), path)
    assert _weight_scales(path) == {"conv": 4, "fc": 3}


def test_per_channel_false_changes_the_convert_key_default_keeps_it():
    default = _convert_params("convert: {}")
    # the settings before per_channel (and the later float_layers) existed
    before = {k: v for k, v in default.items()
              if k not in ("per_channel", "float_layers")}
    per_tensor = dict(default, per_channel=False)
    # the default leaves the key as before the setting existed, so
    # flatbuffers converted then are reused
    assert keys.stage_settings("convert", default) == before
    assert keys.key(keys.stage_settings("convert", per_tensor)) != \
        keys.key(keys.stage_settings("convert", default))


def test_qat_layer_bits_unset_stays_out_of_the_key():
    params = {"scheme": "default_8bit", "layer_bits": None}
    assert keys.stage_settings("qat", params) == {"scheme": "default_8bit"}
    assert keys.stage_settings("qat", dict(params, layer_bits={"a": 4})) \
        == dict(params, layer_bits={"a": 4})


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model = folder / "tiny.keras"
    _tiny_model().save(model)
    data = folder / "data.npz"
    np.savez(data, x=_tiny_data()[0][0])
    return model, data


@pytest.mark.parametrize("flag,scales", [
    ("--noper_channel", {"conv": 1, "fc": 1}),
    (None, {"conv": 4, "fc": 3}),
])
def test_cli_convert_per_channel_flag(saved_model, tmp_path, flag, scales):
    model, data = saved_model
    out = tmp_path / "tiny.tflite"
    r = _cli("convert", str(model), "--mode", "int8", "--data", str(data),
             "--samples", "16", "--output", str(out),
             *([flag] if flag else []))
    assert r.returncode == 0, r.stderr[-1500:]
    assert _weight_scales(str(out)) == scales


def test_cli_flag_and_recipe_key_share_the_default():
    from absl import flags

    import tfcompress.commands.convert  # noqa: F401  defines the flags
    from tfcompress.recipes.schema import STAGE_SCHEMAS
    assert flags.FLAGS["per_channel"].default is True
    assert STAGE_SCHEMAS["convert"]["per_channel"].default is True


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy"])
@pytest.mark.parametrize("per_channel,scales", [(False, 1), (True, 4)])
def test_per_channel_holds_for_every_calibration(tmp_path, calibration,
                                                 per_channel, scales):
    from tfcompress.convert import convert
    (x, _), _ = _tiny_data()
    path = str(tmp_path / "m.tflite")
    convert(_tiny_model(), "int8", representative_data=x,
            calibration=calibration, per_channel=per_channel,
            output_path=path)
    assert _weight_scales(path)["conv"] == scales
