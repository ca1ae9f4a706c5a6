"""Runs a recipe: baseline training, then each variant's stages, with
every finished stage cached so an interrupted run resumes.

Artifacts go to ``runs/<recipe name>/`` (or ``--out``): ``baseline.keras``,
``float32.tflite`` (the baseline's float32 flatbuffer: the reference of
every size ratio), ``fair_baseline.json`` (with ``train.fair_baseline``),
``stages/<stage>_<hash>.keras`` (trained models, shared by variants with
the same stages before them), ``variants/<variant>/<n>_<stage>.{tflite,json}``, ``recipe.json``
(the resolved recipe), ``environment.json``, ``report.md``,
``report.json`` and ``pareto.png``. Each artifact has a ``.meta.json``
holding the key of everything it depends on (see
:mod:`tfcompress.recipes.keys`): the content of the model file and data
set, the recipe settings it uses and its upstream artifact's key. An
artifact whose key matches is reused; anything changed, even a file
rewritten under the same name, rebuilds it and what follows.
"""

from __future__ import annotations

import json
import os
import platform
import time

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipes import stages
from tfcompress.recipes.keys import (InputHashes, arrays_sha256, key,
                                     stage_settings)
from tfcompress.recipes.schema import MODEL_STAGES, load_recipe
from tfcompress.utils import atomic_path, atomic_write_text


def _cached(path, digest):
    meta = path + ".meta.json"
    if not (os.path.exists(path) and os.path.exists(meta)):
        return False
    try:
        with open(meta) as f:
            return json.load(f).get("hash") == digest
    except (OSError, ValueError):
        return False


def _mark(path, digest, inputs):
    atomic_write_text(path + ".meta.json", json.dumps(
        {"hash": digest, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
         "inputs": inputs}, indent=2, sort_keys=True, default=str))


def _save_model(model, path):
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)


def _load_model(path):
    from tfcompress.saving import load_model
    return load_model(path, compile=False)


def _raw_data(name):
    """The data set as stored (uint8 images or .npz arrays)."""
    from tfcompress import data
    loaders = {"fashion_mnist": data.load_fashion_mnist,
               "mnist": data.load_mnist}
    if name in loaders:
        return loaders[name]()
    if str(name).endswith(".npz"):
        if not os.path.isfile(name):
            raise InputError(f"data file {name} does not exist; give the "
                             "path of an .npz file with x_train, y_train, "
                             "x_test, y_test")
        return data.load_npz(name)
    raise InputError(f"unknown data {name!r}; use fashion_mnist, mnist "
                     "or a path to an .npz file")


def _prepare(raw, train_samples=None, test_samples=None, image_size=None,
             channels=None):
    from tfcompress import data
    (xt, yt), (xv, yv) = raw
    if train_samples:
        xt, yt = xt[:train_samples], yt[:train_samples]
    if test_samples:
        xv, yv = xv[:test_samples], yv[:test_samples]

    def images(x):
        x = data.prepare_images(x)
        if image_size is None and channels is None:
            return x
        return data.resize_images(x, image_size, channels)
    return ((images(xt), yt.astype("int32")),
            (images(xv), yv.astype("int32")))


def load_data(name, train_samples=None, test_samples=None, image_size=None,
              channels=None):
    """Float ``(x_train, y_train), (x_test, y_test)`` for a recipe: pixels
    in [0, 1], resized to ``image_size`` and repeated to ``channels`` when
    given (``data.image_size``, ``data.channels``).

    ``name`` is ``fashion_mnist``, ``mnist`` or the path of an ``.npz``
    file with ``x_train, y_train, x_test, y_test`` (uint8 images):

    >>> import tempfile
    >>> rng = np.random.default_rng(0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "tiny.npz")
    ...     np.savez(path, x_train=rng.integers(0, 256, (6, 8, 8), np.uint8),
    ...              y_train=np.arange(6) % 3,
    ...              x_test=rng.integers(0, 256, (2, 8, 8), np.uint8),
    ...              y_test=np.arange(2))
    ...     (x, y), (x_test, y_test) = load_data(
    ...         path, train_samples=4, image_size=16, channels=3)
    >>> x.shape, x.dtype, y.tolist(), x_test.shape
    ((4, 16, 16, 3), dtype('float32'), [0, 1, 2, 0], (2, 16, 16, 3))
    >>> bool(x.min() >= 0.0 and x.max() <= 1.0)
    True
    """
    return _prepare(_raw_data(name), train_samples, test_samples,
                    image_size, channels)


