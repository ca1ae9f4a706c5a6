"""Harness overhead: the runner's reported mean latency vs a bare
``invoke()`` loop on the same interpreter, in one run.

    .venv/bin/python benchmarks/harness_overhead.py
"""

import argparse
import time

import common  # noqa: F401  (path, env)
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    import tensorflow as tf
    from tfcompress.bench import runner
    from tfcompress.models import seed_cnn
    m = seed_cnn()
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    path = "/tmp/tfcompress_harness_seed_cnn.tflite"
    with open(path, "wb") as f:
        f.write(conv.convert())
    rows = []
    for _ in range(3):
        harness = runner.benchmark(path, runs=args.runs, warmup_runs=10)
        rt, ver, Interpreter, _ = runner.load_runtime("auto")
        it = Interpreter(model_path=path, num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        x = np.random.default_rng(0).random(d["shape"]).astype(np.float32)
        for _ in range(10):
            it.set_tensor(d["index"], x)
            it.invoke()
        t0 = time.perf_counter()
        for _ in range(args.runs):
            it.set_tensor(d["index"], x)
            it.invoke()
        bare = (time.perf_counter() - t0) / args.runs * 1000
        rows.append({"harness_mean_ms": harness["latency"]["mean_ms"],
                     "bare_mean_ms": bare,
                     "ratio": harness["latency"]["mean_ms"] / bare})
    common.save("harness_overhead", {
        "model": "seed_cnn float32", "runs": args.runs, "repeats": rows,
        "median_ratio": float(np.median([r["ratio"] for r in rows]))})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
