"""tfcompress tune: the search on a tiny model and recipe (a few hundred
Fashion-MNIST samples, one epoch). The searches convert several models
each: about a minute of CPU, so they are marked slow."""

import json
import os

import numpy as np
import pytest

from tfcompress.errors import InputError

BUDGET = 2.0


def _tiny_model(path):
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu",
                            name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(10, name="logits")], name="tiny")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_recipe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    model = _tiny_model(str(folder / "tiny.keras"))
    recipe = folder / "tiny.yaml"
    recipe.write_text(
        f"name: tiny\nmodel: {model}\n"
        "data: {name: fashion_mnist, train_samples: 500, test_samples: 200}\n"
        "train: {epochs: 1, batch_size: 50}\n")
    return folder, str(recipe)


@pytest.fixture(scope="module")
def tuned(tiny_recipe):
    from tfcompress.tune import tune
    folder, recipe = tiny_recipe
    lines = []
    result = tune(recipe, budget=BUDGET, out_dir=str(folder / "run"),
                  val_samples=150, max_candidates=5, progress=lines.append)
    return result, lines


@pytest.mark.slow
def test_finds_a_compressed_candidate_within_budget(tuned):
    result, _ = tuned
    chosen, ref = result.chosen, result.reference
    assert chosen["config"]["mode"] != "float32"
    assert (ref["val_accuracy"] - chosen["val_accuracy"]) * 100 <= BUDGET
    assert chosen["gzip_bytes"] < ref["gzip_bytes"] / 2
    with open(chosen["tflite"], "rb") as f:
        assert len(f.read()) == chosen["size_bytes"]
    assert 0.0 <= result.test_accuracy <= 1.0


@pytest.mark.slow
def test_every_candidate_is_in_the_report_and_progress(tuned):
    result, lines = tuned
    assert 2 <= len(result.candidates) <= 5
    with open(result.report_json) as f:
        report = json.load(f)
    keys = [r["key"] for r in report["candidates"]]
    assert keys == [r["key"] for r in result.candidates]
    assert len(set(keys)) == len(keys)
    with open(result.report_md) as f:
        md = f.read()
    for r in result.candidates:
        assert f"| {r['label']}" in md
    assert sum(l.startswith("[tune ") and "/5]" in l for l in lines) == \
        len(result.candidates)
    assert os.path.getsize(result.plot) > 1000


@pytest.mark.slow
def test_resume_evaluates_nothing_again(tuned, tiny_recipe):
    from tfcompress.tune import tune
    result, _ = tuned
    folder, recipe = tiny_recipe
    again = tune(recipe, budget=BUDGET, out_dir=str(folder / "run"),
                 val_samples=150, max_candidates=5, progress=None)
    assert result.evaluations == len(result.candidates)
    assert again.evaluations == 0
    assert [r["key"] for r in again.candidates] == \
        [r["key"] for r in result.candidates]
    assert again.chosen["key"] == result.chosen["key"]


@pytest.mark.slow
def test_chosen_recipe_loads_and_runs(tuned, tmp_path):
    from tfcompress.recipes import run_recipe
    from tfcompress.recipes.schema import load_recipe
    result, _ = tuned
    recipe = load_recipe(result.recipe_path)
    assert recipe["data"]["train_samples"] == result.fit_samples == 350
    names = [v["name"] for v in recipe["variants"]]
    assert names == ["float", "tuned"]
    run = run_recipe(result.recipe_path, out_dir=str(tmp_path / "rerun"))
    tflite = run["results"]["tuned"]["tflite"]
    mode = run["results"]["tuned"]["conversion"]["mode"]
    assert os.path.exists(tflite) and mode == result.chosen["config"]["mode"]


class _Watched(np.ndarray):
    """An array that logs every read of its elements."""
    log = None

    def __getitem__(self, item):
        if _Watched.log is not None:
            _Watched.log.append("test read")
        return np.asarray(self)[item]

    def __array__(self, dtype=None, copy=None):
        if _Watched.log is not None:
            _Watched.log.append("test read")
        return self.view(np.ndarray) if dtype is None else \
            self.view(np.ndarray).astype(dtype)


