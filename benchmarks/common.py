"""Shared helpers for the benchmark scripts (data, training, output)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def fashion_mnist(train_samples=None, test_samples=None):
    from tfcompress.recipes import load_data
    return load_data("fashion_mnist", train_samples, test_samples)


def train(model, data, epochs, batch_size=128, lr=1e-3, callbacks=()):
    from tfcompress.models import compile_classifier
    from tfcompress.compat import build_training_state
    compile_classifier(model, lr)
    (xt, yt), _ = data
    build_training_state(model, xt, yt)   # fit traces its step once
    model.fit(xt, yt, epochs=epochs, batch_size=batch_size, verbose=0,
              callbacks=list(callbacks))
    return model


def step_timer(keras_module=None):
    """A callback that records each training batch's wall time;
    ``.median(skip=5)`` is the median after the first ``skip`` batches.
    ``keras_module``: Keras 3 (default) or tf_keras."""
    import numpy as np
    if keras_module is None:
        import keras as keras_module

    class StepTimer(keras_module.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, batch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.t)

        def median(self, skip=5):
            return float(np.median(self.times[skip:]))
    return StepTimer()


def alternating_p50(paths, runs=300, repeats=3, threads=1, xnnpack=True):
    """p50 latency (ms) of each flatbuffer: the median over ``repeats``
    rounds, each round timing every model once in turn, so load that
    comes and goes affects all models alike."""
    import numpy as np
    from tfcompress.bench import benchmark_model
    p50 = {p: [] for p in paths}
    for _ in range(repeats):
        for p in paths:
            r = benchmark_model(p, threads=threads, runs=runs,
                                warmup_runs=20, xnnpack=xnnpack)
            p50[p].append(r["latency"]["p50_ms"])
    return {p: float(np.median(v)) for p, v in p50.items()}


def keras_accuracy(model, data):
    import numpy as np
    _, (xv, yv) = data
    return float(np.mean(model.predict(xv, batch_size=500, verbose=0)
                         .argmax(1) == yv))


def tflite_accuracy(tflite_bytes, data):
    import numpy as np
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    _, (xv, yv) = data
    it, _ = litert_interpreter(tflite_bytes)   # built-ins if XNNPACK refuses
    # dequantizing keeps the argmax (the output scale is positive)
    logits = run_flatbuffer(it, xv)
    return float(np.mean(logits.reshape(len(xv), -1).argmax(1) ==
                         np.asarray(yv).reshape(-1)))


def json_child(cmd, env=None, timeout=3600):
    """Runs ``cmd`` (a benchmark's child process, which prints its result
    as a JSON line) and returns that result, the last line of its output
    that starts with ``{``; ``{"error": <its last line on stderr>}`` when it
    fails or prints none."""
    import subprocess
    r = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:600]}
    return json.loads(lines[-1])


def save(name, payload):
    """Prints and writes ``benchmarks/results/<name>.json``."""
    os.makedirs(RESULTS, exist_ok=True)
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "machine": platform.machine(), "cores": os.cpu_count(),
               "command": " ".join([os.path.basename(sys.executable)] +
                                   sys.argv), **payload}
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(path + ".tmp", path)
    print(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
    return path


def save_models(args, results, markdown):
    """Writes ``{"args": ..., "models": results}`` as ``<args.name>.json``
    and ``markdown(results, args)`` as ``<args.name>.md``; prints the
    table."""
    save(args.name, {"args": vars(args), "models": results})
    text = markdown(results, args)
    save_markdown(args.name, text)
    print(text)


def save_markdown(name, text):
    """Writes ``benchmarks/results/<name>.md`` atomically."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.md")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")
    return path
