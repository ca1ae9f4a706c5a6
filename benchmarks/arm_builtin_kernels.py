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

``--single-ops`` instead builds one small int8 flatbuffer per op kind
(3x3, strided and 1x1 convolution, depthwise, dense, ADD, MUL, MEAN,
pooling, activations, concatenation; 8x8x16 inputs, random weights,
post-training int8 on 64 random inputs) and compares them on those 64
inputs, with x86 LiteRT's XNNPACK outputs as a fifth configuration: how
often one op's kernels disagree, before a network amplifies it.
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
XNNPACK = "x86 LiteRT 2.3 XNNPACK"
PAIRS = (("arm64 tflite_runtime 2.14", "x86 tflite_runtime 2.14"),
         ("arm64 LiteRT 2.3", "x86 LiteRT 2.3"),
         ("arm64 tflite_runtime 2.14", "arm64 LiteRT 2.3"),
         ("x86 tflite_runtime 2.14", "x86 LiteRT 2.3"))
SINGLE_OP_PAIRS = PAIRS + (("arm64 tflite_runtime 2.14", XNNPACK),
                           ("x86 LiteRT 2.3", XNNPACK))


def single_op_models():
    """``{name: keras.Model}``: one op kind each on an 8x8x16 input."""
    import keras
    L = keras.layers

    def model(body):
        keras.utils.set_random_seed(1)
        x = keras.Input((8, 8, 16))
        return keras.Model(x, body(x))

    bodies = {
        "conv3x3": lambda x: L.Conv2D(16, 3, padding="same")(x),
        "conv3x3_relu6": lambda x: L.ReLU(6.0)(
            L.Conv2D(16, 3, padding="same")(x)),
        "conv3x3_stride2": lambda x: L.Conv2D(16, 3, 2, "same")(x),
        "conv1x1": lambda x: L.Conv2D(32, 1)(x),
        "depthwise3x3": lambda x: L.DepthwiseConv2D(3, padding="same")(x),
        "depthwise3x3_stride2": lambda x: L.DepthwiseConv2D(
            3, 2, "same")(x),
        "dense": lambda x: L.Dense(10)(L.Flatten()(x)),
        "conv1x1_add": lambda x: L.Add()([x, L.Conv2D(16, 1)(x)]),
        "conv1x1_multiply": lambda x: L.Multiply()([x, L.Conv2D(16, 1)(x)]),
        "global_average_pool": lambda x: L.GlobalAveragePooling2D()(x),
        "average_pool2x2": lambda x: L.AveragePooling2D(2)(x),
        "max_pool2x2": lambda x: L.MaxPooling2D(2)(x),
        "sigmoid": lambda x: L.Activation("sigmoid")(x),
        "hard_swish": lambda x: L.Activation("hard_swish")(x),
        "swish": lambda x: L.Activation("swish")(x),
        "concatenate": lambda x: L.Concatenate()([x, L.Conv2D(8, 1)(x)]),
    }
    return {name: model(body) for name, body in bodies.items()}


def write_single_ops(out_dir, samples):
    """Converts :func:`single_op_models` to int8 in ``out_dir``; returns
    ``(paths, inputs)``."""
    from tfcompress.convert import convert
    x = np.random.default_rng(0).normal(
        size=(samples, 8, 8, 16)).astype(np.float32)
    paths = []
    for name, model in single_op_models().items():
        path = os.path.join(out_dir, f"{name}.tflite")
        convert(model, "int8", representative_data=x, output_path=path,
                check_data=None)
        paths.append(path)
    return paths, x


def built_in_outputs(path, data, tmp, root, site, python, cpu):
    """``{config: outputs}``: the four configurations with XNNPACK off,
    and x86 LiteRT with XNNPACK."""
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
    for config, xnnpack in (("x86 LiteRT 2.3", False), (XNNPACK, True)):
        out[config] = runner.benchmark(
            path, data, runtime="ai_edge_litert", warmup_runs=0, runs=1,
            xnnpack=xnnpack, return_outputs=True)["_outputs"]
    return out


def markdown(rows, command, samples, cpu, single_ops=False):
    inputs = (f"{samples} random normal 8x8x16 inputs, one small int8 "
              "flatbuffer per op kind" if single_ops else
              f"{samples} Fashion-MNIST test images (resized to the "
              "model's input)")
    title = ("One op at a time: int8 kernels on arm64 vs x86, "
             "tflite-runtime 2.14 vs LiteRT 2.3 (built-in kernels unless "
             "XNNPACK is named)" if single_ops else
             "Built-in int8 kernels (XNNPACK off): arm64 vs x86, "
             "tflite-runtime 2.14 vs LiteRT 2.3")
    out = [f"# {title}", "", f"`{command}`", "",
           f"{inputs}; arm64: Debian bookworm arm64 under qemu user-mode "
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
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--flatbuffers")
    source.add_argument("--single-ops", action="store_true",
                        help="one small flatbuffer per op kind instead")
    ap.add_argument("--models", help="comma-separated file stems (default: "
                    "every .tflite of --flatbuffers)")
    ap.add_argument("--samples", type=int, default=200,
                    help="test images (with --single-ops: random inputs, "
                    "64 unless given)")
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--name")
    args = ap.parse_args()
    if args.single_ops and "--samples" not in os.sys.argv:
        args.samples = 64
    args.name = args.name or ("arm_op_kernels" if args.single_ops
                              else "arm_builtin_kernels")
    from tfcompress.bench import arm_root, x86_tflite_runtime
    from tfcompress.bench.cross_check import (count_steps, output_step,
                                              quantize_inputs)
    from tfcompress.utils.atomic import atomic_write_text
    cpu = args.cpu or arm_root.DEFAULT_CPU
    root = arm_root.build_root()
    site = arm_root.build_litert_site(root)
    python = x86_tflite_runtime.build_venv()
    tmp_dir = tempfile.TemporaryDirectory()
    if args.single_ops:
        paths, xv = write_single_ops(tmp_dir.name, args.samples)
    else:
        xv = common.fashion_mnist(1, args.samples)[1][0]
        paths = sorted(glob.glob(os.path.join(args.flatbuffers,
                                              "*.tflite")))
    if args.models:
        keep = set(args.models.split(","))
        paths = [p for p in paths
                 if os.path.splitext(os.path.basename(p))[0] in keep]
    paths = [p for p in paths if output_step(p) is not None]
    if not paths:
        raise SystemExit(f"no int8-output .tflite files to check in "
                         f"{args.flatbuffers or tmp_dir.name}")
    command = "nice -n 10 .venv/bin/python benchmarks/arm_builtin_kernels.py" \
        + "".join(f" {a}" for a in os.sys.argv[1:])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            name = os.path.splitext(os.path.basename(path))[0]
            t0 = time.time()
            data = os.path.join(tmp, "x.npz")
            x = xv if args.single_ops else zoo_arm.inputs_for(
                path, xv, zoo_arm.sidecar_scale(path))
            np.savez(data, x=quantize_inputs(path, x))
            outputs = built_in_outputs(path, data, tmp, root, site, python,
                                       cpu)
            for a, b in SINGLE_OP_PAIRS if args.single_ops else PAIRS:
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
                              markdown(rows, command, args.samples, cpu,
                                       args.single_ops))
    tmp_dir.cleanup()


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