@pytest.mark.slow
def test_test_split_is_read_only_after_the_search(tmp_path):
    import keras
    from tfcompress.data import load_fashion_mnist, prepare_images
    from tfcompress.tune import tune
    (xt, yt), (xv, yv) = load_fashion_mnist()
    model = keras.models.load_model(_tiny_model(str(tmp_path / "m.keras")))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = prepare_images(xt[:300]), yt[:300].astype("int32")
    model.fit(x, y, epochs=1, verbose=0)
    log = []
    x_test = prepare_images(xv[:100]).view(_Watched)
    _Watched.log = log
    try:
        result = tune(model, ((x, y), (x_test, yv[:100])), budget=BUDGET,
                      out_dir=str(tmp_path / "run"), val_samples=100,
                      max_candidates=2, progress=log.append)
    finally:
        _Watched.log = None
    candidates = [i for i, l in enumerate(log) if str(l).startswith("[tune ")
                  and "/2]" in l]
    reads = [i for i, l in enumerate(log) if l == "test read"]
    assert len(candidates) == 2 and reads
    assert min(reads) > max(candidates)
    assert result.val_samples == 100 and result.fit_samples == 200


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": -1}, "budget must be"),
    ({"objective": "speed"}, "objective must be one of size, latency"),
    ({"max_candidates": 1}, "max_candidates must be"),
])
def test_bad_arguments_are_input_errors(kwargs, message):
    from tfcompress.tune import tune
    with pytest.raises(InputError, match=message):
        tune("configs/fashion_mnist_cnn.yaml", **kwargs)


def test_missing_recipe_is_an_input_error():
    from tfcompress.tune import tune
    with pytest.raises(InputError, match="does not exist"):
        tune("configs/no_such_recipe.yaml")


def test_too_many_validation_samples_is_an_input_error():
    from tfcompress.tune.split import validation_split
    with pytest.raises(InputError, match="validation samples"):
        validation_split(100, val_samples=100)


def test_prune_stage_takes_per_layer_sparsities():
    import keras
    from tfcompress.recipes import stages
    from tfcompress.tune.search import validated_stages
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(32, name="a"),
                              keras.layers.Dense(32, name="b"),
                              keras.layers.Dense(4, name="c")])
    x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    y = np.zeros(64, "int32")
    params = validated_stages([{"prune": {
        "layer_sparsity": {"a": 0.5, "b": 0.9, "c": 0.0}, "epochs": 1}},
        {"convert": {}}])[0]["prune"]
    train = {"batch_size": 16, "optimizer": "adam", "learning_rate": 1e-3}
    pruned = stages.run_prune(model, params, ((x, y), (x, y)), train)
    zeros = {l.name: float(np.mean(l.kernel.numpy() == 0))
             for l in pruned.layers}
    assert zeros["a"] == pytest.approx(0.5, abs=0.02)
    assert zeros["b"] == pytest.approx(0.9, abs=0.02)
    assert zeros["c"] == 0.0


def test_layer_sparsity_out_of_range_is_a_recipe_error():
    from tfcompress.recipes.schema import RecipeError, load_recipe_text
    text = ("variants:\n- name: v\n  stages:\n"
            "  - prune: {layer_sparsity: {fc1: 1.5}}\n")
    with pytest.raises(RecipeError, match=r"layer_sparsity.*fc1.*1\.5"):
        load_recipe_text(text, "r.yaml")


def test_adaround_candidate_is_a_ptq_stage_not_qat():
    from tfcompress.tune import Candidate
    from tfcompress.tune.search import ptq_available, validated_stages
    assert ptq_available()
    stages = validated_stages(Candidate(weight_bits=4,
                                        ptq=("adaround",)).stages())
    kinds = [next(iter(s)) for s in stages]
    assert kinds == ["ptq", "convert"]
    assert stages[0]["ptq"]["weight_bits"] == 4
    assert stages[0]["ptq"]["steps"] == ["adaround"]


def test_ptq_steps_of_a_qat_candidate_run_before_qat():
    # after QAT they would have a fake-quant model to work on
    from tfcompress.tune import Candidate
    from tfcompress.tune.search import validated_stages
    c = Candidate(sparsity=(("fc1", 0.5),), level=0, weight_bits=4,
                  ptq=("equalize", "correct_bias"))
    kinds = [next(iter(s)) for s in validated_stages(c.stages())]
    assert kinds == ["prune", "ptq", "qat", "convert"]


