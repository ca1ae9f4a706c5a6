"""Recipes that name the user's own .keras model: the data is shaped and
scaled as the model takes it, a model that cannot take the data is
refused in one line before any training, and ``--only`` keeps the other
variants' finished results in the report."""

import json

import numpy as np
import pytest

from tfcompress.errors import InputError
from tfcompress.recipes import run_recipe

FLOAT_ONLY = """  - name: float
    stages:
      - convert: {mode: float32}
"""


def _recipe(tmp_path, model, variants=FLOAT_ONLY, classes=10):
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (64, 28, 28), dtype=np.uint8),
             y_train=np.arange(64) % classes,
             x_test=rng.integers(0, 256, (32, 28, 28), dtype=np.uint8),
             y_test=np.arange(32) % classes)
    path = tmp_path / "model.keras"
    model.save(path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {path}\ndata: {npz}\ntrain:\n"
                      f"  epochs: 1\n  batch_size: 32\nvariants:\n{variants}")
    return recipe


def _dense(inputs, *layers, outputs=10):
    import keras
    return keras.Sequential([keras.Input(inputs), *layers,
                             keras.layers.Flatten(),
                             keras.layers.Dense(outputs)])


def test_a_model_that_rescales_its_input_gets_pixels_in_0_255(
        tmp_path, capsys):
    import keras
    model = _dense((28, 28, 1), keras.layers.Rescaling(1 / 255.0))
    out = tmp_path / "run"
    run_recipe(str(_recipe(tmp_path, model)), out_dir=str(out))
    assert "pixels in [0, 255]" in capsys.readouterr().out
    x = np.load(out / "eval.npz")["x"]
    assert x.max() > 200


def test_a_model_without_rescaling_keeps_pixels_in_0_1(tmp_path):
    out = tmp_path / "run"
    run_recipe(str(_recipe(tmp_path, _dense((28, 28, 1)))), out_dir=str(out))
    assert np.load(out / "eval.npz")["x"].max() <= 1.0


def test_a_model_without_a_channel_axis_takes_the_images(tmp_path):
    out = tmp_path / "run"
    result = run_recipe(str(_recipe(tmp_path, _dense((28, 28)))),
                        out_dir=str(out))
    assert np.load(out / "eval.npz")["x"].shape == (32, 28, 28)
    assert result["results"]["float"]["keras_accuracy"] is not None


@pytest.mark.parametrize("build, message", [
    (lambda: _dense((28, 28, 1), outputs=5),
     r"gives 5 logits.*labels 0 to 9.*10 units"),
    (lambda: _dense((32, 32, 3)),
     r"takes inputs of shape \(32, 32, 3\).*\(28, 28, 1\).*"
     r"data.image_size.*data.channels"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_before_training(
        tmp_path, build, message):
    out = tmp_path / "run"
    with pytest.raises(InputError, match=message):
        run_recipe(str(_recipe(tmp_path, build())), out_dir=str(out))
    assert not (out / "baseline.keras").exists()
    assert not (out / "eval.npz").exists()


def test_a_model_with_two_outputs_is_refused_before_training(tmp_path):
    import keras
    inp = keras.Input((28, 28, 1))
    flat = keras.layers.Flatten()(inp)
    model = keras.Model(inp, {"cls": keras.layers.Dense(10)(flat),
                              "box": keras.layers.Dense(4)(flat)})
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"2 outputs.*one output"):
        run_recipe(str(_recipe(tmp_path, model)), out_dir=str(out))
    assert not (out / "baseline.keras").exists()


def test_a_missing_model_file_is_refused_before_any_file_is_written(
        tmp_path):
    recipe = _recipe(tmp_path, _dense((28, 28, 1)))
    (tmp_path / "model.keras").unlink()
    out = tmp_path / "run"
    with pytest.raises(InputError, match="neither a reference model"):
        run_recipe(str(recipe), out_dir=str(out))
    assert not (out / "eval.npz").exists()


TWO_VARIANTS = FLOAT_ONLY + """  - name: half
    stages:
      - convert: {mode: float16}
"""


def test_only_keeps_the_other_variants_finished_results(tmp_path):
    recipe = _recipe(tmp_path, _dense((28, 28, 1)), TWO_VARIANTS)
    out = tmp_path / "run"
    run_recipe(str(recipe), out_dir=str(out))
    run_recipe(str(recipe), out_dir=str(out), only="half")
    report = json.loads((out / "report.json").read_text())
    assert {v["variant"] for v in report["variants"]} >= {"float", "half"}


def test_only_leaves_out_a_variant_that_never_ran(tmp_path):
    recipe = _recipe(tmp_path, _dense((28, 28, 1)), TWO_VARIANTS)
    out = tmp_path / "run"
    run_recipe(str(recipe), out_dir=str(out), only="half")
    report = json.loads((out / "report.json").read_text())
    names = {v["variant"] for v in report["variants"]}
    assert "half" in names and "float" not in names
    assert not (out / "variants" / "float").exists()


def test_a_softmax_model_trains_on_probabilities_not_as_logits(tmp_path):
    import warnings
    import keras
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    variants = FLOAT_ONLY + """  - name: qat
    stages:
      - prune: {final_sparsity: 0.5, epochs: 1}
      - qat: {epochs: 1}
      - convert: {mode: int8}
"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_recipe(str(_recipe(tmp_path, model, variants)),
                   out_dir=str(tmp_path / "run"))
    assert not [w for w in caught if "from_logits" in str(w.message)]


def test_softmax_is_found_through_the_training_wrappers():
    import keras
    from tfcompress import cluster, prune, quantize
    from tfcompress.utils.outputs import gives_probabilities
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4),
                              keras.layers.Dense(3, activation="softmax")])
    for wrapped in (model, quantize.quantize_model(model),
                    prune.prune_low_magnitude(model),
                    cluster.cluster_weights(model, 2)):
        assert gives_probabilities(wrapped)
    inp = keras.Input((8,))
    assert gives_probabilities(keras.Model(inp, keras.layers.Softmax()(
        keras.layers.Dense(3)(inp))))
    assert not gives_probabilities(keras.Model(inp, keras.layers.Dense(3)(
        keras.layers.Dense(3, activation="softmax")(inp))))


@pytest.mark.parametrize("stage,match", [
    ("convert: {mode: int8, calibration: percentile}",
     r"calibration percentile does not apply to a QAT model"),
    ("prune: {final_sparsity: 0.5, epochs: 1}",
     r"stage 0 \(prune\) takes a float model"),
    ("ptq: {steps: [correct_bias]}",
     r"stage 0 \(ptq\) takes a float model")])
def test_a_qat_model_file_with_stages_it_cannot_take_is_refused_first(
        tmp_path, stage, match):
    # found at that stage before, after the baseline had trained
    from tfcompress import quantize
    model = quantize.quantize_model(_dense((28, 28, 1)))
    variants = f"  - name: v\n    stages:\n      - {stage}\n"
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"model\.keras is a QAT model: "
                       r"variant 'v' " + match):
        run_recipe(str(_recipe(tmp_path, model, variants)), out_dir=str(out))
    assert not out.exists()