def data_classes(data):
    """Number of classes of ``((x, y), (x_test, y_test))``: the highest
    label + 1."""
    (_, yt), (_, yv) = data
    return int(max(np.max(yt, initial=0), np.max(yv, initial=0))) + 1


def pixel_scale(recipe, input_shape, classes):
    """255.0 when the recipe's keras.applications model scales its pixels
    itself (a Rescaling layer first: MobileNetV3, EfficientNet), else 1.0
    (pixels in [0, 1]). Builds an application once, so a name, option or
    input size it refuses fails here, before any training. A ``.keras``
    file is judged by :func:`_model_data`, which loads it."""
    from tfcompress.models.applications import (is_application,
                                                rescales_input)
    if not is_application(recipe["model"]):
        return 1.0
    return 255.0 if rescales_input(baseline_model(
        recipe, input_shape, classes)) else 1.0


def scale_pixels(data, scale):
    """``data`` with every image multiplied by ``scale``."""
    if scale == 1.0:
        return data
    (xt, yt), (xv, yv) = data
    return (xt * np.float32(scale), yt), (xv * np.float32(scale), yv)


def _is_model_file(name):
    from tfcompress.models import MODELS
    from tfcompress.models.applications import is_application
    return name not in MODELS and not is_application(name)


def _model_data(recipe, raw):
    """``(data, input_shape, classes, pixel scale, settings)``: the
    recipe's ``raw`` data sliced, resized, shaped and scaled as its model
    takes it; ``settings`` says how, for the data keys. A ``.keras`` file
    is loaded and checked against the data here, before any training."""
    d = recipe["data"]
    data = _prepare(raw, d["train_samples"], d["test_samples"],
                    d["image_size"], d["channels"])
    input_shape, classes = data[0][0].shape[1:], data_classes(data)
    if _is_model_file(recipe["model"]):
        from tfcompress.models.applications import rescales_input
        from tfcompress.recipes.user_model import (check_stages_take,
                                                   fit_data_to_model)
        model = _load_model(recipe["model"])
        check_stages_take(model, recipe["variants"], recipe["model"])
        data = fit_data_to_model(model, data, classes, recipe["model"])
        scale = 255.0 if rescales_input(model) else 1.0
    else:
        scale = pixel_scale(recipe, input_shape, classes)
    settings = _data_settings(d, scale)
    if data[0][0].shape[1:] != input_shape:
        settings["channel_axis"] = False
    return (scale_pixels(data, scale), data[0][0].shape[1:], classes,
            scale, settings)


def recipe_data(recipe):
    """The recipe's data as its model takes it: ``((x_train, y_train),
    (x_test, y_test))`` sliced, resized, in [0, 1] or [0, 255]
    (:func:`pixel_scale`)."""
    return _model_data(recipe, _raw_data(recipe["data"]["name"]))[0]


def _data_settings(d, scale):
    """Data settings beyond the samples that change the arrays; empty
    (so keys written before these settings stay valid) by default."""
    out = {k: d[k] for k in ("image_size", "channels") if d[k] is not None}
    if scale != 1.0:
        out["pixel_scale"] = scale
    return out


def _data_keys(d, raw, hashes, settings=None):
    """Keys of the training and the test split: their content (the .npz
    file's sha256, or the loaded arrays' for a named data set, wherever
    it was found), sample counts and ``settings`` (resizing, pixel
    scale)."""
    if str(d["name"]).endswith(".npz"):
        train = test = {"npz_sha256": hashes.sha256(d["name"])}
    else:
        (xt, yt), (xv, yv) = raw
        train = {"arrays_sha256": arrays_sha256(xt, yt)}
        test = {"arrays_sha256": arrays_sha256(xv, yv)}
    extra = [settings] if settings else []
    return (key("train data", train, d["train_samples"], *extra),
            key("test data", test, d["test_samples"], *extra))


def model_source(recipe, hashes):
    """What the baseline starts from: a reference model (by name and
    tfcompress version), a keras.applications model (by name, options
    and Keras version) or a model file (by content)."""
    import tfcompress
    from tfcompress.models import MODELS
    from tfcompress.models.applications import is_application
    name = recipe["model"]
    if name in MODELS:
        return {"reference": name, "tfcompress": tfcompress.__version__}
    if is_application(name):
        import keras
        return {"application": name, "options": recipe["model_options"],
                "keras": keras.__version__,
                "tfcompress": tfcompress.__version__}
    if os.path.exists(name):
        return {"file_sha256": hashes.sha256(name)}
    return {"missing": name}


