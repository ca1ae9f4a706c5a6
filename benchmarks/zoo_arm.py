"""keras.applications int8 flatbuffers on arm64: do tflite-runtime 2.14 and
LiteRT's aarch64 wheel (Debian bookworm arm64 under qemu) give the x86
LiteRT outputs?

By default builds MobileNetV2 (alpha 0.35), MobileNetV3Small (alpha 0.75),
EfficientNetB0 and ResNet50 at 32x32x3 with weights=None, fits each
briefly on a few hundred Fashion-MNIST images (resized to 32x32x3) and
converts it with ``tfcompress.convert.convert(model, "int8", strict=True)``
(post-training int8, int8 input and output). A model that tfcompress does
not convert is converted with the TFLite converter's own int8
post-training quantization instead, and labelled so. ``--flatbuffers DIR``
checks the ``.tflite`` files of DIR instead (e.g. QAT flatbuffers; a
``<file>.tflite.json`` beside one gives its input pixel scale, as
``benchmarks/zoo.py --keep DIR`` writes).

Counts, per model and arm64 runtime, the int8 outputs equal to x86's, one
quantization step off, or further off, on ``--samples`` test images.
``--x86-tflite-runtime`` also runs tflite-runtime 2.14 on x86 (in a venv
of its own, created from PyPI the first time) with XNNPACK and without,
and compares arm64 tflite-runtime 2.14 with it, and it with x86 LiteRT:
an ARM difference and a runtime-version difference apart.

    nice -n 10 .venv/bin/python benchmarks/zoo_arm.py
    nice -n 10 .venv/bin/python benchmarks/zoo_arm.py --flatbuffers DIR
    nice -n 10 .venv/bin/python benchmarks/zoo_arm.py --flatbuffers DIR \
        --x86-tflite-runtime
"""

import argparse
import glob
import os
import shutil
import tempfile
import time

import common
import numpy as np

ZOO = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "ResNet50")
SHAPE = (32, 32, 3)
# Models with a built-in Rescaling layer expect pixels in [0, 255].
PIXEL_RANGE = {"MobileNetV3Small": 255.0, "EfficientNetB0": 255.0}


def build(name, classes=10):
    import keras
    apps = keras.applications
    kw = dict(input_shape=SHAPE, weights=None, classes=classes)
    if name == "MobileNetV2":
        return apps.MobileNetV2(alpha=0.35, **kw)
    if name == "MobileNetV3Small":
        return apps.MobileNetV3Small(alpha=0.75, minimalistic=False, **kw)
    if name == "EfficientNetB0":
        return apps.EfficientNetB0(**kw)
    if name == "ResNet50":
        return apps.ResNet50(**kw)
    raise ValueError(f"unknown model {name}; choose from {', '.join(ZOO)}")


def images(x, shape=SHAPE):
    """Fashion-MNIST (n, 28, 28, 1) in [0, 1] as (n, h, w, c)."""
    import tensorflow as tf
    x = tf.image.resize(x, shape[:2]).numpy()
    return np.clip(np.repeat(x, shape[2], axis=-1), 0.0, 1.0).astype(
        np.float32)


def brief_fit(model, x, y, epochs):
    """A few hundred images: enough for batch-norm statistics and weights
    that are not the initial ones; accuracy is not the point."""
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5   # moving statistics follow the data
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