def test_ptq_stage_after_a_qat_stage_is_a_recipe_error():
    from tfcompress.recipes.schema import RecipeError, load_recipe_text
    text = ("variants:\n- name: v\n  stages:\n"
            "  - qat: {}\n  - ptq: {steps: [equalize]}\n"
            "  - convert: {}\n")
    with pytest.raises(RecipeError, match="put ptq before qat"):
        load_recipe_text(text, "r.yaml")


def test_ptq_stage_runs_its_steps_in_order():
    import keras
    from tfcompress.convert import convert
    from tfcompress.recipes import stages
    from tfcompress.tune.search import validated_stages
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, activation="relu",
                                                 name="a"),
                              keras.layers.Dense(4, name="b")])
    x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    params = validated_stages([{"ptq": {
        "steps": ["equalize", "correct_bias", "adaround"],
        "weight_bits": 4, "iterations": 20}}, {"convert": {}}])[0]["ptq"]
    out = stages.run_ptq(model, params, ((x, None), (x, None)))
    result = convert(out, "int8", representative_data=x)
    assert result.report["fully_integer"]
    ref = model.predict(x, verbose=0)
    got = out.predict(x, verbose=0)
    assert np.mean(np.argmax(ref, 1) == np.argmax(got, 1)) > 0.7


def test_unknown_ptq_step_is_a_recipe_error():
    from tfcompress.recipes.schema import RecipeError, load_recipe_text
    text = ("variants:\n- name: v\n  stages:\n"
            "  - ptq: {steps: [equalise]}\n  - convert: {}\n")
    with pytest.raises(RecipeError, match="did you mean 'equalize'"):
        load_recipe_text(text, "r.yaml")


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_bad_input_is_one_line_exit_2():
    r = _cli("tune", "configs/no_such_recipe.yaml", "--budget", "1.0")
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("tfcompress")]
    assert len(lines) == 1 and "no_such_recipe.yaml does not exist" in \
        lines[0]
    r = _cli("tune", "configs/fashion_mnist_cnn.yaml", "--budget", "-3")
    assert r.returncode == 2 and "budget must be" in r.stderr


@pytest.fixture(scope="module")
def latency_tuned(tmp_path_factory):
    """tune with the latency objective on random data, three candidates:
    float32, int8 and the first channel-pruned one."""
    import keras
    from tfcompress.tune import tune
    folder = tmp_path_factory.mktemp("latency")
    model = keras.models.load_model(_tiny_model(str(folder / "m.keras")))
    rng = np.random.default_rng(0)
    x = rng.random((300, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 300).astype("int32")
    return tune(model, ((x, y), (x[:50], y[:50])), budget=100.0,
                objective="latency", out_dir=str(folder / "run"),
                val_samples=100, max_candidates=3, progress=None)


@pytest.mark.slow
def test_latency_objective_benchmarks_every_candidate(latency_tuned):
    result = latency_tuned
    p50 = [r["latency_p50_ms"] for r in result.candidates]
    assert len(p50) == 3 and all(p is not None and p > 0 for p in p50)
    assert result.chosen["latency_p50_ms"] == min(p50)


# -- keeping the most sensitive layer float ----------------------------------
def test_candidate_with_float_layers_carries_them_to_its_convert_stage():
    from tfcompress.tune import Candidate
    from tfcompress.tune.search import validated_stages
    kept = Candidate(mode="int8", float_layers=("fc",))
    assert kept.to_dict()["float_layers"] == ["fc"]
    assert "fc" in kept.label and kept.label != Candidate().label
    convert = validated_stages(kept.stages())[-1]["convert"]
    assert convert["float_layers"] == ["fc"]
    # candidates without float layers keep the configuration they had
    assert "float_layers" not in Candidate().to_dict()


def test_candidate_key_leaves_out_empty_float_layers(tmp_path):
    from tfcompress.recipes.keys import key
    from tfcompress.tune import Candidate
    from tfcompress.tune.evaluate import Evaluator
    from tfcompress.tune.search import validated_stages
    train = {"seed": 0}
    evaluator = Evaluator(str(tmp_path), None, "base", None, None, "data",
                          train)
    stages = validated_stages(Candidate().stages())
    assert stages[-1]["convert"]["float_layers"] == []
    before = [dict(s) for s in stages]
    before[-1] = {"convert": {k: v for k, v in stages[-1]["convert"].items()
                              if k != "float_layers"}}
    # the key a run written before float_layers existed stored
    assert evaluator.candidate_key(stages) == key(
        "tune candidate", "base", "data", before, train, None)
    kept = validated_stages(Candidate(float_layers=("fc",)).stages())
    assert evaluator.candidate_key(kept) != evaluator.candidate_key(stages)


class _Accuracies:
    """Validation accuracy by candidate configuration: int8 loses 5
    points unless ``fc`` stays float; everything else keeps accuracy."""

    def __init__(self):
        self.configs = []

    def evaluate(self, stages, info):
        cfg = info["config"]
        self.configs.append(cfg)
        lossy = cfg["mode"] == "int8" and "fc" not in cfg.get(
            "float_layers", [])
        return _measured(info, 0.85 if lossy else 0.90, len(self.configs))


def _measured(info, accuracy, n):
    return dict(info, val_accuracy=accuracy, gzip_bytes=1000,
                size_bytes=2000, seconds=0.0, reused=False, key=str(n))


def test_sensitivity_cache_of_another_version_is_computed_again(tmp_path):
    # sensitivity.json had no version: one written by a tfcompress whose
    # analysis meant something else was reused as long as the model and
    # data keys matched
    import keras
    from tfcompress.analyze.sensitivity import VERSION
    from tfcompress.recipes.keys import key
    from tfcompress.tune.search import SPARSITIES, _sensitivity
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="fc")])
    x = np.random.default_rng(0).random((32, 4), dtype=np.float32)
    val = (x, np.argmax(model(x), axis=-1))
    path = tmp_path / "sensitivity.json"
    stale = _sensitivity_fc_worst().to_dict()
    cache = {"key": key("tune sensitivity", "m", "d", SPARSITIES),
             "result": stale}
    for version in (None, VERSION - 1):
        if version is not None:
            cache["version"] = version
        path.write_text(json.dumps(cache))
        result = _sensitivity(model, "m", val, str(tmp_path), "d")
        assert list(result.pruned) == ["fc"] and result.baseline == 1.0
        assert json.loads(path.read_text())["version"] == VERSION
    # the current version is reused as stored
    path.write_text(json.dumps(dict(cache, version=VERSION)))
    result = _sensitivity(model, "m", val, str(tmp_path), "d")
    assert list(result.pruned) == ["conv", "fc", "logits"]