def _check_bench_hosts(variants):
    """Refuses a bad ``bench.host`` before any training starts."""
    from tfcompress.bench.host import parse_host
    for v in variants:
        for i, stage in enumerate(v["stages"]):
            host = stage.get("bench", {}).get("host")
            if host is not None:
                try:
                    parse_host(host)
                except InputError as e:
                    raise InputError(f"variants {v['name']!r} stage {i} "
                                     f"bench: {e}") from None


def check_model_exists(name):
    """Raises InputError unless ``name`` is a reference model,
    ``keras.applications.<Name>`` or an existing .keras file."""
    from tfcompress.models import MODELS
    if _is_model_file(name) and not os.path.exists(name):
        raise InputError(f"model {name!r} is neither a reference model "
                         f"({', '.join(sorted(MODELS))}), "
                         "keras.applications.<Name> nor an existing .keras "
                         "file")


def baseline_model(recipe, input_shape, classes):
    """The recipe's untrained (or loaded) model for inputs of
    ``input_shape``: a reference model, a keras.applications model with
    ``classes`` logits, or a .keras file; with ``train.batchnorm_momentum``
    every BatchNormalization layer takes that momentum."""
    from tfcompress.models import MODELS, get_model
    from tfcompress.models.applications import (build_application,
                                                is_application,
                                                set_batchnorm_momentum)
    name = recipe["model"]
    check_model_exists(name)
    if name in MODELS:
        model = get_model(name, input_shape=tuple(input_shape))
    elif is_application(name):
        model = build_application(name, recipe["model_options"],
                                  input_shape, classes)
    else:
        model = _load_model(name)
    momentum = recipe["train"].get("batchnorm_momentum")
    if momentum is not None:
        set_batchnorm_momentum(model, momentum)
    return model


def training_settings(recipe):
    """The ``train`` settings that go into artifact keys: all but
    ``fair_baseline`` (turning it on must not retrain the stages) and the
    settings added later left at their old meaning."""
    train = {k: v for k, v in recipe["train"].items()
             if k != "fair_baseline"}
    return stage_settings("train", train)


# the model stages that train (ptq reads data but does not train)
TRAINING_STAGES = tuple(k for k in MODEL_STAGES if k != "ptq")


def stage_epochs(variant):
    """Epochs of a variant's training stages (prune, channel_prune,
    cluster, qat).

    >>> stage_epochs({"stages": [{"prune": {"epochs": 3}},
    ...                          {"qat": {"epochs": 1}}, {"convert": {}}]})
    4
    """
    return sum(params["epochs"] for stage in variant["stages"]
               for kind, params in stage.items() if kind in TRAINING_STAGES)


def _float32_reference(baseline, base_hash, run_dir):
    """The trained baseline as a float32 flatbuffer (weights only, no
    optimizer state): what every size ratio of the report divides."""
    import gzip
    from tfcompress.convert import convert
    path = os.path.join(run_dir, "float32.tflite")
    digest = key("float32 reference", base_hash)
    if _cached(path, digest):
        print(f"[float32] reusing {path}")
    else:
        print(f"[float32] converting the baseline to {path}")
        convert(baseline, "float32", output_path=path, strict=False)
        _mark(path, digest, {"baseline": base_hash})
    with open(path, "rb") as f:
        data = f.read()
    return {"path": path, "size_bytes": len(data),
            "gzip_bytes": len(gzip.compress(data, compresslevel=9))}


def _fair_baseline(base_path, base_hash, variants, data, train, run_dir,
                   strategy):
    """Trains the float baseline on for as many epochs as each variant's
    stages add (``train.epochs`` + stage epochs in total), so a compressed
    variant is compared with a float model trained as long. Returns
    ``{"epochs", "epochs_trained", "keras_accuracy", "accuracy_by_epochs"}``
    (None when no variant trains)."""
    import keras
    extras = sorted({stage_epochs(v) for v in variants} - {0})
    if not extras:
        return None
    path = os.path.join(run_dir, "fair_baseline.json")
    inputs = {"baseline": base_hash, "extra_epochs": extras, "train": train}
    digest = key("fair baseline", inputs)
    if _cached(path, digest):
        print(f"[fair baseline] reusing {path}")
        with open(path) as f:
            return json.load(f)
    total = train["epochs"] + extras[-1]
    print(f"[fair baseline] training the baseline on to {total} epoch(s) "
          "in total, as long as the longest variant")
    keras.utils.set_random_seed(train["seed"] + 10_000)
    with strategy.scope():
        model = _load_model(base_path)
        stages._compile(model, train["optimizer"], train["learning_rate"])
    trained, by_epochs = 0, {}
    for extra in extras:
        history = stages._fit(model, data, extra - trained,
                              train["batch_size"])
        trained += len(history.epoch)
        by_epochs[str(train["epochs"] + extra)] = stages.evaluate(model, data)
    out = {"epochs": total, "epochs_trained": train["epochs"] + trained,
           "keras_accuracy": by_epochs[str(total)],
           "accuracy_by_epochs": by_epochs,
           "learning_rate": train["learning_rate"]}
    atomic_write_text(path, json.dumps(out, indent=2))
    _mark(path, digest, inputs)
    return out


