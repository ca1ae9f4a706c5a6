"""``tune``: the search loop.

Starting from the float model, it measures the float32 flatbuffer (the
reference), then the cheapest conversions (int8, int8 with the layers
the sensitivity analysis finds most sensitive kept float, int16x8,
float16) until one keeps the validation accuracy within ``budget``
points; for the latency objective it then bisects the fraction of
channels removed (channel pruning + shrink); then it bisects a ladder of
per-layer sparsities built from the sensitivity analysis (each level
fine-tuned with pruning), then tries 4-bit weights on the best level, and
post-training steps (equalization, bias correction, AdaRound) where
``tfcompress.ptq`` and its recipe stage are available. The smallest (or
fastest) flatbuffer within the budget wins; its test accuracy is
measured once, after the search.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
import yaml

from tfcompress.errors import InputError
from tfcompress.recipes.keys import arrays_sha256, key
from tfcompress.tune.evaluate import Evaluator, tflite_accuracy
from tfcompress.tune.space import (CHANNEL_SPARSITIES, SPARSITIES,
                                   Candidate,
                                   four_bit_sensitive_layers,
                                   most_sensitive_layers, sparsity_levels)
from tfcompress.tune.split import validation_split
from tfcompress.utils import atomic_path, atomic_write_text

OBJECTIVES = ("size", "latency")
DEFAULT_TRAIN = {"epochs": 1, "batch_size": 128, "optimizer": "adam",
                 "learning_rate": 1e-3, "seed": 0, "strategy": "default"}
LATENCY_BENCH = {"runs": 30, "warmup_runs": 5, "threads": 1}


@dataclasses.dataclass
class TuneResult:
    """What ``tune`` found: ``chosen`` and ``reference`` (float32) are
    candidate result dicts (label, config, stages, val_accuracy,
    size_bytes, gzip_bytes, latency_p50_ms); ``candidates`` holds every
    evaluated one in order; ``test_accuracy`` is the chosen flatbuffer's,
    measured once after the search.

    ``tune`` returns one after minutes of training; here one is built by
    hand to show how it reads:

    >>> reference = {"label": "float32", "val_accuracy": 0.912,
    ...              "size_bytes": 3_300_000, "gzip_bytes": 3_000_000}
    >>> chosen = {"label": "p3_w4_int8", "val_accuracy": 0.905,
    ...           "size_bytes": 450_000, "gzip_bytes": 80_000}
    >>> result = TuneResult(
    ...     chosen=chosen, reference=reference,
    ...     candidates=[reference, chosen], budget=1.0, objective="size",
    ...     test_accuracy=0.901, reference_test_accuracy=0.908,
    ...     evaluations=2, folder="runs/demo/tune",
    ...     recipe_path="runs/demo/tune/recipe.yaml",
    ...     report_json="runs/demo/tune/report.json",
    ...     report_md="runs/demo/tune/report.md",
    ...     plot="runs/demo/tune/pareto.png", fit_samples=54000,
    ...     val_samples=6000, seconds=312.5)
    >>> drop = 100 * (result.reference["val_accuracy"]
    ...               - result.chosen["val_accuracy"])
    >>> round(drop, 2), drop <= result.budget
    (0.7, True)
    >>> reference["gzip_bytes"] / chosen["gzip_bytes"]  # times smaller
    37.5
    >>> from tfcompress.tune.report import pareto_front
    >>> pareto_front(result.candidates, "gzip_bytes")  # by increasing size
    [1, 0]
    """
    chosen: dict
    reference: dict
    candidates: list
    budget: float
    objective: str
    test_accuracy: float
    reference_test_accuracy: float
    evaluations: int
    folder: str
    recipe_path: str
    report_json: str
    report_md: str
    plot: str
    fit_samples: int
    val_samples: int
    seconds: float


def ptq_available():
    """True when recipes have a ``ptq`` stage (``tfcompress.ptq``)."""
    from tfcompress.recipes import stages
    from tfcompress.recipes.schema import STAGE_SCHEMAS
    return "ptq" in STAGE_SCHEMAS and hasattr(stages, "run_ptq")


def validated_stages(stages):
    """Recipe stages with every default filled in (and checked)."""
    from tfcompress.recipes.schema import load_recipe_text
    text = yaml.safe_dump({"variants": [{"name": "candidate",
                                         "stages": stages}]})
    return load_recipe_text(text, "<tune>")["variants"][0]["stages"]


def _check_args(budget, objective, max_candidates):
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) \
            or not 0 <= budget <= 100:
        raise InputError(f"budget must be accuracy points in [0, 100], e.g. "
                         f"1.0; got {budget!r}")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}"
                         f"; got {objective!r}")
    if not isinstance(max_candidates, int) or max_candidates < 2:
        raise InputError(f"max_candidates must be an integer >= 2 (the "
                         f"float reference and one more); got "
                         f"{max_candidates!r}")


def _from_recipe(path, overrides, out_dir):
    """(setup dict) for a recipe: its data, training and baseline key."""
    from tfcompress.recipes.runner import (check_model_exists, recipe_data,
                                           training_settings)
    from tfcompress.recipes.schema import load_recipe
    recipe = load_recipe(path, overrides)
    check_model_exists(recipe["model"])
    (xt, yt), test = recipe_data(recipe)
    train = dict(training_settings(recipe),
                 fair_baseline=recipe["train"]["fair_baseline"])
    return {"name": recipe["name"], "recipe": recipe, "train": train,
            "x": xt, "y": yt, "test": test, "model": None,
            "folder": os.path.join(out_dir or os.path.join(
                "runs", recipe["name"]), "tune")}


def _from_model(model, data, train, name, out_dir):
    import keras
    if not isinstance(model, keras.Model):
        raise InputError(f"tune takes a recipe path or a Keras model, got "
                         f"{type(model).__name__}")
    try:
        (xt, yt), (xs, ys) = data
    except (TypeError, ValueError):
        raise InputError("with a model, tune needs data=((x_train, "
                         "y_train), (x_test, y_test))") from None
    # the test split is read after the search: checked now
    for split, x, y in (("train", xt, yt), ("test", xs, ys)):
        if len(x) != len(y):
            raise InputError(f"x_{split} has {len(x)} samples and y_{split} "
                             f"{len(y)}; they must match")
    test = (xs, ys)
    # candidates are scored by top-1 over one logit per class, as the
    # written recipe's run checks too: a one-unit binary head scored
    # class 0 everywhere, so every candidate looked equally good
    outputs = getattr(model, "outputs", None) or []
    units = outputs[0].shape[-1] if len(outputs) == 1 else None
    classes = max(2, int(np.max(yt)) + 1) if len(yt) else 2
    if units is not None and units < classes:
        raise InputError(f"the model gives {units} output(s) per sample, "
                         f"but the labels run 0 to {classes - 1}: tune "
                         f"scores one logit per class; give a model whose "
                         f"last layer has {classes} units")
    name = name or model.name
    return {"name": name, "recipe": None, "train": {**DEFAULT_TRAIN,
                                                    **(train or {})},
            "x": np.asarray(xt), "y": np.asarray(yt).astype("int32"),
            "test": test, "model": model,
            "folder": os.path.join(out_dir or os.path.join("runs", name),
                                   "tune")}


def _baseline(setup, fit, data_key):
    """The float model and its key: the given model, or the recipe's
    model trained (once, cached) on the fit part of the training split."""
    import keras
    from tfcompress.recipes import stages
    from tfcompress.saving import load_model
    folder = setup["folder"]
    if setup["model"] is not None:
        model = setup["model"]
        weights = arrays_sha256(*[np.asarray(w) for w in model.get_weights()])
        return model, key("tune model", model.to_json(), weights)
    recipe = setup["recipe"]
    name = recipe["model"]
    from tfcompress.models import MODELS
    from tfcompress.recipes.keys import InputHashes
    from tfcompress.recipes.runner import (baseline_model, data_classes,
                                           model_source)
    source = {"reference": name} if name in MODELS else \
        model_source(recipe, InputHashes(folder))
    base_key = key("tune baseline", source, data_key, setup["train"])
    path = os.path.join(folder, "baseline.keras")
    try:
        with open(path + ".meta.json") as f:
            if json.load(f) == {"key": base_key} and os.path.exists(path):
                setup["progress"](f"[tune] reusing {path}")
                return load_model(path, compile=False), base_key
    except (OSError, ValueError):
        pass
    train = setup["train"]
    setup["progress"](f"[tune] training {name} for {train['epochs']} "
                      f"epoch(s) on {fit[0].shape[0]} samples")
    keras.utils.set_random_seed(train["seed"])
    classes = data_classes(((setup["x"], setup["y"]), setup["test"]))
    model = baseline_model(recipe, fit[0].shape[1:], classes)
    stages._compile(model, train["optimizer"], train["learning_rate"])
    stages._fit(model, (fit, None), train["epochs"], train["batch_size"])
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    atomic_write_text(path + ".meta.json", json.dumps({"key": base_key}))
    return model, base_key


def _sensitivity(model, base_key, val, folder, data_key):
    """Per-layer sensitivity on (at most 2000 of) the validation samples,
    cached in ``sensitivity.json`` with the analysis' version: a cache of
    another version (or none, from before versions) is computed again."""
    from tfcompress.analyze import sensitivity
    from tfcompress.analyze.sensitivity import VERSION, SensitivityResult
    digest = key("tune sensitivity", base_key, data_key, SPARSITIES)
    path = os.path.join(folder, "sensitivity.json")
    try:
        with open(path) as f:
            stored = json.load(f)
        if stored.get("key") == digest and stored.get("version") == VERSION:
            r = stored["result"]
            r["pruned"] = {n: {float(s): v for s, v in row.items()}
                           for n, row in r["pruned"].items()}
            r["quantized"] = {n: {int(b): v for b, v in row.items()}
                              for n, row in r["quantized"].items()}
            return SensitivityResult(**r)
    except (OSError, ValueError, KeyError, TypeError,
            AttributeError):
        pass
    x, y = val
    result = sensitivity(model, (x[:2000], y[:2000]), sparsities=SPARSITIES)
    atomic_write_text(path, json.dumps({"key": digest, "version": VERSION,
                                        "result": result.to_dict()},
                                       indent=2))
    return result


def _kernel_sizes(model):
    """Prunable weights per layer, all of a layer's prunable weights
    counted (a recurrent layer's two kernels, MultiHeadAttention's four),
    as pruning the layer prunes them all."""
    from tfcompress.prune.prunable import get_prunable_weights, is_prunable
    from tfcompress.utils.layer_map import iter_layers
    return {l.name: sum(int(np.prod(w.shape))
                        for w in get_prunable_weights(l))
            for l in iter_layers(model) if is_prunable(l) and l.built}


class _Search:
    """Runs candidates within ``max_candidates`` and keeps them all."""

    def __init__(self, evaluator, budget, epochs, max_candidates, progress):
        self.evaluator, self.budget, self.epochs = evaluator, budget, epochs
        self.max, self.progress = max_candidates, progress
        self.results, self.reference = [], None

    def room(self, n=1):
        return len(self.results) + n <= self.max

    def within(self, r):
        if r.get("val_accuracy") is None:
            return False
        return self.drop(r) <= self.budget + 1e-9

    def drop(self, r):
        return round((self.reference["val_accuracy"] - r["val_accuracy"])
                     * 100, 4)

    def run(self, candidate):
        for r in self.results:
            if r["config"] == candidate.to_dict():
                return r
        stages = validated_stages(candidate.stages(self.epochs))
        r = self.evaluator.evaluate(stages, {"label": candidate.label,
                                             "config": candidate.to_dict()})
        if self.reference is None:
            self.reference = r
        self.results.append(r)
        r["drop_points"] = None if r.get("val_accuracy") is None \
            else self.drop(r)
        r["within_budget"] = self.within(r)
        self.progress(self.line(r))
        return r

    def line(self, r):
        n = f"[tune {len(self.results)}/{self.max}]"
        if r.get("val_accuracy") is None:
            return f"{n} {r['label']:<24} failed: {r.get('error')}"
        lat = (f", p50 {r['latency_p50_ms']:.3f} ms"
               if r.get("latency_p50_ms") is not None else "")
        return (f"{n} {r['label']:<24} val {r['val_accuracy']:.4f} "
                f"(drop {r['drop_points']:+.2f} pt), "
                f"{r['gzip_bytes'] / 1024:.1f} KiB gzip "
                f"({r['size_bytes'] / 1024:.1f} KiB raw){lat}: "
                f"{'within budget' if r['within_budget'] else 'over budget'}"
                f" ({'cached' if r['reused'] else str(r['seconds']) + ' s'})")


def _search(s, sens, weights, use_ptq, objective="size"):
    """The search order: cheap conversions, then (``objective="latency"``)
    the fraction of channels removed by bisection, then the sparsity
    ladder by bisection, then 4-bit weights (all of them, then with the
    layers most sensitive to 4 bits kept at 8); every step bounded by
    ``s.room()``."""
    s.run(Candidate(mode="float32"))
    base = Candidate(mode="float32")
    plans = [Candidate(mode="int8")]
    keep = most_sensitive_layers(sens, s.budget)
    if keep:    # int8 with the layers the analysis finds most sensitive float
        plans.append(Candidate(mode="int8", float_layers=keep))
    if use_ptq:
        plans.append(Candidate(mode="int8",
                               ptq=("equalize", "correct_bias")))
    plans += [Candidate(mode="int16x8"), Candidate(mode="float16")]
    for c in plans:
        if not s.room():
            return
        if s.within(s.run(c)):
            base = c
            break
    if objective == "latency" and base.mode != "float32":
        _channel_ladder(s, base)
    levels = sparsity_levels(sens, weights, s.budget)
    lo, hi = -1, len(levels)
    while hi - lo > 1 and s.room(2):    # keep one for 4-bit weights
        mid = (lo + hi) // 2
        c = dataclasses.replace(base, sparsity=levels[mid], level=mid)
        if s.within(s.run(c)):
            lo = mid
        else:
            hi = mid
    if base.mode != "int8" or base.float_layers:
        # 4-bit weights need integer conversion and come from QAT or
        # AdaRound fake-quant layers, which float_layers does not apply to
        return
    tries = [lo] + ([lo - 1] if lo >= 0 else [])
    keep8 = four_bit_sensitive_layers(sens, s.budget)
    for level in tries:
        sparsity = levels[level] if level >= 0 else ()
        four = [dataclasses.replace(base, sparsity=sparsity, level=level,
                                    weight_bits=4)]
        if use_ptq:
            four.append(dataclasses.replace(
                base, sparsity=sparsity, level=level, weight_bits=4,
                ptq=tuple(p for p in base.ptq if p != "correct_bias")
                + ("adaround",)))
        if keep8:   # 4-bit but the layers 4 bits hurt most (QAT)
            four.append(dataclasses.replace(
                base, sparsity=sparsity, level=level, weight_bits=4,
                eight_bit=keep8))
        for c in four:
            if not s.room():
                return
            if s.within(s.run(c)):
                return


def _channel_ladder(s, base):
    """Bisects ``CHANNEL_SPARSITIES`` on ``base``'s conversion (before
    the sparsity ladder: for latency, channels removed come first)."""
    lo, hi = -1, len(CHANNEL_SPARSITIES)
    while hi - lo > 1 and s.room():
        mid = (lo + hi) // 2
        c = dataclasses.replace(base, channels=CHANNEL_SPARSITIES[mid])
        if s.within(s.run(c)):
            lo = mid
        else:
            hi = mid


def _best(results, objective, within):
    ok = [r for r in results if within(r)]
    if objective == "latency":
        return min(ok, key=lambda r: (r["latency_p50_ms"], r["gzip_bytes"]))
    return min(ok, key=lambda r: (r["gzip_bytes"], -r["val_accuracy"]))


def _test_accuracy(folder, chosen, reference, test, test_key):
    """Test accuracy of the chosen and the float32 flatbuffers, measured
    once (cached under their keys)."""
    digest = key("tune test", chosen["key"], reference["key"], test_key)
    path = os.path.join(folder, "test_accuracy.json")
    try:
        with open(path) as f:
            stored = json.load(f)
        if stored.get("key") == digest:
            return stored["chosen"], stored["reference"]
    except (OSError, ValueError):
        pass
    x, y = test
    out = []
    for r in (chosen, reference):
        with open(r["tflite"], "rb") as f:
            out.append(tflite_accuracy(f.read(), x, np.asarray(y)))
    atomic_write_text(path, json.dumps({"key": digest, "chosen": out[0],
                                        "reference": out[1]}))
    return out[0], out[1]


def tune(recipe_or_model, data=None, *, budget=1.0, objective="size",
         out_dir=None, max_candidates=12, val_samples=None,
         finetune_epochs=1, use_ptq=None, overrides=(), train=None,
         name=None, recipe_data=None, progress=print,
         command=None) -> TuneResult:
    """Finds the smallest (``objective="size"``: gzip bytes of the
    flatbuffer) or fastest (``"latency"``: benchmark p50) TFLite model
    whose validation accuracy is at most ``budget`` points below the float
    model's.

    Args:
      recipe_or_model: a recipe path (configs/*.yaml; its baseline is
        trained on the training split minus the validation samples), or
        a trained Keras classifier (then ``data`` is required).
      data: with a model, ``((x_train, y_train), (x_test, y_test))``.
      budget: accuracy points the chosen model may lose on the
        validation split.
      out_dir: run folder (default ``runs/<name>``); results go to its
        ``tune/`` folder, reused when a run is resumed.
      max_candidates: at most this many candidates are evaluated
        (including the float32 reference).
      val_samples: validation samples held out from the end of the
        training split (default: a sixth, 100 to 5000).
      finetune_epochs: epochs of each pruning or QAT fine-tuning.
      use_ptq: try post-training steps (default: when available).
      overrides: ``key.path=value`` recipe overrides.
      train: with a model, training settings for fine-tuning.
      recipe_data: with a model, the ``data`` the written recipe names.
      progress: called with one line per candidate (``None``: silent).
      command: the command line, quoted in the report.

    Example:

    >>> result = tune("configs/fashion_mnist_cnn.yaml", budget=1.0)  # doctest: +SKIP
    >>> result.chosen["label"], result.test_accuracy                 # doctest: +SKIP
    ('p3_w4_int8', 0.8795)
    """
    start = time.time()
    _check_args(budget, objective, max_candidates)
    progress = progress or (lambda line: None)
    if isinstance(recipe_or_model, (str, os.PathLike)):
        setup = _from_recipe(str(recipe_or_model), overrides, out_dir)
    else:
        setup = _from_model(recipe_or_model, data, train, name, out_dir)
    setup["progress"] = progress
    if use_ptq is None:
        use_ptq = ptq_available()
    elif use_ptq and not ptq_available():
        raise InputError("use_ptq=True, but recipes have no ptq stage in "
                         "this installation; pass use_ptq=None or False")
    folder = setup["folder"]
    os.makedirs(folder, exist_ok=True)
    fit_slice, val_slice = validation_split(len(setup["x"]), val_samples)
    fit = (setup["x"][fit_slice], setup["y"][fit_slice])
    val = (setup["x"][val_slice], setup["y"][val_slice])
    data_key = key("tune data", arrays_sha256(*fit), arrays_sha256(*val))
    baseline, base_key = _baseline(setup, fit, data_key)
    latency = LATENCY_BENCH if objective == "latency" else None
    evaluator = Evaluator(folder, baseline, base_key, fit, val, data_key,
                          setup["train"], latency=latency, progress=progress)
    progress(f"[tune] {setup['name']}: budget {budget} point(s), objective "
             f"{objective}, fit on {len(fit[0])} and validate on "
             f"{len(val[0])} training samples, at most {max_candidates} "
             f"candidates{' (with PTQ steps)' if use_ptq else ''}")
    sens = _sensitivity(baseline, base_key, val, folder, data_key)
    s = _Search(evaluator, float(budget), finetune_epochs, max_candidates,
                progress)
    _search(s, sens, _kernel_sizes(baseline), use_ptq, objective)
    if s.reference.get("val_accuracy") is None:
        raise InputError(f"the float32 conversion failed: "
                         f"{s.reference.get('error')}")
    chosen = _best(s.results, objective, s.within)
    x_test, y_test = setup["test"]      # first use of the test split
    test_key = key("tune test data", arrays_sha256(np.asarray(x_test),
                                                   np.asarray(y_test)))
    test_acc, ref_test_acc = _test_accuracy(folder, chosen, s.reference,
                                            (x_test, y_test), test_key)
    from tfcompress.tune import report
    result = TuneResult(
        chosen=chosen, reference=s.reference, candidates=s.results,
        budget=float(budget), objective=objective, test_accuracy=test_acc,
        reference_test_accuracy=ref_test_acc,
        evaluations=evaluator.evaluations, folder=folder, recipe_path="",
        report_json="", report_md="", plot="",
        fit_samples=len(fit[0]), val_samples=len(val[0]),
        seconds=round(time.time() - start, 1))
    report.write_all(result, setup, baseline, recipe_data, command)
    progress(f"[tune] chosen {chosen['label']}: val {chosen['val_accuracy']:.4f}"
             f" (float32 {s.reference['val_accuracy']:.4f}), test "
             f"{test_acc:.4f} (float32 {ref_test_acc:.4f}), "
             f"{chosen['gzip_bytes']} bytes gzip "
             f"({s.reference['gzip_bytes'] / chosen['gzip_bytes']:.1f}x "
             f"smaller than float32); recipe {result.recipe_path}")
    return result
