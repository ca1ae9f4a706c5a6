"""Every kind of model tfcompress saves loads back: through the CLI, through
``tfcompress.load_model`` and through plain ``keras.saving.load_model``
(safe mode on) once ``tfcompress`` is imported."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV["PYTHONPATH"] = os.pathsep.join(
    [ROOT] + [p for p in ENV.get("PYTHONPATH", "").split(os.pathsep) if p])

KINDS = ["pruned_wrapped", "pruned_stripped", "qat_default", "qat_n_bit",
         "qat_prune_preserving", "qat_cluster_preserving", "cluster_wrapped",
         "cluster_stripped", "shrunk", "distilled_student"]


def _tiny():
    import keras
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv2"),
        keras.layers.Flatten(), keras.layers.Dense(3, name="logits")])


def _fit(model, x, y, callbacks=()):
    import keras
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0,
              callbacks=list(callbacks))
    return model


def _build(kind, x, y):
    from tfcompress import cluster, prune, quantize
    from tfcompress.distill import Distiller
    if kind.startswith("pruned") or kind == "qat_prune_preserving":
        pruned = _fit(prune.prune_low_magnitude(
            _tiny(), prune.ConstantSparsity(0.5, 0, frequency=1)), x, y,
            [prune.UpdatePruningStep()])
        if kind == "pruned_wrapped":
            return pruned
        stripped = prune.strip_pruning(pruned)
        if kind == "pruned_stripped":
            return stripped
        return _fit(quantize.quantize_model(
            stripped, quantize.PrunePreservingScheme()), x, y)
    if kind.startswith("cluster") or kind == "qat_cluster_preserving":
        clustered = _fit(cluster.cluster_weights(_tiny(), 4), x, y)
        if kind == "cluster_wrapped":
            return clustered
        stripped = cluster.strip_clustering(clustered)
        if kind == "cluster_stripped":
            return stripped
        return _fit(quantize.quantize_model(
            stripped, quantize.ClusterPreservingScheme()), x, y)
    if kind == "qat_default":
        return _fit(quantize.quantize_model(_tiny()), x, y)
    if kind == "qat_n_bit":
        return _fit(quantize.quantize_model(
            _tiny(), quantize.NBitScheme(weight_bits=4, activation_bits=8)),
            x, y)
    if kind == "shrunk":
        model = _fit(_tiny(), x, y, [prune.ChannelPruning(
            prune.ConstantSparsity(0.5, 0, frequency=1))])
        return prune.shrink(model)
    if kind == "distilled_student":
        teacher = _fit(_tiny(), x, y)
        distiller = Distiller(_tiny(), teacher, temperature=2.0)
        distiller.compile("adam")
        distiller.fit(x, y, epochs=1, batch_size=8, verbose=0)
        return distiller       # .save writes the student
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """kind -> path of a saved tiny model of that kind; also writes the
    calibration data (data.npz) and each model's outputs (expected.json)."""
    import keras
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("saved_models")
    rng = np.random.default_rng(0)
    x = rng.random((16, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 16).astype("int32")
    np.savez(d / "data.npz", x=x)
    paths, expected = {}, {}
    for kind in KINDS:
        model = _build(kind, x, y)
        path = str(d / f"{kind}.keras")
        model.save(path)
        paths[kind] = path
        expected[kind] = np.asarray(model.predict(x[:4], verbose=0)).tolist()
    (d / "expected.json").write_text(json.dumps(expected))
    return {"dir": d, "paths": paths, "x": x, "expected": expected}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=ENV,
                          timeout=300)


@pytest.mark.parametrize("kind", KINDS)
def test_convert_cli_loads(saved, kind, tmp_path):
    out = tmp_path / f"{kind}.tflite"
    r = _cli("convert", saved["paths"][kind], "--mode", "int8",
             "--data", str(saved["dir"] / "data.npz"), "--samples", "8",
             "--nostrict", "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.stat().st_size > 0


@pytest.mark.parametrize("kind", KINDS)
def test_tfcompress_load_model_restores_outputs(saved, kind):
    import tfcompress
    model = tfcompress.load_model(saved["paths"][kind])
    got = model.predict(saved["x"][:4], verbose=0)
    np.testing.assert_allclose(got, saved["expected"][kind], atol=1e-5)


LOAD_ALL = r'''
import json, sys
import numpy as np
{imports}
d = sys.argv[1]
expected = json.load(open(d + "/expected.json"))
x = np.load(d + "/data.npz")["x"][:4]
for kind, want in expected.items():
    model = keras.saving.load_model(d + "/" + kind + ".keras")
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=1e-5)
print("loaded", len(expected))
'''


@pytest.mark.parametrize("imports", [
    "import keras\nimport tfcompress",
    "import tfcompress\nimport keras",
    "import tfcompress\nimport tensorflow\nimport keras",
    "from tfcompress.prune import strip_pruning\nimport keras",
    # a module that imports keras before its own names exist: registration
    # waits until it has finished
    "import warnings\nwarnings.simplefilter('error')\n"
    "from tfcompress.utils.flatten import flatten_nested\nimport keras",
], ids=["keras_first", "tfcompress_first", "tensorflow_then_keras",
        "prune_first", "utils_module_first"])
def test_plain_keras_load_model_after_import_tfcompress(saved, imports):
    r = subprocess.run(
        [sys.executable, "-c", LOAD_ALL.format(imports=imports),
         str(saved["dir"])], capture_output=True, text=True, env=ENV,
        timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"loaded {len(KINDS)}" in r.stdout


def test_import_tfcompress_still_imports_no_tensorflow():
    r = subprocess.run(
        [sys.executable, "-c", "import sys, tfcompress; "
         "print('tensorflow' in sys.modules, 'keras' in sys.modules)"],
        capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "False"]


def test_load_model_missing_file_is_input_error(tmp_path):
    import tfcompress
    from tfcompress.errors import InputError
    with pytest.raises(InputError, match="does not exist"):
        tfcompress.load_model(tmp_path / "nope.keras")


def test_load_model_not_a_keras_file_is_input_error(tmp_path):
    import tfcompress
    from tfcompress.errors import InputError
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip")
    # Keras itself says "File not found" for a file that exists
    with pytest.raises(InputError, match="bad.keras is not a .keras file.*"
                                         "zip archive.*model.save"):
        tfcompress.load_model(bad)


def test_a_python_lambda_names_the_fix_not_a_cut_sentence(tmp_path):
    import keras
    import tfcompress
    from tfcompress.errors import InputError
    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Lambda(lambda t: -t)(inp)).save(
        tmp_path / "lam.keras")
    with pytest.raises(InputError, match=r"holds a Lambda layer.*"
                       r"replace the Lambda.*safe_mode=False\) if you trust "
                       r"the file$"):
        tfcompress.load_model(tmp_path / "lam.keras")
    assert tfcompress.load_model(tmp_path / "lam.keras",
                                 safe_mode=False).output_shape == (None, 4)


def test_saving_docstring_examples_run():
    import doctest

    import tfcompress.saving
    result = doctest.testmod(tfcompress.saving)
    assert result.attempted >= 5 and result.failed == 0