def tflite_ptq(model, calib):
    """The TFLite converter's own int8 post-training quantization."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calib[i:i + 1]]
                                           for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def make_flatbuffer(name, out_dir, data, train_samples, epochs, log):
    """Builds, briefly fits and converts one model; returns ``(path or
    None, entry)``. Reuses ``out_dir/<name>_int8.tflite`` (and its
    ``.json`` entry) when a previous run left them there."""
    import json
    import keras
    from tfcompress.convert import convert
    path = os.path.join(out_dir, f"{name}_int8.tflite")
    meta = path + ".json"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            entry = json.load(f)
        log(f"{name}: reusing {path}")
        return path, entry
    (xt, yt), _ = data
    t0 = time.time()
    keras.utils.set_random_seed(0)
    model = build(name)
    scale = PIXEL_RANGE.get(name, 1.0)
    x_fit = images(xt[:train_samples]) * scale
    brief_fit(model, x_fit, yt[:train_samples], epochs)
    calib = x_fit[:200]
    entry = {"input_scale": scale, "params": int(model.count_params())}
    try:
        r = convert(model, "int8", representative_data=calib,
                    input_type="int8", output_type="int8", strict=True,
                    output_path=path)
        entry["source"] = "tfcompress.convert int8 (PTQ, strict)"
        entry["fully_integer"] = r.report["fully_integer"]
    except Exception as e:
        msg = " ".join(str(e).split())[:400]
        entry["tfcompress_convert_error"] = f"{type(e).__name__}: {msg}"
        log(f"{name}: tfcompress.convert failed: {msg}")
        try:
            with open(path, "wb") as f:
                f.write(tflite_ptq(model, calib))
            entry["source"] = ("TFLite converter int8 PTQ (tfcompress."
                               "convert failed, see error)")
        except Exception as e2:
            entry["source"] = None
            entry["tflite_converter_error"] = " ".join(
                str(e2).split())[:400]
            log(f"{name}: TFLite converter failed too: {e2}")
            return None, entry
    entry["size_bytes"] = os.path.getsize(path)
    entry["build_seconds"] = round(time.time() - t0, 1)
    with open(meta, "w") as f:
        json.dump(entry, f)
    log(f"{name}: {entry['source']}, {entry['size_bytes']} bytes, "
        f"{entry['build_seconds']} s")
    keras.backend.clear_session()
    return path, entry


def inputs_for(path, xv, scale=None):
    """Test images shaped for the model; pixel range [0, scale], or for an
    int8-input model of unknown range, its whole input range."""
    from tfcompress.inspect.model_reader import read_model
    with open(path, "rb") as f:
        graph = read_model(f.read())["subgraphs"][0]
    t = graph["tensors"][graph["inputs"][0]]
    x = images(xv, tuple(t["shape"][1:]))
    if scale is not None:
        return x * scale
    q = t["quantization"]
    if t["dtype"] == "INT8" and q and q["scale"]:
        lo = (-128 - q["zero_point"][0]) * q["scale"][0]
        hi = (127 - q["zero_point"][0]) * q["scale"][0]
        return lo + x * (hi - lo)
    return x


def sidecar_scale(path):
    """The input pixel scale that ``path + ".json"`` gives (as
    benchmarks/zoo.py --keep writes it), else None."""
    import json
    try:
        with open(path + ".json") as f:
            return float(json.load(f)["input_scale"])
    except (OSError, KeyError, ValueError):
        return None


def markdown(rows, built, command, samples, cpu):
    from tfcompress.bench.cross_check import (format_same_runtime_table,
                                              format_table)
    out = ["# keras.applications int8 flatbuffers on arm64 vs x86", "",
           f"`{command}`", "",
           f"{samples} Fashion-MNIST test images (resized to the model's "
           "input); x86 reference: LiteRT on the host; arm64: Debian "
           f"bookworm arm64 under qemu user-mode emulation ({cpu}).", "",
           format_table(rows), ""]
    if any(r.get("x86_same_runtime") for r in rows):
        out += ["## The same runtime on x86", "",
                "arm64 tflite-runtime against tflite-runtime of the same "
                "version on this x86 host (equal / off by one / worse: "
                "against it as it runs by default; then against its "
                "built-in kernels, XNNPACK off), and that x86 run against "
                "x86 LiteRT (XNNPACK against XNNPACK, built-in kernels "
                "against built-in kernels).", "",
                format_same_runtime_table(rows), ""]
    if built:
        out += ["## Flatbuffers", "", "| model | source | size (bytes) | "
                "tfcompress.convert error |", "|---|---|---:|---|"]
        for name, entry in built.items():
            err = entry.get("tfcompress_convert_error", "")
            out.append(f"| {name} | {entry.get('source')} | "
                       f"{entry.get('size_bytes', '-')} | "
                       f"{err.replace('|', '/')} |")
        out.append("")
    out += ["## Op versions", ""]
    seen = set()
    for r in rows:
        if r["model"] in seen:
            continue
        seen.add(r["model"])
        ops = ", ".join(f"{k} v{v}" for k, v in r["op_versions"].items())
        out.append(f"- {r['model']}: {ops}")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flatbuffers", help="check the .tflite files of this "
                    "folder instead of building the zoo")
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--train-samples", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--runtimes", default="tflite_runtime,ai_edge_litert")
    ap.add_argument("--cpu", default=None, help="arm64 CPU qemu emulates "
                    "(default cortex-a72, a Raspberry Pi 4's)")
    ap.add_argument("--keep", help="write the built flatbuffers here (and "
                    "reuse those already there) instead of a temporary "
                    "folder")
    ap.add_argument("--x86-tflite-runtime", action="store_true",
                    help="also run tflite-runtime 2.14 on x86 (XNNPACK on "
                    "and off; a venv of its own, created from PyPI the "
                    "first time) and compare arm64 tflite-runtime with it")
    ap.add_argument("--name", default="zoo_arm")
    args = ap.parse_args()
    from tfcompress.bench import arm_root
    from tfcompress.bench.cross_check import cross_check, format_table
    from tfcompress.utils.atomic import atomic_write_text

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    cpu = args.cpu or arm_root.DEFAULT_CPU
    root = arm_root.build_root()
    x86_python = None
    if args.x86_tflite_runtime:
        from tfcompress.bench import x86_tflite_runtime
        x86_python = x86_tflite_runtime.build_venv()
    data = common.fashion_mnist(args.train_samples, args.samples)
    xv = data[1][0]
    command = "nice -n 10 .venv/bin/python benchmarks/zoo_arm.py" + (
        "".join(f" {a}" for a in os.sys.argv[1:]))
    out_dir = args.keep or tempfile.mkdtemp(prefix="zoo_arm_")
    os.makedirs(out_dir, exist_ok=True)
    if args.flatbuffers:
        paths = sorted(glob.glob(os.path.join(args.flatbuffers, "*.tflite")))
        if not paths:
            raise SystemExit(f"no .tflite files in {args.flatbuffers}")
        from tfcompress.bench.cross_check import output_step
        skipped = [p for p in paths if output_step(p) is None]
        for p in skipped:
            log(f"skipping {os.path.basename(p)}: its output is computed "
                "in float (no int8 step to compare)")
        paths = [p for p in paths if p not in skipped]
        todo = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        given = dict(zip(todo, paths))
    else:
        todo = args.models.split(",")
    built, rows = {}, []
    try:
        for name in todo:
            if args.flatbuffers:
                path, scale = given[name], sidecar_scale(given[name])
            else:
                path, entry = make_flatbuffer(name, out_dir, data,
                                              args.train_samples,
                                              args.epochs, log)
                built[name] = entry
                scale = entry["input_scale"]
                if path is None:
                    continue
            log(f"cross-checking {name}")
            t0 = time.time()
            rows += cross_check({name: path}, inputs_for(path, xv, scale),
                                root=root, cpu=cpu, log=log,
                                runtimes=tuple(args.runtimes.split(",")),
                                x86_python=x86_python)
            log(f"{name}: {round(time.time() - t0)} s")
            # after every model, so an interrupted run keeps its figures
            common.save(args.name, {"samples": args.samples, "cpu": cpu,
                                    "rows": rows, "flatbuffers": built})
            atomic_write_text(os.path.join(common.RESULTS,
                                           f"{args.name}.md"),
                              markdown(rows, built, command, args.samples,
                                       cpu))
        print(format_table(rows))
        if x86_python:
            from tfcompress.bench.cross_check import \
                format_same_runtime_table
            print(format_same_runtime_table(rows))
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