def _environment():
    import keras
    import tensorflow as tf
    return {"python": platform.python_version(),
            "machine": platform.machine(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "cores": os.cpu_count()}


def _make_run_dir(run_dir):
    """Creates the run folder; InputError when a file stands where it or
    a folder above it should be."""
    try:
        os.makedirs(run_dir, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"output folder {run_dir} cannot be created: it, "
                         "or a folder above it, is a file; give --out a "
                         "folder path") from None


def run_recipe(path, out_dir=None, overrides=(), only=None):
    """Runs the recipe at ``path``; returns a dict with the run's results.

    >>> result = run_recipe("configs/fashion_mnist_cnn.yaml")  # doctest: +SKIP
    >>> result["report_md"]                                    # doctest: +SKIP
    'runs/fashion_mnist_cnn/report.md'
    """
    recipe = load_recipe(path, overrides)
    check_model_exists(recipe["model"])
    variants = recipe["variants"]
    if only is not None:
        if not any(v["name"] == only for v in variants):
            raise InputError(f"--only {only!r}: no such variant; variants "
                             "are " + ", ".join(
                                 v["name"] for v in recipe["variants"]))
    _check_bench_hosts(variants)
    run_dir = out_dir or os.path.join("runs", recipe["name"])
    from tfcompress import distribute
    strategy = distribute.get_strategy(recipe["train"]["strategy"])
    if not distribute.is_chief(strategy):
        # every worker runs the same stages; only the chief's folder is
        # the result
        task_type, task_id = distribute.task(strategy)
        run_dir = os.path.join(run_dir, ".workers", f"{task_type}-{task_id}")
    import keras
    d = recipe["data"]
    fair = recipe["train"]["fair_baseline"]
    train = training_settings(recipe)
    # the data (and a user's model) are read and checked before the run
    # folder is made: a bad file leaves nothing behind
    raw = _raw_data(d["name"])
    data, input_shape, classes, scale, settings = _model_data(recipe, raw)
    _make_run_dir(run_dir)
    atomic_write_text(os.path.join(run_dir, "recipe.json"),
                      json.dumps(recipe, indent=2))
    atomic_write_text(os.path.join(run_dir, "environment.json"),
                      json.dumps(_environment(), indent=2))
    hashes = InputHashes(run_dir)
    train_key, test_key = _data_keys(d, raw, hashes, settings)
    model_key = model_source(recipe, hashes)
    hashes.save()
    del raw
    (xt, yt), (xv, yv) = data
    if scale != 1.0:
        print(f"[data] pixels in [0, {scale:g}]: {recipe['model']} "
              "scales its input itself")
    eval_npz = os.path.join(run_dir, "eval.npz")
    eval_key = key("eval.npz", test_key)
    if _cached(eval_npz, eval_key):
        print(f"[data] reusing {eval_npz}")
    else:
        print(f"[data] writing {eval_npz} ({len(xv)} test samples)")
        with atomic_path(eval_npz, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, x=xv, y=yv)
        _mark(eval_npz, eval_key, {"test_data": test_key})
    base_path = os.path.join(run_dir, "baseline.keras")
    base_inputs = {"model": model_key, "train_data": train_key,
                   "train": train}
    base_hash = key("baseline", base_inputs)
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
            baseline = baseline_model(recipe, input_shape, classes)
            stages._compile(baseline, train["optimizer"],
                            train["learning_rate"])
        stages._fit(baseline, data, train["epochs"], train["batch_size"])
        _save_model(baseline, base_path)
        _mark(base_path, base_hash, base_inputs)
    results = {"baseline": {
        "path": base_path, "epochs": train["epochs"],
        "keras_accuracy": stages.evaluate(baseline, data),
        # the .keras file also holds the optimizer state: never a
        # compression reference
        "keras_file_bytes_with_optimizer_state": os.path.getsize(base_path),
        "float32_tflite": _float32_reference(baseline, base_hash, run_dir)}}
    reported = []
    for variant in variants:
        if variant["name"] in ("baseline", "fair_baseline"):
            raise InputError(f"variant name {variant['name']!r} is reserved "
                             "for the report; rename the variant")
        # with --only, the other variants are reported as an earlier run
        # left them, when every one of their artifacts is still current
        done = _run_variant(
            variant, baseline, base_path, base_hash, data, train, run_dir,
            (eval_npz, eval_key), test_key, strategy,
            cached_only=only is not None and variant["name"] != only)
        if done is not None:
            results[variant["name"]] = done
            reported.append(variant)
    if fair:
        results["fair_baseline"] = _fair_baseline(
            base_path, base_hash, reported, data, train, run_dir, strategy)
    from tfcompress.recipes.report import write_report
    paths = write_report(run_dir, recipe, results)
    return {"run_dir": run_dir, "results": results, **paths}


def _run_variant(variant, baseline, base_path, base_hash, data, train,
                 run_dir, evaluation, test_key, strategy, cached_only=False):
    """Runs one variant's stages. Keys: a training stage's covers its
    upstream model's key, its settings, the training settings and its
    seed; convert's covers the model's key, its settings and the test data
    (its accuracy check); bench's covers the flatbuffer's key, its settings
    and eval.npz. With ``cached_only``, runs nothing: returns the results
    an earlier run left if every stage's artifact is current, else None."""
    import keras
    eval_npz, eval_key = evaluation
    name = variant["name"]
    vdir = os.path.join(run_dir, "variants", name)
    if cached_only and not os.path.isdir(vdir):
        return None
    os.makedirs(vdir, exist_ok=True)
    model, model_path, model_key = baseline, base_path, base_hash
    out = {"stages": [], "keras_accuracy": None,
           "total_epochs": train["epochs"] + stage_epochs(variant)}
    tflite_path = tflite_key = None
    for i, stage in enumerate(variant["stages"]):
        kind, params = next(iter(stage.items()))
        label = f"[{name}] {i}_{kind}"
        if kind in MODEL_STAGES:
            inputs = {"model": model_key,
                      kind: stage_settings(kind, params),
                      "train": train, "seed": train["seed"] + i}
            model_key = key(kind, inputs)
            # content-addressed: variants sharing a prefix share the model
            path = os.path.join(run_dir, "stages",
                                f"{kind}_{model_key}.keras")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if _cached(path, model_key):
                if not cached_only:
                    print(f"{label}: reusing {path}")
                with strategy.scope():
                    model = _load_model(path)
            elif cached_only:
                return None
            else:
                print(f"{label}: running")
                keras.utils.set_random_seed(train["seed"] + i)
                fn = {"prune": stages.run_prune,
                      "channel_prune": stages.run_channel_prune,
                      "cluster": stages.run_cluster,
                      "qat": stages.run_qat,
                      "ptq": stages.run_ptq}[kind]
                with strategy.scope():
                    model = fn(model, params, data, train)
                _save_model(model, path)
                _mark(path, model_key, inputs)
            model_path = path
        elif kind == "convert":
            inputs = {"model": model_key,
                      "convert": stage_settings(kind, params),
                      "test_data": test_key}
            tflite_key = key("convert", inputs)
            path = os.path.join(vdir, f"{i}_convert.tflite")
            rpath = path + ".report.json"
            if _cached(path, tflite_key) and os.path.exists(rpath):
                if not cached_only:
                    print(f"{label}: reusing {path}")
            elif cached_only:
                return None
            else:
                print(f"{label}: {params['mode']}")
                report = stages.run_convert(model, params, data, path)
                atomic_write_text(rpath, json.dumps(report, indent=2,
                                                    default=str))
                _mark(path, tflite_key, inputs)
            with open(rpath) as f:
                out["conversion"] = json.load(f)
            tflite_path = path
        elif kind == "bench":
            inputs = {"tflite": tflite_key, "bench": params,
                      "eval_npz": eval_key}
            digest = key("bench", inputs)
            path = os.path.join(vdir, f"{i}_bench.json")
            if _cached(path, digest):
                if not cached_only:
                    print(f"{label}: reusing {path}")
            elif cached_only:
                return None
            else:
                print(f"{label}: benchmarking {os.path.basename(tflite_path)}")
                result = stages.run_bench(tflite_path, params, eval_npz)
                atomic_write_text(path, json.dumps(result, indent=2))
                _mark(path, digest, inputs)
            with open(path) as f:
                out["bench"] = json.load(f)
        out["stages"].append(kind)
    if cached_only:
        print(f"[{name}] kept from an earlier run (all its artifacts are "
              "current)")
    out["keras_model"] = model_path
    out["keras_accuracy"] = stages.evaluate(model, data)
    out["tflite"] = tflite_path
    return out