def _sensitivity_fc_worst():
    from tfcompress.analyze.sensitivity import SensitivityResult
    return SensitivityResult(
        metric="accuracy", baseline=0.9, sparsities=[0.5], bits=[8, 4],
        pruned={"conv": {0.5: 0.9}, "fc": {0.5: 0.9}, "logits": {0.5: 0.9}},
        quantized={"conv": {8: 0.9, 4: 0.88}, "fc": {8: 0.86, 4: 0.7},
                   "logits": {8: 0.898, 4: 0.89}},
        samples=100)


def _searched(evaluator, max_candidates):
    """The search run on ``evaluator`` with the fc-worst sensitivity."""
    from tfcompress.tune.search import _Search, _search
    s = _Search(evaluator, budget=1.0, epochs=1,
                max_candidates=max_candidates, progress=lambda line: None)
    _search(s, _sensitivity_fc_worst(),
            {"conv": 36, "fc": 3136, "logits": 160}, use_ptq=False)
    return s


def test_search_keeps_the_most_sensitive_layer_float_when_int8_misses():
    evaluator = _Accuracies()
    _searched(evaluator, 6)
    modes = [(c["mode"], c.get("float_layers", [])) for c in
             evaluator.configs]
    assert modes[:3] == [("float32", []), ("int8", []), ("int8", ["fc"])]
    # the sparsity ladder builds on the candidate within budget
    assert all(c.get("float_layers") == ["fc"] for c in evaluator.configs[3:])
    assert evaluator.configs[3:] and all(c["sparsity"] for c in
                                         evaluator.configs[3:])
    # 4-bit weights come from QAT, which float_layers does not apply to
    assert all(c["weight_bits"] == 8 for c in evaluator.configs)


def test_search_does_not_keep_layers_float_when_int8_is_within_budget():
    from tfcompress.tune.search import _Search, _search

    class Lossless(_Accuracies):
        def evaluate(self, stages, info):
            self.configs.append(info["config"])
            return _measured(info, 0.9, len(self.configs))
    evaluator = Lossless()
    s = _Search(evaluator, budget=1.0, epochs=1, max_candidates=4,
                progress=lambda line: None)
    _search(s, _sensitivity_fc_worst(), {"conv": 36, "fc": 3136,
                                         "logits": 160}, use_ptq=False)
    assert not any(c.get("float_layers") for c in evaluator.configs)


