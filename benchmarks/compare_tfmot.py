"""tfcompress vs tfmot 0.8.1, side by side: dense -> prune (polynomial
decay to 80%) -> prune-preserving QAT -> int8 TFLite on the same
architecture, data, seed, epochs and schedule.

Each side runs in its own process started by this script, one after the
other for each model (``pipeline_side.py``; tfmot needs tf_keras), then
both int8 flatbuffers are timed with the same runtime (LiteRT, one
thread) by tfcompress' benchmark runner, alternating. Prints a Markdown
table with ours/tfmot per row and writes
``benchmarks/results/compare_tfmot.{json,md}``.

    .venv/bin/python benchmarks/compare_tfmot.py            # full Fashion-MNIST
    .venv/bin/python benchmarks/compare_tfmot.py --models lenet_300_100 --train-samples 6000
"""

import argparse
import os
import sys
import tempfile

import common

HERE = os.path.dirname(os.path.abspath(__file__))

ROWS = [  # (key, label, higher_is_better)
    ("dense_keras_accuracy", "dense Keras accuracy", True),
    ("pruned_keras_accuracy", "pruned (stripped) Keras accuracy", True),
    ("qat_keras_accuracy", "prune-preserving QAT Keras accuracy", True),
    ("tflite_accuracy", "int8 TFLite accuracy", True),
    ("float_op_count", "float ops in the int8 model", False),
    ("size_bytes", "int8 .tflite bytes", False),
    ("gzip_bytes", "int8 .tflite gzip bytes", False),
    ("int8_weight_sparsity", "sparsity of int8 weights (flatbuffer)", True),
    ("pruned_over_dense_step", "train step: pruned / dense", False),
    ("qat_over_dense_step", "train step: QAT / dense", False),
    ("dense_step_ms", "train step: dense (ms)", False),
    ("conversion_s", "conversion time (s)", False),
    ("p50_ms", "int8 TFLite p50 latency (ms, 1 thread)", False),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="seed_cnn,mobilenet_small,"
                                       "lenet_300_100")
    p.add_argument("--train-samples", type=int, default=None,
                   help="default: all 60,000")
    p.add_argument("--test-samples", type=int, default=None,
                   help="default: all 10,000")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--runs", type=int, default=300,
                   help="timed inferences per flatbuffer and repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--name", default="compare_tfmot",
                   help="results file name under benchmarks/results/")
    p.add_argument("--seeds", type=int, default=1,
                   help="train each side with seeds 0..N-1; accuracy rows "
                        "show mean ± std, latency is of seed 0's models")
    return p.parse_args(argv)


def run_side(side, model, args, out_dir, seed=0):
    cmd = [sys.executable, os.path.join(HERE, "pipeline_side.py"),
           "--side", side, "--model", model, "--out", out_dir,
           "--seed", str(seed),
           "--epochs", str(args.epochs),
           "--prune-epochs", str(args.prune_epochs),
           "--qat-epochs", str(args.qat_epochs)]
    for flag in ("train_samples", "test_samples"):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    print(f"[{model}] {side} seed {seed} ...", flush=True)
    res = common.json_child(cmd, env=env)
    if "error" in res:
        return res
    res["float_op_count"] = len(res["float_ops"])
    res["dense_step_ms"] = 1000 * res["dense_step_s"]
    return res


def aggregate(runs):
    """Mean of every numeric figure over seeds (``<key>_std`` too); the
    rest from the first seed."""
    import numpy as np
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    for key, value in ok[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [r[key] for r in ok if key in r]
            out[key] = value if len(set(vals)) == 1 else float(np.mean(vals))
            if len(vals) > 1:
                out[key + "_std"] = float(np.std(vals))
    out["seeds"] = [r["seed"] for r in ok]
    out["per_seed"] = ok
    return out


def _fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(results):
    lines = []
    for model, sides in results.items():
        ours, theirs = sides["tfcompress"], sides["tfmot"]
        lines += [f"### {model}", "",
                  "| | tfcompress | tfmot 0.8.1 | ours / tfmot |",
                  "|---|---|---|---|"]
        for key, label, _ in ROWS:
            a, b = ours.get(key), theirs.get(key)
            ratio = (f"{a / b:.3f}" if isinstance(a, (int, float)) and
                     isinstance(b, (int, float)) and b else "—")
            cells = [_fmt(v) + (f" ± {side[key + '_std']:.4f}"
                                if "accuracy" in key and key + "_std" in side
                                else "")
                     for v, side in ((a, ours), (b, theirs))]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
        for side, res in sides.items():
            if "qat_error" in res:
                lines.append(f"| {side} QAT | refused: {res['qat_error']}; "
                             f"int8 from {res['int8_from']} | | |")
            if "error" in res:
                lines.append(f"| {side} | failed: {res['error']} | | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as out_dir:
        for model in args.models.split(","):
            runs = {s: [] for s in ("tfcompress", "tfmot")}
            for seed in range(args.seeds):
                for s in runs:
                    runs[s].append(run_side(s, model, args, out_dir, seed))
            paths = [r[0]["tflite_path"] for r in runs.values()
                     if "tflite_path" in r[0]]
            p50 = (common.alternating_p50(paths, args.runs, args.repeats)
                   if paths else {})
            for r in runs.values():
                if "tflite_path" in r[0]:
                    r[0]["p50_ms"] = p50[r[0]["tflite_path"]]
                for one in r:
                    one.pop("tflite_path", None)
            results[model] = {s: aggregate(r) for s, r in runs.items()}
    table = markdown(results)
    common.save(args.name, {"args": vars(args), "models": results})
    path = os.path.join(common.RESULTS, f"{args.name}.md")
    with open(path + ".tmp", "w") as f:
        f.write(table + "\n")
    os.replace(path + ".tmp", path)
    print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
