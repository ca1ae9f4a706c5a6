"""Which int8 ops does XNNPACK leave outside? One tiny model per op.

Each model is ``Conv -> <op> -> Conv -> GlobalAveragePooling -> Dense`` at
16x16x8, converted to int8 by ``tfcompress.convert`` (post-training, float
input and output). A supported op gives one XNNPACK partition; an op the
delegate does not take stays outside and splits the graph in two.
Reports LiteRT on this host, and with ``--arm`` tflite-runtime 2.14 and
LiteRT in the emulated arm64 root.

    nice -n 10 .venv/bin/python benchmarks/xnnpack_op_probe.py [--arm]

Writes ``benchmarks/results/xnnpack_op_probe.{json,md}``.
"""

import argparse
import json
import os
import tempfile

import common
import numpy as np


def probes():
    import keras
    L, ops = keras.layers, keras.ops
    act = lambda name: (lambda x: L.Activation(name, name="probe")(x))
    return {
        "relu": act("relu"),
        "relu6": act("relu6"),
        "hard_swish": act("hard_swish"),
        "hard_sigmoid": act("hard_sigmoid"),
        "sigmoid": act("sigmoid"),
        "swish": act("swish"),
        "tanh": act("tanh"),
        "gelu": act("gelu"),
        "elu": act("elu"),
        "leaky_relu": lambda x: L.LeakyReLU(0.2, name="probe")(x),
        "prelu": lambda x: L.PReLU(shared_axes=[1, 2], name="probe")(x),
        "softmax": lambda x: L.Softmax(name="probe")(x),
        "max_pool": lambda x: L.MaxPooling2D(2, 1, "same", name="probe")(x),
        "average_pool": lambda x: L.AveragePooling2D(2, 1, "same",
                                                     name="probe")(x),
        "average_pool_2x2_valid": lambda x: L.AveragePooling2D(
            2, 2, "valid", name="probe")(x),
        "average_pool_global": lambda x: L.AveragePooling2D(
            16, name="probe")(x),
        "se_mean_mul": lambda x: L.Multiply(name="probe")(
            [x, L.Activation("sigmoid")(L.Dense(8)(L.Reshape((1, 1, 8))(
                L.GlobalAveragePooling2D()(x))))]),
        "se_keepdims_mul": lambda x: L.Multiply(name="probe")(
            [x, L.Activation("hard_sigmoid")(L.Conv2D(8, 1)(
                L.GlobalAveragePooling2D(keepdims=True)(x)))]),
        "add": lambda x: L.Add(name="probe")([x, L.Conv2D(8, 1)(x)]),
        "concat": lambda x: L.Concatenate(name="probe")(
            [x, L.Conv2D(8, 1)(x)]),
        "zero_pad": lambda x: L.ZeroPadding2D(1, name="probe")(x),
        "resize_nearest": lambda x: L.UpSampling2D(2, name="probe")(x),
        "resize_bilinear": lambda x: L.UpSampling2D(
            2, interpolation="bilinear", name="probe")(x),
        "transpose": lambda x: L.Permute((2, 1, 3), name="probe")(x),
        "depth_to_space": lambda x: L.Lambda(
            lambda t: ops.depth_to_space(t, 2) if hasattr(
                ops, "depth_to_space") else ops.reshape(t, (-1, 32, 32, 2)),
            name="probe")(x),
    }


def build(name, fn):
    import keras
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 8))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(i)
    x = fn(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(i, keras.layers.Dense(4, name="fc")(x), name=name)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arm", action="store_true")
    p.add_argument("--only", default="")
    a = p.parse_args()
    from tfcompress.bench.delegation import (delegation_report,
                                             outside_summary)
    from tfcompress.convert import convert
    rows, paths = [], {}
    calib = np.random.default_rng(0).random((16, 16, 16, 8), np.float32)
    tmp = tempfile.mkdtemp(prefix="xnnpack_probe_")
    wanted = [n for n in a.only.split(",") if n]
    for name, fn in probes().items():
        if wanted and name not in wanted:
            continue
        path = os.path.join(tmp, f"{name}.tflite")
        try:
            convert(build(name, fn), "int8", representative_data=calib,
                    strict=False, output_path=path, check_data=calib[:2])
        except Exception as e:
            rows.append({"probe": name, "runtime": "-", "error":
                         f"{type(e).__name__}: {str(e).splitlines()[0]}"
                         [:200]})
            print(name, rows[-1]["error"], flush=True)
            continue
        paths[name] = path
        r = delegation_report(path, runtime="ai_edge_litert")
        rows.append({"probe": name, "machine": "x86_64", **r})
        print(f"{name}: {r['partitions']} partition(s), outside "
              f"{outside_summary(r['ops_outside'])}", flush=True)
    if a.arm and paths:
        from tfcompress.bench.arm_delegation import arm_delegation
        for r in arm_delegation(paths, log=print):
            rows.append({"probe": r.pop("model"), **r})
    lines = ["# int8 ops and XNNPACK partitions",
             "", "Conv -> op -> Conv -> mean -> Dense, int8 "
             "(tfcompress.convert post-training).", "",
             "| op | runtime | machine | partitions | outside |",
             "|---|---|---|---:|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['probe']} | {r['runtime']} | - | - | "
                         f"{r['error']} |")
            continue
        lines.append(f"| {r['probe']} | {r['runtime']} "
                     f"{r['runtime_version']} | {r['machine']} | "
                     f"{r['partitions']} | "
                     f"{outside_summary(r['ops_outside'])} |")
    os.makedirs(common.RESULTS, exist_ok=True)
    name = "xnnpack_op_probe" + ("_" + a.only.replace(",", "_")
                                 if a.only else "")
    with open(os.path.join(common.RESULTS, name + ".json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(common.RESULTS, name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
