import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfcompress.errors import InputError
from tfcompress.recipes import RecipeError, load_recipe
from tfcompress.recipes.schema import load_recipe_text

MALFORMED = [
    ("trian:\n  epochs: 1\n", r"x.yaml:1: unknown key 'trian'; did you mean 'train'"),
    ("train:\n  epochs: two\n", r"x.yaml:2: train.epochs: expected int, found str"),
    ("train:\n  epochs: -1\n", r"x.yaml:2: train.epochs: expected a value in \[0, 1000\]"),
    ("train:\n  learning_rate: fast\n", r"train.learning_rate: expected float"),
    ("train:\n  optimizer: adamm\n", r"train.optimizer: expected one of .*did you mean 'adam'"),
    ("train:\n  strategy: multiworker\n", r"x.yaml:2: train.strategy: expected one of default, mirrored, multi_worker.*did you mean 'multi_worker'"),
    ("train:\n  epochs: 1\n  batchsize: 3\n", r"x.yaml:3: unknown key 'train.batchsize'; did you mean 'batch_size'"),
    ("data:\n  name: fashion_mnist\n  train_sample: 5\n", r"x.yaml:3: unknown key 'data.train_sample'"),
    ("model: [1, 2]\n", r"x.yaml:1: model: expected str, found list"),
    ("variants: 3\n", r"variants: expected a non-empty list"),
    ("variants:\n  - stages: [convert]\n", r"variants\[0\].name: expected a name"),
    ("variants:\n  - name: a\n    stages: []\n", r"variants\[0\].stages: expected a non-empty list"),
    ("variants:\n  - name: a\n    stages:\n      - convrt: {}\n", r"x.yaml:4: variants\[0\].stages\[0\]: unknown stage 'convrt'.*did you mean 'convert'"),
    ("variants:\n  - name: a\n    stages:\n      - convert: {mode: int9}\n", r"convert.mode: expected one of .*found 'int9'"),
    ("variants:\n  - name: a\n    stages:\n      - prune: {final_sparsity: 1.5}\n", r"prune.final_sparsity: expected a value in \[0.0, 0.99\]"),
    ("variants:\n  - name: a\n    stages:\n      - bench: {}\n", r"bench needs a convert stage before it"),
    ("variants:\n  - name: a\n    stages: [convert]\n  - name: a\n    stages: [convert]\n", r"duplicate variant name 'a'"),
    ("variants:\n  - name: a\n    stagez: [convert]\n", r"unknown key variants\[0\].'stagez'|unknown key variants\[0\].stagez"),
    ("variants:\n  - name: a\n    stages:\n      - qat: {scheme: int4}\n", r"qat.scheme: expected one of"),
    ("train: [1, 2\n", r"x.yaml:\d+: not valid YAML"),
    ("- just\n- a list\n", r"x.yaml:1: recipe: expected a mapping"),
    ("variants:\n  - name: a\n    stages:\n      - convert: {strict: maybe}\n", r"convert.strict: expected bool"),
]


@pytest.mark.parametrize("text,pattern", MALFORMED)
def test_malformed_recipes_name_file_line_field(text, pattern):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe_text(text, "x.yaml")


def test_defaults_and_overrides():
    r = load_recipe_text("model: lenet_300_100\n", "few.yaml",
                         overrides=["train.epochs=3", "data.name=mnist"])
    assert r["name"] == "few" and r["train"]["epochs"] == 3
    assert r["data"]["name"] == "mnist"
    assert r["variants"][0]["stages"][0]["convert"]["mode"] == "float32"
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe_text("", "x.yaml", overrides=["nonsense"])
    with pytest.raises(RecipeError, match="did you mean 'epochs'"):
        load_recipe_text("", "x.yaml", overrides=["train.epoch=3"])


@pytest.mark.parametrize("name", sorted(os.listdir(
    os.path.join(os.path.dirname(__file__), "..", "configs"))))
def test_shipped_recipes_are_valid(name):
    r = load_recipe(os.path.join(os.path.dirname(__file__), "..", "configs",
                                 name))
    assert r["variants"]


def _tiny(tmp_path, variants):
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=rng.integers(0, 255, (96, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 96),
             x_test=rng.integers(0, 255, (40, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 40))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"model: lenet_300_100\ndata: {npz}\ntrain:\n"
                      f"  epochs: 1\n  batch_size: 32\nvariants:\n{variants}")
    return recipe


def _cli(*args, **kw):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=env,
                          timeout=600, **kw)


VARIANTS = """  - name: float
    stages:
      - convert: {mode: float32}
      - bench: {runs: 3}
  - name: pruned_qat
    stages:
      - prune: {final_sparsity: 0.5, epochs: 1, frequency: 1}
      - qat: {scheme: prune_preserving, epochs: 1}
      - convert: {mode: int8, samples: 16}
      - bench: {runs: 3}
"""


