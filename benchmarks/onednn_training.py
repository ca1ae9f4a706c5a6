"""Training-step time of the zoo's models with TensorFlow's oneDNN
kernels on and off (``TF_ENABLE_ONEDNN_OPTS=1`` / ``0``), side by side.

TensorFlow on x86 Linux runs its CPU kernels through oneDNN by default.
For each model of ``benchmarks/zoo.py`` (as the zoo builds it, 32x32x3,
batch 128) and each kind of training the zoo does (float, and QAT with the
zoo's scheme), one process per setting trains ``--steps`` batches after a
traced warm-up step; the rounds alternate the two settings so load that
comes and goes hits both. Reported per step: the median wall time (from a
per-batch timer) and the process CPU time (all threads).

    .venv/bin/python benchmarks/onednn_training.py

Writes benchmarks/results/<name>.{json,md}.
"""

import argparse
import json
import os
import sys
import time

import common
import numpy as np

SETTINGS = ("1", "0")   # TF_ENABLE_ONEDNN_OPTS: oneDNN on, off
KINDS = ("float", "qat")


def child(name, kind, steps):
    """Times ``steps`` training steps of ``name`` in this process; prints
    one JSON line."""
    import keras
    import zoo
    from tfcompress import quantize
    keras.utils.set_random_seed(0)
    model = zoo.build(name, keras, 32)
    if kind == "qat":
        model = quantize.quantize_model(model, quantize.Default8BitScheme(
            freeze_bn_delay=0, activation_percentile=99.99))
    rng = np.random.default_rng(0)
    scale = 255.0 if zoo.MODELS[name][2] else 1.0
    x = rng.random((zoo.BATCH * (steps + 1), 32, 32, 3), "float32") * scale
    y = rng.integers(0, 10, len(x))
    common.train(model, ((x[:zoo.BATCH], y[:zoo.BATCH]), None), 1,
                 batch_size=zoo.BATCH)   # traces the step
    timer = common.step_timer()
    cpu = time.process_time()
    model.fit(x[zoo.BATCH:], y[zoo.BATCH:], batch_size=zoo.BATCH,
              epochs=1, verbose=0, callbacks=[timer])
    print(json.dumps({
        "step_ms": round(1000 * timer.median(skip=2), 1),
        "cpu_ms_per_step": round(1000 * (time.process_time() - cpu)
                                 / steps, 1)}))


def measure(name, kind, setting, steps):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name,
           "--kind", kind, "--steps", str(steps)]
    result = common.json_child(cmd, env=dict(
        os.environ, TF_ENABLE_ONEDNN_OPTS=setting, TF_CPP_MIN_LOG_LEVEL="3"))
    if "error" in result:
        raise SystemExit(f"{name} {kind} (oneDNN {setting}) failed: "
                         f"{result['error']}")
    return result


def markdown(rows, args):
    out = [f"# Training steps with oneDNN on and off ({args.steps} steps, "
           f"batch 128, 32x32, {args.repeats} round(s), the median)", "",
           "Each process: one model, one setting (`TF_ENABLE_ONEDNN_OPTS`), "
           "a traced warm-up step, then the timed steps; ms/step is the "
           "median step's wall time, CPU ms the process's CPU time (all "
           "threads) per step. One process at a time: how two training "
           "processes sharing the cores fare is not measured here.",
           "",
           "| model | training | oneDNN on: ms/step (CPU ms) | "
           "off: ms/step (CPU ms) | on / off |", "|---|---|---:|---:|---:|"]
    for r in rows:
        on, off = r["on"], r["off"]
        out.append(f"| {r['model']} | {r['kind']} | {on['step_ms']} "
                   f"({on['cpu_ms_per_step']}) | {off['step_ms']} "
                   f"({off['cpu_ms_per_step']}) | "
                   f"{on['step_ms'] / off['step_ms']:.2f} |")
    return "\n".join(out) + "\n"


def main():
    import zoo
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=zoo.DEFAULT_MODELS)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--name", default="onednn_training")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.kind, args.steps)
    rows = []
    for name in args.models.split(","):
        for kind in args.kinds.split(","):
            runs = {s: [] for s in SETTINGS}
            for i in range(args.repeats):
                for s in (SETTINGS if i % 2 == 0 else SETTINGS[::-1]):
                    runs[s].append(measure(name, kind, s, args.steps))
            row = {"model": name, "kind": kind}
            for s, key in zip(SETTINGS, ("on", "off")):
                row[key] = {m: float(np.median([r[m] for r in runs[s]]))
                            for m in runs[s][0]}
                row[key + "_runs"] = runs[s]
            print(f"{name} {kind}: oneDNN on {row['on']['step_ms']} ms, "
                  f"off {row['off']['step_ms']} ms per step", flush=True)
            rows.append(row)
    common.save(args.name, {"steps": args.steps, "repeats": args.repeats,
                            "rows": rows})
    common.save_markdown(args.name, markdown(rows, args))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()
    main()
