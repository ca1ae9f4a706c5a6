"""Runs a recipe: loads data, trains the baseline model and saves it."""

from __future__ import annotations

import json
import os
import time

import yaml

from tfcompress.errors import InputError
from tfcompress.utils import atomic_path, atomic_write_text

DEFAULTS = {
    "name": None,
    "model": "seed_cnn",
    "data": "fashion_mnist",
    "train": {
        "epochs": 1,
        "batch_size": 128,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "seed": 0,
        "train_samples": None,
        "test_samples": None,
    },
}


def _merge(defaults, given, path, source):
    if not isinstance(given, dict):
        raise InputError(f"{source}: {path or 'recipe'} must be a mapping, "
                         f"got {type(given).__name__}")
    out = {}
    for key, value in given.items():
        if key not in defaults:
            import difflib
            close = difflib.get_close_matches(str(key), defaults, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"{source}: unknown key "
                             f"{(path + '.' if path else '') + str(key)!r}"
                             f"{hint}")
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(default, dict):
            value = _merge(default, given.get(key, {}) or {},
                           (path + "." if path else "") + key, source)
        out[key] = value
    return out


def _apply_override(recipe, override):
    if "=" not in override:
        raise InputError(f"--set {override!r}: expected key.path=value")
    key, raw = override.split("=", 1)
    value = yaml.safe_load(raw)
    node = recipe
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(f"--set {override!r}: {part} is not a mapping")
    node[parts[-1]] = value


def load_recipe(path, overrides=()):
    """Loads, overrides and validates a recipe file; returns a dict."""
    if not os.path.isfile(path):
        raise InputError(f"recipe {path} does not exist; see configs/ for "
                         "examples")
    try:
        with open(path, encoding="utf-8") as f:
            given = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML: "
                         f"{str(e).splitlines()[0]}") from None
    for override in overrides:
        _apply_override(given, override)
    recipe = _merge(DEFAULTS, given, "", path)
    if recipe["name"] is None:
        recipe["name"] = os.path.splitext(os.path.basename(path))[0]
    return recipe


def load_data(name, train_samples=None, test_samples=None):
    """Returns float ``(x_train, y_train), (x_test, y_test)`` for a recipe."""
    from tfcompress import data
    loaders = {"fashion_mnist": data.load_fashion_mnist,
               "mnist": data.load_mnist}
    if name in loaders:
        (xt, yt), (xv, yv) = loaders[name]()
    elif str(name).endswith(".npz"):
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


def run_recipe(path, out_dir=None, overrides=(), only=None):
    """Runs the recipe at ``path``; returns a dict with the run's results."""
    recipe = load_recipe(path, overrides)
    t = recipe["train"]
    import keras
    from tfcompress.models import compile_classifier, get_model

    run_dir = out_dir or os.path.join("runs", recipe["name"])
    os.makedirs(run_dir, exist_ok=True)
    (xt, yt), (xv, yv) = load_data(recipe["data"], t["train_samples"],
                                   t["test_samples"])
    keras.utils.set_random_seed(t["seed"])
    try:
        model = get_model(recipe["model"])
    except ValueError as e:
        raise InputError(str(e)) from None
    compile_classifier(model, t["learning_rate"], t["optimizer"])
    start = time.time()
    model.fit(xt, yt, epochs=t["epochs"], batch_size=t["batch_size"],
              validation_split=0.0, verbose=2)
    train_seconds = time.time() - start
    _, acc = model.evaluate(xv, yv, batch_size=512, verbose=0)
    model_path = os.path.join(run_dir, "baseline.keras")
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    result = {"recipe": recipe, "run_dir": run_dir,
              "baseline": {"path": model_path, "test_accuracy": float(acc),
                           "train_seconds": round(train_seconds, 2),
                           "size_bytes": os.path.getsize(model_path)}}
    atomic_write_text(os.path.join(run_dir, "report.json"),
                      json.dumps(result, indent=2))
    print(f"baseline {recipe['model']}: test accuracy {acc:.4f}, "
          f"saved to {model_path}")
    return result