def test_latency_search_bisects_the_fraction_of_channels_removed():
    from tfcompress.tune.search import _Search, _search
    from tfcompress.tune.space import CHANNEL_SPARSITIES

    class UpToHalf(_Accuracies):
        def evaluate(self, stages, info):
            self.configs.append(info["config"])
            ok = info["config"].get("channels", 0) <= 0.5
            return _measured(info, 0.9 if ok else 0.8, len(self.configs))
    for objective, want in (("latency", [0.5, 0.75]), ("size", [])):
        evaluator = UpToHalf()
        s = _Search(evaluator, budget=1.0, epochs=1, max_candidates=8,
                    progress=lambda line: None)
        _search(s, _sensitivity_fc_worst(), {"conv": 36, "fc": 3136,
                                             "logits": 160}, use_ptq=False,
                objective=objective)
        tried = [c["channels"] for c in evaluator.configs if "channels" in c]
        assert tried == want, objective
    assert CHANNEL_SPARSITIES[1] == 0.5


def test_channel_candidate_prunes_channels_before_anything_else():
    from tfcompress.tune.search import validated_stages
    from tfcompress.tune.space import Candidate
    c = Candidate(channels=0.25, sparsity=(("fc", 0.5),), weight_bits=4)
    stages = validated_stages(c.stages(epochs=2))
    assert [next(iter(st)) for st in stages] == ["channel_prune", "prune",
                                                 "qat", "convert"]
    assert stages[0]["channel_prune"]["sparsity"] == 0.25
    assert stages[0]["channel_prune"]["epochs"] == 2
    assert c.label == "c25_p_w4_int8" and c.to_dict()["channels"] == 0.25
    assert "channels" not in Candidate().to_dict()


@pytest.mark.slow
def test_latency_tune_shrinks_a_model_with_fewer_channels(latency_tuned):
    result = latency_tuned
    by_label = {r["label"]: r for r in result.candidates}
    assert list(by_label) == ["float32", "int8", "c50_int8"]
    assert by_label["c50_int8"]["val_accuracy"] is not None, \
        by_label["c50_int8"].get("error")
    assert by_label["c50_int8"]["size_bytes"] < by_label["int8"]["size_bytes"]


def test_float_layers_candidate_converts_with_the_layer_float(tmp_path):
    import keras
    from tfcompress.inspect import inspect
    from tfcompress.recipes import stages
    from tfcompress.tune import Candidate
    from tfcompress.tune.search import validated_stages
    model = keras.models.load_model(_tiny_model(str(tmp_path / "m.keras")))
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    convert = validated_stages(Candidate(float_layers=("fc",)).stages())[-1]
    path = str(tmp_path / "kept.tflite")
    stages.run_convert(model, convert["convert"], ((x, None), (x, None)),
                       path)
    fcs = [o for o in inspect(path)["ops"] if o["op"] == "FULLY_CONNECTED"]
    assert [o["outputs"] for o in fcs] == [["FLOAT32"], ["INT8"]]


def test_chosen_recipe_carries_float_layers_and_loads(tmp_path):
    import types

    import yaml

    from tfcompress.recipes.schema import load_recipe_text
    from tfcompress.tune import Candidate
    from tfcompress.tune.report import recipe_for
    from tfcompress.tune.search import validated_stages
    chosen = {"key": "b", "stages": validated_stages(
        Candidate(float_layers=("fc",)).stages())}
    result = types.SimpleNamespace(chosen=chosen, reference={"key": "a"},
                                   fit_samples=100)
    from tfcompress.tune.search import DEFAULT_TRAIN
    setup = {"recipe": None, "name": "tiny", "train": dict(DEFAULT_TRAIN)}
    recipe = recipe_for(result, setup, "tiny.keras")
    tuned = recipe["variants"][1]["stages"]
    assert tuned[0] == {"convert": {"mode": "int8", "float_layers": ["fc"]}}
    loaded = load_recipe_text(yaml.safe_dump(recipe), "recipe.yaml")
    assert loaded["variants"][1]["stages"][0]["convert"]["float_layers"] \
        == ["fc"]


