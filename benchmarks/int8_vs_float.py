"""int8 vs float32 TFLite latency, single thread, same run; plus the
spread of p50 over three repeats (repeatability).

Weights are random (latency does not depend on training).

    .venv/bin/python benchmarks/int8_vs_float.py
"""

import argparse
import os
import tempfile

import common  # noqa: F401
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import keras
    from tfcompress.bench import benchmark_model
    from tfcompress.convert import convert
    from tfcompress.models import mobilenet_small, seed_cnn
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((100, 28, 28, 1), dtype=np.float32)
    out = {}
    tmp = tempfile.mkdtemp()
    for build in (seed_cnn, mobilenet_small):
        m = build()
        paths = {}
        for mode in ("float32", "int8"):
            paths[mode] = os.path.join(tmp, f"{m.name}_{mode}.tflite")
            convert(m, mode, representative_data=x, output_path=paths[mode])
        p50 = {mode: [] for mode in paths}
        for _ in range(args.repeats):
            for mode, p in paths.items():
                r = benchmark_model(p, runs=args.runs, threads=1)
                p50[mode].append(r["latency"]["p50_ms"])
        spread = {mode: (max(v) - min(v)) / min(v) for mode, v in
                  p50.items()}
        out[m.name] = {
            "p50_ms": p50,
            "int8_speedup": float(np.median(p50["float32"]) /
                                  np.median(p50["int8"])),
            "p50_spread_over_repeats": spread,
            "runtime": r["environment"]["runtime"] + " " +
            r["environment"]["runtime_version"]}
    common.save("int8_vs_float", out)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
