"""Builds a candidate with the recipe stages, converts it and measures
the flatbuffer: LiteRT accuracy on the validation split, size (raw and
gzip) and, when asked, latency with the benchmark runner.

Every trained model and every candidate result is cached in the tune
folder under a content key (:mod:`tfcompress.recipes.keys`), so a killed
run resumes without evaluating anything twice.
"""

from __future__ import annotations

import gzip
import json
import os
import time

import numpy as np

from tfcompress.errors import InputError
from tfcompress.recipes import stages as recipe_stages
from tfcompress.recipes.keys import key
from tfcompress.utils import atomic_path, atomic_write_text


def tflite_accuracy(tflite_bytes, x, y):
    """Top-1 accuracy of a flatbuffer run by LiteRT on ``(x, y)``.

    >>> tflite_accuracy(result.tflite_bytes, x_val, y_val)  # doctest: +SKIP
    0.8825
    """
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    if not len(x):
        return 0.0
    interp, _ = litert_interpreter(tflite_bytes)
    logits = run_flatbuffer(interp, x)
    return float(np.mean(logits.reshape(len(x), -1).argmax(1) ==
                         np.asarray(y).reshape(-1)))


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _without_empty_float_layers(stage):
    """``stage`` as keyed before ``convert.float_layers`` existed when it
    keeps no layer float (so earlier candidates are reused)."""
    params = stage.get("convert")
    if params is None or params.get("float_layers", []) != []:
        return stage
    return {"convert": {k: v for k, v in params.items()
                        if k != "float_layers"}}


class Evaluator:
    """Evaluates candidates' stages on ``fit`` (training) and ``val``
    (measuring) arrays, caching under ``folder``.

    ``base_key`` names the float model (its content); ``data_key`` names
    the fit and validation arrays; ``train`` holds the recipe's training
    settings (optimizer, batch size, seed) used by fine-tuning stages.
    """

    def __init__(self, folder, baseline, base_key, fit, val, data_key,
                 train, latency=None, progress=print):
        self.folder, self.baseline, self.base_key = folder, baseline, base_key
        self.fit, self.val, self.data_key = fit, val, data_key
        self.train, self.latency, self.progress = train, latency, progress
        self.evaluations = 0    # candidates evaluated (not read from cache)
        self.trainings = 0      # fine-tuning stages run
        os.makedirs(os.path.join(folder, "candidates"), exist_ok=True)
        os.makedirs(os.path.join(folder, "stages"), exist_ok=True)

    def candidate_key(self, stages):
        return key("tune candidate", self.base_key, self.data_key,
                   [_without_empty_float_layers(s) for s in stages],
                   self.train, self.latency)

    def cached(self, stages):
        """The stored result of ``stages``, or None."""
        digest = self.candidate_key(stages)
        result = _read_json(os.path.join(self.folder, "candidates",
                                         f"{digest}.json"))
        if result and result.get("key") == digest:
            return result
        return None

    def evaluate(self, stages, info):
        """Result dict of the candidate built by ``stages`` (validated
        recipe stages); ``info`` (label, config) is stored with it."""
        digest = self.candidate_key(stages)
        result = self.cached(stages)
        if result is not None:
            result["reused"] = True
            return result
        start = time.time()
        convert = stages[-1]["convert"]
        tflite = os.path.join(self.folder, "candidates", f"{digest}.tflite")
        data = (self.fit, self.val)
        result = dict(info)
        result.update({"key": digest, "stages": stages})
        try:
            # a stage the model does not take (e.g. QAT of a layer with
            # no quantize config) fails this candidate, not the search
            model = self._build(stages, info.get("label"))
            report = recipe_stages.run_convert(model, convert, data, tflite)
        except InputError as e:     # e.g. ops left in float (strict)
            result.update({"error": str(e).splitlines()[0],
                           "val_accuracy": None,
                           "seconds": round(time.time() - start, 2)})
            return self._store(digest, result)
        with open(tflite, "rb") as f:
            raw = f.read()
        x_val, y_val = self.val
        result.update({
            "key": digest, "stages": stages, "tflite": tflite,
            "val_accuracy": tflite_accuracy(raw, x_val, y_val),
            "val_samples": int(len(x_val)),
            "size_bytes": len(raw),
            "gzip_bytes": len(gzip.compress(raw, compresslevel=9)),
            "float_ops": len(report.get("float_ops", [])),
            "latency_p50_ms": None})
        if self.latency is not None:
            from tfcompress.bench import benchmark_models
            bench = benchmark_models([tflite], progress=False,
                                     **self.latency)[0]
            result["latency_p50_ms"] = bench["latency"]["p50_ms"]
        result["seconds"] = round(time.time() - start, 2)
        return self._store(digest, result)

    def _store(self, digest, result):
        atomic_write_text(os.path.join(self.folder, "candidates",
                                       f"{digest}.json"),
                          json.dumps(result, indent=2, default=str))
        self.evaluations += 1
        result["reused"] = False
        return result

    def _build(self, stages, label=None):
        """The Keras model after the stages before ``convert`` (trained
        stages cached as ``stages/<kind>_<key>.keras``, and built again
        when the file does not load)."""
        import keras
        from tfcompress.saving import load_model
        model, model_key = self.baseline, self.base_key
        for i, stage in enumerate(stages[:-1]):
            kind, params = next(iter(stage.items()))
            inputs = {"model": model_key, kind: params, "train": self.train,
                      "seed": self.train["seed"] + i, "data": self.data_key}
            model_key = key("tune " + kind, inputs)
            path = os.path.join(self.folder, "stages",
                                f"{kind}_{model_key}.keras")
            if os.path.exists(path) and _read_json(
                    path + ".meta.json") == {"key": model_key}:
                try:
                    model = load_model(path, compile=False)
                    continue
                except InputError:
                    # saved but not loadable: a Lambda(preprocess_input)
                    # comes back without its function; built again
                    pass
            keras.utils.set_random_seed(self.train["seed"] + i)
            if "epochs" in params:      # Keras's epoch lines stay off
                self.progress(f"[tune] {label or 'candidate'}: {kind}, "
                              f"training {params['epochs']} epoch(s)")
            model = self._run_stage(kind, params, model)
            with atomic_path(path, suffix=".keras") as tmp:
                model.save(tmp)
            atomic_write_text(path + ".meta.json",
                              json.dumps({"key": model_key}))
        return model

    def _run_stage(self, kind, params, model):
        data = (self.fit, self.val)
        if kind == "prune":
            self.trainings += 1
            return recipe_stages.run_prune(model, params, data, self.train,
                                           verbose=0)
        if kind == "qat":
            self.trainings += 1
            return recipe_stages.run_qat(model, params, data, self.train,
                                         verbose=0)
        if kind == "channel_prune":
            self.trainings += 1
            return recipe_stages.run_channel_prune(
                model, params, data, self.train,
                report=lambda line: self.progress(f"[tune] {line}"),
                verbose=0)
        if kind == "ptq":
            run_ptq = getattr(recipe_stages, "run_ptq", None)
            if run_ptq is None:
                raise InputError("ptq stage: tfcompress.ptq is not "
                                 "available in this installation")
            return run_ptq(model, params, data, self.train)
        raise ValueError(f"tune cannot run stage {kind!r}")