@pytest.mark.slow
def test_tune_keeps_a_badly_quantized_layer_float(tmp_path):
    """fc1 has a row of huge weights on an input that is always 0: int8
    rounds fc1's other weights to zero, keeping fc1 float restores it."""
    import keras

    from tfcompress.recipes.schema import load_recipe
    from tfcompress.tune import tune
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8,)),
        keras.layers.Dense(32, activation="relu", name="fc1"),
        keras.layers.Dense(4, name="logits")], name="outlier")
    kernel, bias = model.get_layer("fc1").get_weights()
    kernel[0, :] = 1000.0
    model.get_layer("fc1").set_weights([kernel, bias])
    x = np.random.default_rng(0).random((600, 8), dtype=np.float32)
    x[:, 0] = 0.0
    y = model.predict(x, verbose=0).argmax(1).astype("int32")
    result = tune(model, ((x[:400], y[:400]), (x[400:], y[400:])),
                  budget=1.0, out_dir=str(tmp_path / "run"),
                  val_samples=200, max_candidates=3, use_ptq=False,
                  progress=None)
    configs = [r["config"] for r in result.candidates]
    assert [c["mode"] for c in configs] == ["float32", "int8", "int8"]
    assert not result.candidates[1]["within_budget"]
    assert configs[2]["float_layers"] == ["fc1"]
    assert result.chosen["config"] == configs[2]
    recipe = load_recipe(result.recipe_path)
    convert = recipe["variants"][1]["stages"][0]["convert"]
    assert convert["float_layers"] == ["fc1"]


def test_candidate_with_eight_bit_layers_puts_them_in_its_qat_stage():
    from tfcompress.tune import Candidate
    from tfcompress.tune.search import validated_stages
    mixed = Candidate(mode="int8", weight_bits=4, eight_bit=("fc",))
    assert mixed.to_dict()["layer_bits"] == {"fc": 8}
    assert "fc" in mixed.label and mixed.label != Candidate(
        weight_bits=4).label
    qat = [s["qat"] for s in validated_stages(mixed.stages()) if "qat" in s]
    assert qat[0]["weight_bits"] == 4 and qat[0]["layer_bits"] == {"fc": 8}
    # candidates without 8-bit layers keep the configuration they had
    assert "layer_bits" not in Candidate(weight_bits=4).to_dict()


class _FourBitAccuracies(_Accuracies):
    """int8 keeps accuracy; 4-bit weights lose 5 points unless ``fc``
    keeps 8-bit weights."""

    def evaluate(self, stages, info):
        cfg = info["config"]
        self.configs.append(cfg)
        lossy = cfg["weight_bits"] == 4 and \
            cfg.get("layer_bits", {}).get("fc") != 8
        return _measured(info, 0.85 if lossy else 0.90, len(self.configs))


def test_search_keeps_the_layer_most_sensitive_to_4_bits_at_8_bits():
    evaluator = _FourBitAccuracies()
    s = _searched(evaluator, 12)
    four = [c for c in evaluator.configs if c["weight_bits"] == 4]
    assert four[0].get("layer_bits") is None     # all 4-bit first
    # then the layers whose 4 bits alone cost over half the budget
    # (fc 20 points, conv 2) kept 8-bit
    assert four[1]["layer_bits"] == {"fc": 8, "conv": 8}
    assert four[1]["sparsity"] == four[0]["sparsity"]
    assert s.within(s.results[-1])               # and the search stops


def test_stage_that_does_not_load_back_is_built_again(tmp_path):
    # Lambda(preprocess_input) in front of a base: Keras saves the
    # function by name only, so the cached stage model does not load
    import keras
    from tfcompress.tune import Candidate
    from tfcompress.tune.evaluate import Evaluator
    from tfcompress.tune.search import validated_stages
    keras.utils.set_random_seed(0)

    def preprocess_input(x):
        return x / 127.5 - 1.0

    model = keras.Sequential([
        keras.Input((4, 4, 1)), keras.layers.Lambda(preprocess_input),
        keras.layers.Flatten(), keras.layers.Dense(3, name="logits")])
    rng = np.random.default_rng(0)
    x = (rng.random((32, 4, 4, 1)) * 255).astype("float32")
    fit = (x, np.arange(32) % 3)
    evaluator = Evaluator(str(tmp_path), model, "base", fit, fit, "data",
                          {"seed": 0, "batch_size": 16, "optimizer": "adam",
                           "learning_rate": 1e-3})
    stages = validated_stages(Candidate(sparsity=(("logits", 0.5),),
                                        level=0).stages())
    first = evaluator._build(stages)
    again = evaluator._build(stages)      # the stage is cached on disk
    assert evaluator.trainings == 2
    np.testing.assert_array_equal(again.predict(x, verbose=0),
                                  first.predict(x, verbose=0))


