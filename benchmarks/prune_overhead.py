"""Train-step overhead of pruning: tfcompress (Keras 3) next to tfmot.

Times ``model.fit`` steps of the seed CNN on Fashion-MNIST, dense and
pruned (PolynomialDecay 0 -> 80 %, masks updated every 100 steps as
tfmot's default), and prints pruned / dense for tfcompress and for
tensorflow-model-optimization on the equivalent tf_keras model. tfmot
needs ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported, so its
side runs in a subprocess of this script. Dense and pruned epochs
alternate so that load from other processes hits both alike.

    .venv/bin/python benchmarks/prune_overhead.py
    .venv/bin/python benchmarks/prune_overhead.py --steps 20 --repeats 3

Writes benchmarks/results/prune_overhead.json. Timings on a shared
machine are noisy: compare the two ratios of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30,
                   help="train steps per timed epoch")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed epochs per model (after one warm-up)")
    p.add_argument("--out", default=os.path.join(
        ROOT, "benchmarks", "results", "prune_overhead.json"))
    p.add_argument("--side", choices=("both", "tfcompress", "tfmot"),
                   default="both", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load_data(n):
    from tfcompress.data import load_fashion_mnist, prepare_images
    (x, y), _ = load_fashion_mnist(download=False)
    return prepare_images(x[:n]), y[:n].astype("int32")


def seed_cnn(keras):
    """The seed CNN, built with the given Keras module (3 or tf_keras)."""
    from tfcompress.models import seed_cnn as build
    return build(keras_module=keras)


def time_models(keras, tf, models, args):
    """Alternates one epoch per model; returns per-step seconds lists."""
    x, y = load_data(args.batch_size * args.steps)
    data = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(
        args.batch_size).prefetch(2)
    times = {name: [] for name in models}

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    for model, _ in models.values():
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(
                          from_logits=True), metrics=["accuracy"])
    for round_ in range(args.repeats + 1):
        for name, (model, callbacks) in models.items():
            timer = EpochTimer()
            model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0,
                      callbacks=callbacks() + [timer])
            if round_:  # round 0 traces the train function
                times[name].append(timer.seconds / args.steps)
    return times


def run_tfcompress(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from tfcompress import prune
    keras.utils.set_random_seed(0)
    dense = seed_cnn(keras)
    pruned = prune.prune_low_magnitude(
        seed_cnn(keras), prune.PolynomialDecay(0.0, 0.8, 0, 1000,
                                               frequency=100))
    times = time_models(keras, tf, {
        "dense": (dense, lambda: []),
        "pruned": (pruned, lambda: [prune.UpdatePruningStep()]),
    }, args)
    return {"library": "tfcompress", "keras": keras.__version__,
            "tensorflow": tf.__version__, **_ratio(times)}


def run_tfmot(args):
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    sparsity = tfmot.sparsity.keras
    dense = seed_cnn(tf_keras)
    pruned = sparsity.prune_low_magnitude(
        seed_cnn(tf_keras), pruning_schedule=sparsity.PolynomialDecay(
            0.0, 0.8, 0, 1000, frequency=100))
    times = time_models(tf_keras, tf, {
        "dense": (dense, lambda: []),
        "pruned": (pruned, lambda: [sparsity.UpdatePruningStep()]),
    }, args)
    return {"library": "tfmot", "tfmot": tfmot.__version__,
            "keras": tf_keras.__version__, "tensorflow": tf.__version__,
            **_ratio(times)}


def _ratio(times):
    """Median and minimum per-step times; other processes only ever add
    time, so the minimum is the steadier estimate on a shared machine."""
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    return {"dense_step_ms": round(1000 * med["dense"], 3),
            "pruned_step_ms": round(1000 * med["pruned"], 3),
            "ratio": round(med["pruned"] / med["dense"], 3),
            "dense_min_step_ms": round(1000 * low["dense"], 3),
            "pruned_min_step_ms": round(1000 * low["pruned"], 3),
            "ratio_of_minimums": round(low["pruned"] / low["dense"], 3),
            "dense_steps_ms": [round(1000 * t, 3) for t in times["dense"]],
            "pruned_steps_ms": [round(1000 * t, 3) for t in times["pruned"]]}


def run_subprocess(side, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--side", side,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps),
           "--repeats", str(args.repeats)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if side == "tfmot":
        env["TF_USE_LEGACY_KERAS"] = "1"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-3000:]}")
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[-1][len("RESULT "):])


def main(argv=None):
    args = parse_args(argv)
    if args.side != "both":
        run = run_tfcompress if args.side == "tfcompress" else run_tfmot
        print("RESULT " + json.dumps(run(args)))
        return 0
    # Each side in a fresh interpreter: same start state, and tfmot needs
    # TF_USE_LEGACY_KERAS before TensorFlow loads.
    ours = run_subprocess("tfcompress", args)
    theirs = run_subprocess("tfmot", args)
    result = {
        "benchmark": "prune_overhead", "model": "seed_cnn",
        "batch_size": args.batch_size, "steps_per_epoch": args.steps,
        "timed_epochs": args.repeats, "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "tfcompress": ours, "tfmot": theirs,
        "aim": "tfcompress ratio <= 1.2 and <= tfmot ratio",
        "aim_met": (ours["ratio"] <= 1.2 and
                    ours["ratio"] <= theirs["ratio"]),
    }
    for r in (ours, theirs):
        print(f"{r['library']:>10}: median dense {r['dense_step_ms']:.1f} "
              f"ms/step, pruned {r['pruned_step_ms']:.1f} ms/step, "
              f"pruned/dense = {r['ratio']:.3f} (ratio of minimums "
              f"{r['ratio_of_minimums']:.3f})")
    print(f"aim (ours <= 1.2 and <= tfmot): "
          f"{'met' if result['aim_met'] else 'NOT met'}")
    from tfcompress.utils import atomic_write_text
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    sys.exit(main())
