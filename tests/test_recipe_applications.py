"""Recipes on keras.applications models: ``model: keras.applications.X``,
``model_options``, ``data.image_size``/``data.channels`` and
``train.batchnorm_momentum``."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfcompress.errors import InputError
from tfcompress.recipes import keys
from tfcompress.recipes.schema import RecipeError, load_recipe_text

MINI = """\
name: mini_mobilenet_v2
model: keras.applications.MobileNetV2
model_options: {alpha: 0.35}
data: {name: fashion_mnist, train_samples: 32, test_samples: 16,
       image_size: 32, channels: 3}
train: {epochs: 1, batch_size: 32, batchnorm_momentum: 0.9}
variants:
  - name: ptq_int8
    stages:
      - convert: {mode: int8, samples: 8}
"""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_application_recipe_loads_with_options_and_image_settings():
    r = load_recipe_text(MINI, "mini.yaml")
    assert r["model"] == "keras.applications.MobileNetV2"
    assert r["model_options"] == {"alpha": 0.35}
    assert (r["data"]["image_size"], r["data"]["channels"]) == (32, 3)
    assert r["train"]["batchnorm_momentum"] == 0.9


def test_shipped_mobilenet_v2_recipe_validates():
    from tfcompress.recipes.schema import load_recipe
    r = load_recipe(os.path.join(REPO, "configs",
                                 "mobilenet_v2_fashion_mnist.yaml"))
    assert r["model"] == "keras.applications.MobileNetV2"
    assert [v["name"] for v in r["variants"]] == [
        "float", "ptq_int8", "qat_int8", "pruned50_qat_int8",
        "channels50_qat_int8"]


def test_unknown_application_is_input_error_listing_names():
    text = MINI.replace("MobileNetV2", "MobileNetV9")
    with pytest.raises(InputError) as e:
        load_recipe_text(text, "mini.yaml")
    msg = str(e.value)
    assert msg.startswith("mini.yaml:2: model 'keras.applications.MobileNetV9'")
    assert "did you mean keras.applications.MobileNetV2?" in msg
    assert "ResNet50" in msg and "\n" not in msg


def test_option_the_constructor_does_not_take_is_input_error():
    with pytest.raises(RecipeError, match=r"model_options.depth: .*takes "
                       r"alpha, name"):
        load_recipe_text(MINI.replace("{alpha: 0.35}",
                                      "{alpha: 0.35, depth: 3}"), "m.yaml")


def test_option_tfcompress_sets_is_input_error():
    with pytest.raises(RecipeError, match="model_options.weights: "
                       "tfcompress sets it"):
        load_recipe_text(MINI.replace("{alpha: 0.35}",
                                      "{weights: imagenet}"), "m.yaml")


def test_model_options_on_a_reference_model_is_input_error():
    with pytest.raises(RecipeError, match="only keras.applications models "
                       "take options"):
        load_recipe_text("model: seed_cnn\nmodel_options: {alpha: 1.0}\n")


def test_new_settings_at_defaults_keep_old_keys():
    from tfcompress.recipes.runner import _data_settings, training_settings
    r = load_recipe_text("model: seed_cnn\n")
    assert "batchnorm_momentum" not in training_settings(r)
    assert _data_settings(r["data"], 1.0) == {}
    r = load_recipe_text(MINI)
    assert training_settings(r)["batchnorm_momentum"] == 0.9
    assert _data_settings(r["data"], 255.0) == {
        "image_size": 32, "channels": 3, "pixel_scale": 255.0}
    assert keys.stage_settings("train", {"epochs": 1,
                                         "batchnorm_momentum": None}) == \
        {"epochs": 1}


def test_resize_images_to_size_and_channels():
    from tfcompress.data import resize_images
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    out = resize_images(x, 32, 3)
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.float32
    assert np.array_equal(out[..., 0], out[..., 2])
    assert 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(InputError, match="data.channels"):
        resize_images(np.zeros((1, 8, 8, 3), np.float32), None, 4)


def test_built_model_has_the_data_input_shape_and_classes():
    from tfcompress.recipes.runner import (baseline_model, data_classes,
                                           load_data)
    r = load_recipe_text(MINI)
    d = r["data"]
    data = load_data(d["name"], 32, 16, d["image_size"], d["channels"])
    (xt, _), _ = data
    assert xt.shape[1:] == (32, 32, 3)
    model = baseline_model(r, xt.shape[1:], data_classes(data))
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].get_config()["activation"] == "linear"
    import keras
    norms = [l for l in model.layers
             if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and all(l.momentum == 0.9 for l in norms)


def test_input_size_the_model_refuses_is_input_error():
    from tfcompress.models.applications import build_application
    with pytest.raises(InputError, match=r"refuses input shape \(28, 28, 1\)"
                       r".*at least 32x32.*data.image_size"):
        build_application("keras.applications.MobileNetV2", {"alpha": 0.35},
                          (28, 28, 1), 10)


def test_refused_size_suggests_the_size_the_model_takes():
    # InceptionResNetV2 takes 75x75 at least: the hint said "e.g. 32"
    from tfcompress.models.applications import build_application
    with pytest.raises(InputError, match=r"at least 75x75.*"
                       r"data.image_size \(e.g. 75\)"):
        build_application("keras.applications.InceptionResNetV2", {},
                          (32, 32, 3), 10)


def test_models_that_rescale_themselves_get_255_pixels():
    from tfcompress.recipes.runner import pixel_scale
    v3 = load_recipe_text(MINI.replace("MobileNetV2", "MobileNetV3Small"))
    assert pixel_scale(v3, (32, 32, 3), 10) == 255.0
    assert pixel_scale(load_recipe_text(MINI), (32, 32, 3), 10) == 1.0


def test_a_normalization_first_means_255_pixels():
    # ConvNeXt's preprocessing: ImageNet mean and variance of [0, 255]
    import keras
    from tfcompress.models.applications import rescales_input
    inp = keras.Input((8, 8, 3))
    norm = keras.Model(inp, keras.layers.Normalization(
        mean=[124.0] * 3, variance=[3000.0] * 3)(inp))
    conv = keras.Model(inp, keras.layers.Conv2D(2, 3)(inp))
    assert rescales_input(norm) and not rescales_input(conv)


def test_a_nested_base_that_rescales_means_255_pixels():
    # a transfer-learning model around MobileNetV3 / EfficientNet: the
    # base is the first layer, its Rescaling the first layer inside it
    import keras
    from tfcompress.models.applications import rescales_input
    inp = keras.Input((8, 8, 3))
    base = keras.Model(inp, keras.layers.Conv2D(2, 3)(
        keras.layers.Rescaling(1 / 255)(inp)))
    seq = keras.Sequential([keras.Input((8, 8, 3)), base,
                            keras.layers.GlobalAveragePooling2D()])
    fn = keras.Model(inp, keras.layers.Flatten()(base(inp)))
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])])
    assert rescales_input(seq) and rescales_input(fn)
    assert not rescales_input(plain)


def test_cli_shows_one_line_without_traceback_for_a_refused_size(tmp_path):
    p = tmp_path / "r.yaml"
    # no image_size: Fashion-MNIST's 28x28x1 is below MobileNetV2's 32x32
    p.write_text(MINI.replace("image_size: 32, channels: 3", "channels: 3"))
    r = subprocess.run([sys.executable, "-m", "tfcompress", "run", str(p),
                        "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    errors = [l for l in r.stderr.splitlines() if "refuses" in l]
    assert len(errors) == 1 and "data.image_size" in errors[0]


@pytest.mark.slow
def test_run_of_a_mini_recipe_writes_a_fully_integer_flatbuffer(tmp_path):
    from tfcompress.inspect import inspect
    from tfcompress.recipes import run_recipe
    p = tmp_path / "mini.yaml"
    p.write_text(MINI)
    result = run_recipe(str(p), out_dir=str(tmp_path / "run"))
    path = result["results"]["ptq_int8"]["tflite"]
    report = inspect(open(path, "rb").read())
    assert report["fully_integer"], report["float_ops"]
    assert report["inputs"][0]["shape"][1:] == [32, 32, 3]


def test_a_recipe_written_before_these_settings_keeps_its_keys():
    # values computed by tfcompress before model_options, data.image_size,
    # data.channels and train.batchnorm_momentum existed
    from tfcompress.recipes.keys import InputHashes, key
    from tfcompress.recipes.runner import _data_keys, training_settings
    from tfcompress.recipes.schema import load_recipe
    r = load_recipe(os.path.join(REPO, "configs", "fashion_mnist_cnn.yaml"))
    raw = ((np.zeros((4, 28, 28), np.uint8), np.arange(4, dtype=np.uint8)),
           (np.ones((2, 28, 28), np.uint8), np.arange(2, dtype=np.uint8)))
    assert _data_keys(r["data"], raw, InputHashes(REPO)) == (
        "de34a1c35e7348f6", "d2ecf5c72223d08c")
    assert key(training_settings(r)) == "2ca1a55277cbe955"
