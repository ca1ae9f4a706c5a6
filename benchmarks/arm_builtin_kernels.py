"""Do TFLite's built-in int8 kernels (XNNPACK off) give the same outputs on
arm64 and x86, and across runtime versions?

For each flatbuffer of ``--flatbuffers DIR`` (as ``benchmarks/zoo_arm.py
--flatbuffers`` reads them), runs four configurations on the same
``--samples`` Fashion-MNIST test images: tflite-runtime 2.14 and LiteRT
2.3 with XNNPACK off, each on arm64 (the emulated root of
``tfcompress.bench.arm_root``) and on x86 (tflite-runtime 2.14 in the venv
of ``tfcompress.bench.x86_tflite_runtime``), and counts the int8 outputs
equal, one quantization step off, or further off, pair by pair: the same
version on both machines, and both versions on the same machine.
(tflite-runtime 2.14 delegates nothing of these int8 models to XNNPACK,
so it runs its built-in kernels either way.)

    nice -n 10 .venv/bin/python benchmarks/arm_builtin_kernels.py \\
        --flatbuffers DIR --models mobilenet_v2_ptq_int8
"""

import argparse
import glob
import os
import tempfile
import time

import common
import numpy as np
import zoo_arm

CONFIGS = ("arm64 tflite_runtime 2.14", "arm64 LiteRT 2.3",
           "x86 tflite_runtime 2.14", "x86 LiteRT 2.3")
PAIRS = (("arm64 tflite_runtime 2.14", "x86 tflite_runtime 2.14"),
         ("arm64 LiteRT 2.3", "x86 LiteRT 2.3"),
         ("arm64 tflite_runtime 2.14", "arm64 LiteRT 2.3"),
         ("x86 tflite_runtime 2.14", "x86 LiteRT 2.3"))


def built_in_outputs(path, data, tmp, root, site, python, cpu):
    """``{config: outputs}`` of the four configurations, XNNPACK off."""
    from tfcompress.bench import arm_root, runner, x86_tflite_runtime
    base = [path, "--data", data, "--runs", "1", "--warmup-runs", "0",
            "--no-xnnpack"]
    out = {}
    for config, run in (
            ("arm64 tflite_runtime 2.14", lambda a: arm_root.run_runner(
                root, a + ["--runtime", "tflite_runtime"], cpu=cpu)),
            ("arm64 LiteRT 2.3", lambda a: arm_root.run_runner(
                root, a + ["--runtime", "ai_edge_litert"], site=site,
                cpu=cpu)),
            ("x86 tflite_runtime 2.14", lambda a: x86_tflite_runtime
             .run_runner(python, a + ["--runtime", "tflite_runtime"]))):
        npy = os.path.join(tmp, "outputs.npy")
        r = run(base + ["--outputs", npy])
        if r.returncode != 0:
            raise SystemExit(f"{config}: {arm_root.runner_error(r)}")
        out[config] = np.load(npy)
    out["x86 LiteRT 2.3"] = runner.benchmark(
        path, data, runtime="ai_edge_litert", warmup_runs=0, runs=1,
        xnnpack=False, return_outputs=True)["_outputs"]
    return out


def markdown(rows, command, samples, cpu):
    out = ["# Built-in int8 kernels (XNNPACK off): arm64 vs x86, "
           "tflite-runtime 2.14 vs LiteRT 2.3", "", f"`{command}`", "",
           f"{samples} Fashion-MNIST test images (resized to the model's "
           "input); arm64: Debian bookworm arm64 under qemu user-mode "
           f"emulation ({cpu}).", "",
           "| model | pair | equal | off by one | worse | total | within "
           "one step |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['a']} vs {r['b']} | {r['equal']} "
                   f"| {r['off_by_one']} | {r['worse']} | {r['total']} | "
                   f"{100 * r['within_one']:.2f}% |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flatbuffers", required=True)
    ap.add_argument("--models", help="comma-separated file stems (default: "
                    "every .tflite of --flatbuffers)")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--name", default="arm_builtin_kernels")
    args = ap.parse_args()
    from tfcompress.bench import arm_root, x86_tflite_runtime
    from tfcompress.bench.cross_check import (count_steps, output_step,
                                              quantize_inputs)
    from tfcompress.utils.atomic import atomic_write_text
    cpu = args.cpu or arm_root.DEFAULT_CPU
    root = arm_root.build_root()
    site = arm_root.build_litert_site(root)
    python = x86_tflite_runtime.build_venv()
    xv = common.fashion_mnist(1, args.samples)[1][0]
    paths = sorted(glob.glob(os.path.join(args.flatbuffers, "*.tflite")))
    if args.models:
        keep = set(args.models.split(","))
        paths = [p for p in paths
                 if os.path.splitext(os.path.basename(p))[0] in keep]
    paths = [p for p in paths if output_step(p) is not None]
    if not paths:
        raise SystemExit(f"no int8-output .tflite files to check in "
                         f"{args.flatbuffers}")
    command = "nice -n 10 .venv/bin/python benchmarks/arm_builtin_kernels.py" \
        + "".join(f" {a}" for a in os.sys.argv[1:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            name = os.path.splitext(os.path.basename(path))[0]
            t0 = time.time()
            data = os.path.join(tmp, "x.npz")
            x = zoo_arm.inputs_for(path, xv, zoo_arm.sidecar_scale(path))
            np.savez(data, x=quantize_inputs(path, x))
            outputs = built_in_outputs(path, data, tmp, root, site, python,
                                       cpu)
            for a, b in PAIRS:
                c = count_steps(outputs[a], outputs[b], output_step(path))
                c["within_one"] = (c["equal"] + c["off_by_one"]) / \
                    c["total"]
                rows.append({"model": name, "a": a, "b": b, **c})
                print(f"{name}: {a} vs {b}: {c['equal']} equal, "
                      f"{c['off_by_one']} off by one, {c['worse']} worse "
                      f"of {c['total']}", flush=True)
            print(f"{name}: {round(time.time() - t0)} s", flush=True)
            common.save(args.name, {"samples": args.samples, "cpu": cpu,
                                    "rows": rows})
            atomic_write_text(os.path.join(common.RESULTS,
                                           f"{args.name}.md"),
                              markdown(rows, command, args.samples, cpu))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