@pytest.mark.slow
def test_run_end_to_end_then_reuse(tmp_path):
    recipe = _tiny(tmp_path, VARIANTS)
    out = tmp_path / "run"
    r = _cli("run", str(recipe), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    rows = {v["variant"]: v for v in report["variants"]}
    assert rows["pruned_qat"]["float_ops"] == 0
    assert rows["pruned_qat"]["sparsity"] > 0.4
    assert rows["float"]["tflite_accuracy"] is not None
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "| pruned_qat |" in (out / "report.md").read_text()
    # second run reuses every stage
    r = _cli("run", str(recipe), "--out", str(out))
    assert r.returncode == 0
    assert "running" not in r.stdout and "reusing" in r.stdout
    # a changed section re-runs what depends on it, and only that
    r = _cli("run", str(recipe), "--out", str(out), "--set",
             "variants=" + json.dumps([
                 {"name": "float", "stages": [{"convert": {"mode": "float16"}},
                                              {"bench": {"runs": 3}}]}]))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[baseline] reusing" in r.stdout
    assert "float16" in r.stdout
    r = _cli("report", str(out))
    assert r.returncode == 0 and "| float |" in r.stdout


def _sha256(path):
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_files(out):
    return sorted(os.path.relpath(os.path.join(folder, f), out)
                  for folder, _, files in os.walk(out) for f in files)


@pytest.mark.slow
def test_killed_run_resumes_from_finished_stage(tmp_path):
    recipe = _tiny(tmp_path, VARIANTS)
    out = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "tfcompress", "run",
                          str(recipe), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    seen = ""
    deadline = time.time() + 300
    while time.time() < deadline:
        line = p.stdout.readline()
        seen += line
        # the prune stage is saved and marked before qat starts
        if "1_qat: running" in line or not line:
            break
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert "1_qat: running" in seen, seen[-2000:]
    pruned = list((out / "stages").glob("prune_*.keras"))
    assert len(pruned) == 1 and \
        (out / "stages" / (pruned[0].name + ".meta.json")).exists()
    stamp = (os.stat(pruned[0]).st_mtime_ns, _sha256(pruned[0]))
    assert not (out / "report.md").exists()
    r = _cli("run", str(recipe), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[baseline] reusing" in r.stdout
    assert "0_prune: reusing" in r.stdout and "1_qat: running" in r.stdout
    assert (os.stat(pruned[0]).st_mtime_ns, _sha256(pruned[0])) == stamp
    files = _all_files(out)
    assert not [f for f in files if os.path.basename(f).startswith(".")]
    prune_name = pruned[0].name
    qat = [f for f in files if f.startswith("stages/qat_")
           and f.endswith(".keras")]
    assert len(qat) == 1
    expected = ["baseline.keras", "eval.npz", "float32.tflite",
                "stages/" + prune_name, qat[0],
                "variants/float/0_convert.tflite",
                "variants/float/1_bench.json",
                "variants/pruned_qat/2_convert.tflite",
                "variants/pruned_qat/3_bench.json"]
    expected += [f + ".meta.json" for f in expected]
    expected += ["variants/float/0_convert.tflite.report.json",
                 "variants/pruned_qat/2_convert.tflite.report.json",
                 "environment.json", "input_hashes.json", "pareto.png",
                 "recipe.json", "report.json", "report.md"]
    assert files == sorted(expected)
    report = json.loads((out / "report.json").read_text())
    assert {v["variant"] for v in report["variants"]} >= {"float",
                                                          "pruned_qat"}


def test_cli_run_errors(tmp_path):
    r = _cli("run", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: seed_cnn\ntrian: {}\n")
    r = _cli("run", str(bad))
    assert r.returncode == 2
    assert f"{bad}:2: unknown key 'trian'" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("run", str(_tiny(tmp_path, VARIANTS)), "--only", "nope")
    assert r.returncode == 2 and "no such variant" in r.stderr
    r = _cli("report", str(tmp_path))
    assert r.returncode == 2 and "no report.md" in r.stderr


def test_cluster_stage_then_cluster_preserving_qat(tmp_path):
    from tfcompress.inspect import inspect
    from tfcompress.recipes import run_recipe
    recipe = _tiny(tmp_path, """  - name: pcqat
    stages:
      - prune: {final_sparsity: 0.5, epochs: 1, frequency: 1}
      - cluster: {number_of_clusters: 8, epochs: 1}
      - qat: {scheme: cluster_preserving, epochs: 1}
      - convert: {mode: int8, samples: 16}
  - name: unclustered
    stages:
      - qat: {scheme: cluster_preserving, epochs: 1}
""")
    with pytest.raises(InputError, match="qat stage: .*clustered model"):
        run_recipe(str(recipe), out_dir=str(tmp_path / "run"))
    result = run_recipe(str(recipe), out_dir=str(tmp_path / "run"),
                        only="pcqat")
    rep = inspect(result["results"]["pcqat"]["tflite"])
    kernels = [w for w in rep["weights"]
               if w["dtype"] == "INT8" and w["params"] >= 1000]
    # eight clusters, the zeros' among them (as in tfmot)
    assert kernels and all(w["distinct_values"] <= 8 for w in kernels)
    assert all(w["sparsity"] >= 0.45 for w in kernels)


def test_channel_prune_stage_writes_the_smaller_model(tmp_path):
    # recipes had no way to remove whole channels (ChannelPruning + shrink)
    from tfcompress.inspect import inspect
    from tfcompress.recipes import run_recipe
    recipe = _tiny(tmp_path, """  - name: channels
    stages:
      - channel_prune: {sparsity: 0.5, epochs: 1}
      - qat: {epochs: 1}
      - convert: {mode: int8, samples: 16}
""")
    result = run_recipe(str(recipe), out_dir=str(tmp_path / "run"))
    row = result["results"]["channels"]
    kernels = sorted(tuple(w["shape"]) for w in inspect(row["tflite"])[
        "weights"] if w["dtype"] == "INT8")
    # LeNet-300-100: 784-300-100-10; half of each hidden layer's units go
    assert kernels == [(10, 50), (50, 150), (150, 784)]
    assert row["total_epochs"] == 3


def test_channel_prune_after_qat_is_refused():
    with pytest.raises(RecipeError, match=r"a channel_prune stage takes the "
                       "float model, not a qat stage's"):
        load_recipe_text("variants:\n  - name: a\n    stages:\n"
                         "      - qat: {}\n      - channel_prune: {}\n",
                         "x.yaml")


BAD_NAMES = ["/tmp/evil", "../evil", "a/../../evil", "..", ".", "a/..",
             "a\\\\..\\\\..\\\\evil", "C:\\\\evil", "\\\\\\\\server\\\\share",
             "", "a//b", "a\\x00b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_recipe_names_that_escape_runs_are_refused(name):
    with pytest.raises(RecipeError, match=r"x.yaml:1: name: .*runs/"):
        load_recipe_text(f'name: "{name}"\n', "x.yaml")


def test_recipe_name_derived_from_file_is_checked_too():
    with pytest.raises(RecipeError, match=r"name: .*runs/"):
        load_recipe_text("", "/some/where/..\\evil.yaml")
    assert load_recipe_text("", "/r/my run.yaml")["name"] == "my run"
    assert load_recipe_text("name: team/exp-1.2\n", "x.yaml")["name"] == \
        "team/exp-1.2"


FLOAT_ONLY = """  - name: float
    stages:
      - convert: {mode: float32}
"""


def _keras_file(path, seed):
    import keras
    keras.utils.set_random_seed(seed)
    keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(path)


def _run(recipe, out, capsys, overrides=()):
    from tfcompress.recipes import run_recipe
    capsys.readouterr()
    run_recipe(str(recipe), out_dir=str(out), overrides=overrides)
    return capsys.readouterr().out


def _artifacts(out):
    """mtime_ns of every cached artifact (and its .meta.json) under out."""
    rewritten = {"recipe.json", "environment.json", "report.md",
                 "report.json", "pareto.png", "input_hashes.json"}
    found = {}
    for folder, _, files in os.walk(out):
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), out)
            if rel not in rewritten:
                found[rel] = os.stat(os.path.join(folder, f)).st_mtime_ns
    return found


def _small_recipe(tmp_path, variants):
    """_tiny with a small Flatten+Dense .keras file as the model."""
    model = tmp_path / "small.keras"
    _keras_file(model, 0)
    recipe = _tiny(tmp_path, variants)
    recipe.write_text(recipe.read_text().replace(
        "model: lenet_300_100", f"model: {model}"))
    return recipe, model


def test_unchanged_rerun_reuses_every_artifact(tmp_path, capsys):
    recipe, _ = _small_recipe(tmp_path, """  - name: pruned
    stages:
      - prune: {final_sparsity: 0.5, epochs: 1, frequency: 1}
      - convert: {mode: float32}
""")
    out = tmp_path / "run"
    first = _run(recipe, out, capsys)
    assert "[baseline] training" in first and "0_prune: running" in first
    before = _artifacts(out)
    assert {"eval.npz", "baseline.keras", "variants/pruned/1_convert.tflite"
            } <= set(before)
    assert any(f.startswith("stages/prune_") for f in before)
    second = _run(recipe, out, capsys)
    assert "training" not in second and "running" not in second
    assert "[baseline] reusing" in second and "0_prune: reusing" in second
    assert "1_convert: reusing" in second
    assert _artifacts(out) == before


def test_changed_keras_file_under_same_path_reruns_baseline(tmp_path,
                                                            capsys):
    recipe, model = _small_recipe(tmp_path, FLOAT_ONLY)
    out = tmp_path / "run"
    assert "[baseline] training" in _run(recipe, out, capsys)
    assert "[baseline] reusing" in _run(recipe, out, capsys)
    stamp = os.stat(model)
    _keras_file(model, 1)
    # even with the old modification time put back, the content decides
    os.utime(model, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    third = _run(recipe, out, capsys)
    assert "[baseline] training" in third
    assert "0_convert: float32" in third      # converted again, not reused
    assert "[baseline] reusing" in _run(recipe, out, capsys)


def _write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())


def _idx_dataset(folder, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    for split, n in (("train", 64), ("t10k", 30)):
        _write_idx(folder / f"{split}-images-idx3-ubyte",
                   rng.integers(0, 255, (n, 28, 28)))
        _write_idx(folder / f"{split}-labels-idx1-ubyte",
                   rng.integers(0, 10, n))


def test_changed_data_rebuilds_eval_npz_and_baseline(tmp_path, capsys,
                                                     monkeypatch):
    ds = tmp_path / "datasets"
    _idx_dataset(ds, 0)
    monkeypatch.setenv("TFCOMPRESS_DATA", str(ds))
    model = tmp_path / "small.keras"
    _keras_file(model, 0)
    recipe = tmp_path / "idx.yaml"
    recipe.write_text(f"model: {model}\ndata: {{name: fashion_mnist}}\n"
                      "train: {epochs: 1, batch_size: 32}\n"
                      f"variants:\n{FLOAT_ONLY}")
    out = tmp_path / "run"
    _run(recipe, out, capsys)
    eval_npz = out / "eval.npz"
    first = os.stat(eval_npz).st_mtime_ns
    assert "[data] reusing" in _run(recipe, out, capsys)
    assert os.stat(eval_npz).st_mtime_ns == first
    # new test labels under the same file name
    labels = np.random.default_rng(1).integers(0, 10, 30)
    _write_idx(ds / "t10k-labels-idx1-ubyte", labels)
    text = _run(recipe, out, capsys)
    assert "[data] writing" in text and "[baseline] reusing" in text
    assert "0_convert: float32" in text    # its accuracy check uses them
    assert (np.load(eval_npz)["y"] == labels).all()
    # new training images: the baseline retrains, eval.npz (test split)
    # stays
    _idx_dataset(ds / "other", 2)
    os.replace(ds / "other" / "train-images-idx3-ubyte",
               ds / "train-images-idx3-ubyte")
    rebuilt = os.stat(eval_npz).st_mtime_ns
    text = _run(recipe, out, capsys)
    assert "[baseline] training" in text and "[data] reusing" in text
    assert os.stat(eval_npz).st_mtime_ns == rebuilt
    # sample counts are part of the keys
    text = _run(recipe, out, capsys, ["data.train_samples=32"])
    assert "[baseline] training" in text and "[data] reusing" in text
    text = _run(recipe, out, capsys, ["data.train_samples=32",
                                      "data.test_samples=10"])
    assert "[data] writing" in text and len(np.load(eval_npz)["y"]) == 10
    assert "[baseline] reusing" in text and "0_convert: float32" in text


def test_bad_bench_host_is_refused_before_training(tmp_path):
    from tfcompress.recipes import run_recipe
    recipe = _tiny(tmp_path, """  - name: remote
    stages:
      - convert: {mode: float32}
      - bench: {host: "-oProxyCommand=touch ran"}
""")
    out = tmp_path / "run"
    with pytest.raises(InputError, match=r"'remote' stage 1 bench: host "
                       r"'-oProxyCommand=touch ran': starts with '-'"):
        run_recipe(str(recipe), out_dir=str(out))
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "below_file"])
def test_output_folder_that_is_a_file_is_an_input_error(tmp_path, where):
    from tfcompress.recipes import run_recipe
    recipe = _tiny(tmp_path, """  - name: float
    stages:
      - convert: {mode: float32}
""")
    taken = tmp_path / "taken.txt"
    taken.write_text("mine\n")
    out = taken if where == "file" else taken / "run"
    with pytest.raises(InputError, match=r"output folder .*taken\.txt.* is "
                       r"a file; give --out a folder path"):
        run_recipe(str(recipe), out_dir=str(out))
    assert taken.read_text() == "mine\n"
