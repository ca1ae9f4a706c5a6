"""Runtime truth for packed 4-bit weights: the seed CNN (random weights)
with 4-bit and with 8-bit weights, converted to int8 TFLite, timed by the
benchmark runner (p50 latency, peak RSS) on LiteRT with and without
XNNPACK, plus the memory LiteRT takes when it loads each model (VmRSS
after ``allocate_tensors`` and one inference minus before: does it unpack
INT4 at load?). With ``--arm`` also tflite-runtime 2.14 in the emulated
arm64 root (docs/benchmarking_arm.md), if the root is built.

    .venv/bin/python benchmarks/int4_runtime.py [--arm]

Writes benchmarks/results/int4_runtime.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import common

LOAD_PROBE = r"""
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
path, xnn = sys.argv[1], sys.argv[2] == "1"
kw = {} if xnn else {"experimental_op_resolver_type":
                     OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
np.zeros(1)
before = rss()
it = Interpreter(model_path=path, **kw)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
print(round(rss() - before, 2))
"""


def flatbuffers(folder):
    import keras
    import numpy as np
    from tfcompress import quantize
    from tfcompress.convert import convert
    from tfcompress.models import seed_cnn
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    variants = {
        "8-bit weights": (8, None),
        "4-bit weights": (4, None),
        # bn1's per-channel affine (a 1x1 DEPTHWISE_CONV_2D) stays 8-bit
        "4-bit conv1, conv2, fc1, logits": (8, {"conv1": 4, "conv2": 4,
                                                "fc1": 4, "logits": 4}),
    }
    paths = {}
    for name, (bits, layer_bits) in variants.items():
        keras.utils.set_random_seed(0)
        qat = quantize.quantize_model(seed_cnn(),
                                      quantize.NBitScheme(bits, 8),
                                      layer_bits=layer_bits)
        qat(x, training=True)
        path = os.path.join(folder, f"seed_cnn_{len(paths)}.tflite")
        r = convert(qat, "int8", representative_data=x, output_path=path)
        paths[name] = (path, r.report)
    return paths


def run_runner(path, xnnpack, runs):
    from tfcompress.bench import runner
    cmd = [sys.executable, runner.__file__, path, "--runs", str(runs),
           "--warmup-runs", "20"] + ([] if xnnpack else ["--no-xnnpack"])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    return {"p50_ms": round(r["latency"]["p50_ms"], 4),
            "peak_rss_mb": r["peak_rss_mb"], "raw": r}


def load_delta(path, xnnpack):
    out = subprocess.run([sys.executable, "-c", LOAD_PROBE, path,
                          "1" if xnnpack else "0"], capture_output=True,
                         text=True, check=True)
    return float(out.stdout.split()[-1])


def litert_outputs(path, x):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path)
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    out = []
    for s in x:
        it.set_tensor(d["index"], s[None])
        it.invoke()
        out.append(it.get_tensor(o["index"])[0])
    return out


def arm_tflite_runtime(path, folder):
    """Runs ``path`` on tflite-runtime 2.14 under qemu; its outputs on 8
    inputs against x86 LiteRT's."""
    import numpy as np
    from tfcompress.bench import arm_root
    if not os.path.exists(os.path.join(arm_root.DEFAULT_ROOT,
                                       ".tfcompress-ready")):
        return {"ran": False, "error": "arm64 root not built"}
    x = np.random.default_rng(1).random((8, 28, 28, 1), dtype=np.float32)
    data = os.path.join(folder, "x.npz")
    outputs = os.path.join(folder, "arm_outputs.npy")
    np.savez(data, x=x)
    p = arm_root.run_runner(arm_root.DEFAULT_ROOT,
                            [path, "--runtime", "tflite_runtime", "--runs",
                             "3", "--warmup-runs", "1", "--data", data,
                             "--outputs", outputs])
    if p.returncode != 0:
        return {"ran": False, "error": " ".join(
            (p.stderr or p.stdout).split())[-300:]}
    r = json.loads(p.stdout)
    env = r.get("environment", {})
    ref = np.stack(litert_outputs(path, x))
    got = np.load(outputs).reshape(ref.shape)
    return {"ran": True, "max_abs_diff_vs_x86_litert": round(float(
        np.abs(got.astype(np.float64) - ref).max()), 5), "runtime": env.get("runtime"),
            "version": env.get("runtime_version"),
            "machine": env.get("machine"), "emulated": env.get("emulated")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--arm", action="store_true")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant, (path, rep) in flatbuffers(tmp).items():
            kernel_types = sorted({w["dtype"] for w in rep["weights"]
                                   if len(w["shape"]) >= 2})
            row = {"size_bytes": rep["size_bytes"],
                   "gzip_bytes": rep["gzip_bytes"],
                   "kernel_dtypes": kernel_types,
                   "op_versions": rep["op_versions"],
                   "runtime_compatibility": rep["runtime_compatibility"]}
            for name, xnn in (("xnnpack", True), ("builtin", False)):
                r = run_runner(path, xnn, args.runs)
                r.pop("raw")
                r["load_rss_delta_mb"] = load_delta(path, xnn)
                row[name] = r
            if args.arm:
                row["tflite_runtime_2_14_arm64"] = arm_tflite_runtime(path,
                                                                      tmp)
            rows[variant] = row
            print(variant, json.dumps(row), flush=True)
    common.save("int4_runtime", {"models": rows})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
