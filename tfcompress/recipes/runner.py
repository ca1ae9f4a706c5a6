"""Runs a recipe: baseline training, then each variant's stages, with
every finished stage cached so an interrupted run resumes.

Artifacts go to ``runs/<recipe name>/`` (or ``--out``): ``baseline.keras``,
``stages/<stage>_<hash>.keras`` (trained models, shared by variants with
the same stages before them), ``variants/<variant>/<n>_<stage>.{tflite,json}``, ``recipe.json``
(the resolved recipe), ``environment.json``, ``report.md``,
``report.json`` and ``pareto.png``. Each artifact has a ``.meta.json``
holding the hash of everything it depends on (its recipe section and its
input's hash): a stage whose hash matches is reused, a changed section
invalidates it and what follows.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipes import stages
from tfcompress.recipes.schema import load_recipe
from tfcompress.utils import atomic_path, atomic_write_text


def _hash(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _cached(path, digest):
    meta = path + ".meta.json"
    if not (os.path.exists(path) and os.path.exists(meta)):
        return False
    try:
        with open(meta) as f:
            return json.load(f).get("hash") == digest
    except (OSError, ValueError):
        return False


def _mark(path, digest, extra=None):
    atomic_write_text(path + ".meta.json", json.dumps(
        {"hash": digest, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
         **(extra or {})}, indent=2))


def _save_model(model, path):
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _load_model(path):
    from tfcompress.saving import load_model
    return load_model(path, compile=False)


def load_data(name, train_samples=None, test_samples=None):
    """Float ``(x_train, y_train), (x_test, y_test)`` for a recipe."""
    from tfcompress import data
    loaders = {"fashion_mnist": data.load_fashion_mnist,
               "mnist": data.load_mnist}
    if name in loaders:
        (xt, yt), (xv, yv) = loaders[name]()
    elif str(name).endswith(".npz"):
        if not os.path.isfile(name):
            raise InputError(f"data file {name} does not exist")
        (xt, yt), (xv, yv) = data.load_npz(name)
    else:
        raise InputError(f"unknown data {name!r}; use fashion_mnist, mnist "
                         "or a path to an .npz file")
    xt, xv = data.prepare_images(xt), data.prepare_images(xv)
    if train_samples:
        xt, yt = xt[:train_samples], yt[:train_samples]
    if test_samples:
        xv, yv = xv[:test_samples], yv[:test_samples]
    return (xt, yt.astype("int32")), (xv, yv.astype("int32"))


def _baseline_model(recipe):
    from tfcompress.models import MODELS, get_model
    name = recipe["model"]
    if name in MODELS:
        return get_model(name)
    if os.path.exists(name):
        return _load_model(name)
    raise InputError(f"model {name!r} is neither a reference model "
                     f"({', '.join(sorted(MODELS))}) nor an existing "
                     ".keras file")


def _environment():
    import keras
    import tensorflow as tf
    return {"python": platform.python_version(),
            "machine": platform.machine(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "cores": os.cpu_count()}


def run_recipe(path, out_dir=None, overrides=(), only=None):
    """Runs the recipe at ``path``; returns a dict with the run's results.

    >>> result = run_recipe("configs/fashion_mnist_cnn.yaml")  # doctest: +SKIP
    >>> result["report_md"]                                    # doctest: +SKIP
    'runs/fashion_mnist_cnn/report.md'
    """
    recipe = load_recipe(path, overrides)
    variants = recipe["variants"]
    if only is not None:
        variants = [v for v in variants if v["name"] == only]
        if not variants:
            raise InputError(f"--only {only!r}: no such variant; variants "
                             "are " + ", ".join(
                                 v["name"] for v in recipe["variants"]))
    run_dir = out_dir or os.path.join("runs", recipe["name"])
    from tfcompress import distribute
    strategy = distribute.get_strategy(recipe["train"]["strategy"])
    if not distribute.is_chief(strategy):
        # every worker runs the same stages; only the chief's folder is
        # the result
        task_type, task_id = distribute.task(strategy)
        run_dir = os.path.join(run_dir, ".workers", f"{task_type}-{task_id}")
    os.makedirs(run_dir, exist_ok=True)
    atomic_write_text(os.path.join(run_dir, "recipe.json"),
                      json.dumps(recipe, indent=2))
    atomic_write_text(os.path.join(run_dir, "environment.json"),
                      json.dumps(_environment(), indent=2))
    import keras
    d = recipe["data"]
    data = load_data(d["name"], d["train_samples"], d["test_samples"])
    (xt, yt), (xv, yv) = data
    eval_npz = os.path.join(run_dir, "eval.npz")
    if not os.path.exists(eval_npz):
        with atomic_path(eval_npz, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, x=xv, y=yv)
    train = recipe["train"]
    base_path = os.path.join(run_dir, "baseline.keras")
    base_hash = _hash(recipe["model"], d, train)
    if _cached(base_path, base_hash):
        print(f"[baseline] reusing {base_path}")
        with strategy.scope():
            baseline = _load_model(base_path)
    else:
        print(f"[baseline] training {recipe['model']} for "
              f"{train['epochs']} epoch(s) on {len(xt)} samples"
              + (f" ({train['strategy']}, {strategy.num_replicas_in_sync} "
                 "replicas)" if train["strategy"] != "default" else ""))
        keras.utils.set_random_seed(train["seed"])
        with strategy.scope():
            baseline = _baseline_model(recipe)
            stages._compile(baseline, train["optimizer"],
                            train["learning_rate"])
        stages._fit(baseline, data, train["epochs"], train["batch_size"])
        _save_model(baseline, base_path)
        _mark(base_path, base_hash)
    results = {"baseline": {"path": base_path,
                            "keras_accuracy": stages.evaluate(baseline,
                                                              data),
                            "size_bytes": os.path.getsize(base_path)}}
    for variant in variants:
        results[variant["name"]] = _run_variant(
            variant, baseline, base_path, base_hash, data, train, run_dir,
            eval_npz, strategy)
    from tfcompress.recipes.report import write_report
    paths = write_report(run_dir, recipe, results)
    return {"run_dir": run_dir, "results": results, **paths}


def _run_variant(variant, baseline, base_path, base_hash, data, train,
                 run_dir, eval_npz, strategy):
    import keras
    name = variant["name"]
    vdir = os.path.join(run_dir, "variants", name)
    os.makedirs(vdir, exist_ok=True)
    model, model_path, digest = baseline, base_path, base_hash
    out = {"stages": [], "keras_accuracy": None}
    tflite_path = None
    for i, stage in enumerate(variant["stages"]):
        kind, params = next(iter(stage.items()))
        digest = _hash(digest, kind, params)
        label = f"[{name}] {i}_{kind}"
        if kind in ("prune", "cluster", "qat"):
            # content-addressed: variants sharing a prefix share the model
            path = os.path.join(run_dir, "stages", f"{kind}_{digest}.keras")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if _cached(path, digest):
                print(f"{label}: reusing {path}")
                with strategy.scope():
                    model = _load_model(path)
            else:
                print(f"{label}: running")
                keras.utils.set_random_seed(train["seed"] + i)
                fn = {"prune": stages.run_prune,
                      "cluster": stages.run_cluster,
                      "qat": stages.run_qat}[kind]
                with strategy.scope():
                    model = fn(model, params, data, train)
                _save_model(model, path)
                _mark(path, digest)
            model_path = path
        elif kind == "convert":
            path = os.path.join(vdir, f"{i}_convert.tflite")
            rpath = path + ".report.json"
            if _cached(path, digest) and os.path.exists(rpath):
                print(f"{label}: reusing {path}")
            else:
                print(f"{label}: {params['mode']}")
                report = stages.run_convert(model, params, data, path)
                atomic_write_text(rpath, json.dumps(report, indent=2,
                                                    default=str))
                _mark(path, digest)
            with open(rpath) as f:
                out["conversion"] = json.load(f)
            tflite_path = path
        elif kind == "bench":
            path = os.path.join(vdir, f"{i}_bench.json")
            if _cached(path, digest):
                print(f"{label}: reusing {path}")
            else:
                print(f"{label}: benchmarking {os.path.basename(tflite_path)}")
                result = stages.run_bench(tflite_path, params, eval_npz)
                atomic_write_text(path, json.dumps(result, indent=2))
                _mark(path, digest)
            with open(path) as f:
                out["bench"] = json.load(f)
        out["stages"].append(kind)
    out["keras_model"] = model_path
    out["keras_accuracy"] = stages.evaluate(model, data)
    out["tflite"] = tflite_path
    return out