def test_candidate_whose_stage_fails_is_a_failed_candidate(tmp_path):
    # 4-bit QAT of a model with a Lambda in front: quantize_model asks for
    # a quantize config; the candidate fails, the search goes on
    import keras
    from tfcompress.tune import Candidate
    from tfcompress.tune.evaluate import Evaluator
    from tfcompress.tune.search import validated_stages
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4, 4, 1)), keras.layers.Lambda(lambda t: t / 255),
        keras.layers.Flatten(), keras.layers.Dense(3, name="logits")])
    x = np.random.default_rng(0).random((32, 4, 4, 1)).astype("float32")
    fit = (x, np.arange(32) % 3)
    evaluator = Evaluator(str(tmp_path), model, "base", fit, fit, "data",
                          {"seed": 0, "batch_size": 16, "optimizer": "adam",
                           "learning_rate": 1e-3})
    stages = validated_stages(Candidate(weight_bits=4).stages())
    result = evaluator.evaluate(stages, {"label": "w4_int8"})
    assert result["val_accuracy"] is None
    assert "qat stage" in result["error"]
    assert evaluator.cached(stages)["error"] == result["error"]


def test_test_split_of_other_lengths_fails_before_the_search(tmp_path):
    # read only after the search: a mismatch was a raw numpy broadcasting
    # error once every candidate had been trained and converted
    import keras
    from tfcompress.tune import tune
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, name="logits")])
    x = np.random.default_rng(0).random((300, 4)).astype("float32")
    y = np.arange(300) % 3
    with pytest.raises(InputError, match="x_test has 50 samples and "
                                         "y_test 40"):
        tune(model, ((x, y), (x[:50], y[:40])), out_dir=str(tmp_path),
             max_candidates=2, use_ptq=False, progress=None)
    assert not os.path.exists(tmp_path / "tune" / "candidates")


def test_sparsity_levels_count_every_prunable_weight_of_a_layer():
    # an LSTM's recurrent kernel is pruned with its input kernel: the
    # levels are ordered by the weights they zero, both kernels counted
    import keras
    from tfcompress.tune.search import _kernel_sizes
    model = keras.Sequential([keras.Input((5, 3)),
                              keras.layers.LSTM(8, name="lstm"),
                              keras.layers.Dense(4, name="head")])
    assert _kernel_sizes(model) == {"lstm": 3 * 32 + 8 * 32,
                                    "head": 8 * 4}


def test_one_unit_binary_model_is_an_input_error(tmp_path):
    # top-1 over a single column is class 0 for every sample: each
    # candidate scored the share of class 0, the most compressed won
    import keras
    from tfcompress.tune import tune
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(1, name="logit")])
    x = np.random.default_rng(0).random((300, 4)).astype("float32")
    y = np.arange(300) % 2
    with pytest.raises(InputError, match="gives 1 output.*2 units"):
        tune(model, ((x, y), (x[:50], y[:50])), out_dir=str(tmp_path),
             max_candidates=2, use_ptq=False, progress=None)


def test_candidate_stages_train_without_keras_epoch_lines(tmp_path, capsys):
    # tune reports one line per candidate; Keras's per-epoch lines of
    # every fine-tuning stage buried it
    import keras
    from tfcompress.tune import Candidate
    from tfcompress.tune.evaluate import Evaluator
    from tfcompress.tune.search import validated_stages
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((4, 4, 1)), keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu", name="fc"),
        keras.layers.Dense(3, name="logits")])
    x = np.random.default_rng(0).random((32, 4, 4, 1)).astype("float32")
    fit = (x, np.arange(32) % 3)
    evaluator = Evaluator(str(tmp_path), model, "base", fit, fit, "data",
                          {"seed": 0, "batch_size": 16, "optimizer": "adam",
                           "learning_rate": 1e-3})
    stages = validated_stages(Candidate(sparsity=(("fc", 0.5),), level=0,
                                        weight_bits=4).stages())
    capsys.readouterr()
    evaluator._build(stages)
    assert evaluator.trainings == 2         # pruning, then QAT
    out = capsys.readouterr().out
    assert "/step" not in out, out     # Keras: "2/2 - 1s - 5ms/step - ..."
