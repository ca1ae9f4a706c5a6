"""Is int8 faster? keras.applications models as float32, as the TFLite
converter's own int8 and as tfcompress int8 (post-training and QAT), timed
side by side in one run, alternating, median of rounds, with XNNPACK on
and off at 1 and 2 threads; each row says how XNNPACK partitions the
flatbuffer and which ops it leaves outside.

Weights are random (latency does not depend on training); the
BatchNormalization statistics are set from random inputs so activations
have realistic ranges (an uncalibrated random model has near-zero
activations, whose int8 scales XNNPACK refuses for some ADD ops).

    nice -n 10 .venv/bin/python benchmarks/int8_speed.py
    nice -n 10 .venv/bin/python benchmarks/int8_speed.py --size 96 \\
        --models MobileNetV3Small,MobileNetV2 --rounds 3 --runs 30

Writes benchmarks/results/int8_speed[_<size>].json and .md.
"""

import argparse
import os
import tempfile

import common
import numpy as np

from tfcompress.quiet import converter_output_silenced

# name -> keras.applications kwargs
MODELS = {
    "MobileNetV3Small": {},
    "MobileNetV2": {"alpha": 0.35},
    "MobileNetV3Large": {},
    "EfficientNetB0": {},
    "ResNet50": {},
}
VARIANTS = ("float32", "converter_int8", "tfcompress_int8",
            "tfcompress_qat_int8")
CONFIGS = ((1, True), (2, True), (1, False), (2, False))


def build(name, size, seed=0):
    import keras
    from tfcompress.models.applications import rescales_input
    from tfcompress.quantize.zoo import calibrate_batchnorm, zoo_inputs
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3),
        classifier_activation=None, **MODELS[name])
    raw = rescales_input(model)
    calibrate_batchnorm(model, zoo_inputs(model, 16, seed + 1, raw))
    return model, zoo_inputs(model, 64, seed + 2, raw)


def converter_int8(model, x):
    """The TFLite converter's own full-int8 post-training output (float
    input and output), without anything tfcompress adds."""
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [x[i:i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with converter_output_silenced():
        return conv.convert()


def converter_float(model):
    import tensorflow as tf
    with converter_output_silenced():
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def qat_model(model, x, steps):
    import keras
    from tfcompress.quantize import quantize_model
    qat = quantize_model(model)
    qat.compile(keras.optimizers.Adam(1e-5),
                keras.losses.MeanSquaredError())
    y = model.predict(x, verbose=0)     # distill the float model's logits
    qat.fit(x[:steps * 8], y[:steps * 8], batch_size=8, epochs=1,
            verbose=0, shuffle=False)
    return qat


def flatbuffers(name, size, qat_steps, folder):
    """Writes the four variants of ``name``; returns {variant: path}."""
    from tfcompress.convert import convert
    model, x = build(name, size)
    blobs = {"float32": lambda: converter_float(model),
             "converter_int8": lambda: converter_int8(model, x),
             "tfcompress_int8": lambda: convert(
                 model, "int8", representative_data=x, strict=False,
                 check_samples=8).tflite_bytes}
    if qat_steps:
        blobs["tfcompress_qat_int8"] = lambda: convert(
            qat_model(model, x, qat_steps), "int8", strict=False,
            check_data=x[:8]).tflite_bytes
    paths = {}
    for variant, make in blobs.items():
        path = os.path.join(folder, f"{name}_{size}_{variant}.tflite")
        with open(path, "wb") as f:
            f.write(make())
        paths[variant] = path
        print(f"  {variant}: {os.path.getsize(path) / 1024:.0f} KB",
              flush=True)
    return paths


def delegation(path):
    from tfcompress.bench.delegation import (delegation_report,
                                             outside_summary)
    r = delegation_report(path)
    outside = [o for o in r["ops_outside"]
               if o["op"] not in ("QUANTIZE", "DEQUANTIZE")]
    return {"partitions": r["partitions"], "total_ops": r["total_ops"],
            "ops_outside": outside_summary(outside),
            "delegated_mac_share": round(r["delegated_mac_share"], 4)}


def measure(name, args, folder):
    print(f"{name} at {args.size}x{args.size}", flush=True)
    paths = flatbuffers(name, args.size, args.qat_steps, folder)
    rows = {v: {"model": name, "variant": v,
                "size_kb": round(os.path.getsize(p) / 1024),
                **delegation(p)} for v, p in paths.items()}
    for threads, xnnpack in args.configs:
        key = f"p50_ms_{threads}t_{'xnnpack' if xnnpack else 'builtin'}"
        p50 = common.alternating_p50(list(paths.values()), runs=args.runs,
                                     repeats=args.rounds, threads=threads,
                                     xnnpack=xnnpack)
        for v, p in paths.items():
            rows[v][key] = round(p50[p], 3)
        print(f"  {key}: " + ", ".join(f"{v} {p50[p]:.2f}"
                                       for v, p in paths.items()),
              flush=True)
    base = rows["converter_int8"]
    for row in rows.values():
        for key in [k for k in row if k.startswith("p50_ms_")]:
            row["speedup_vs_converter_int8_" + key[7:]] = round(
                base[key] / row[key], 2)
    return list(rows.values())


def markdown(rows, args):
    keys = [f"p50_ms_{t}t_{'xnnpack' if x else 'builtin'}"
            for t, x in args.configs]
    head = (["model", "variant", "KB", "partitions", "ops outside XNNPACK"]
            + [k[7:].replace("_", " ") + " ms" for k in keys]
            + ["vs converter int8 (1t xnnpack)"])
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["variant"], str(r["size_kb"]),
                 str(r["partitions"]), r["ops_outside"]]
        cells += [f"{r[k]:.2f}" if k in r else "-" for k in keys]
        s = r.get("speedup_vs_converter_int8_1t_xnnpack")
        cells.append(f"{s:.2f}x" if s else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_configs(text):
    out = []
    for part in text.split(","):
        threads, _, runtime = part.partition(":")
        out.append((int(threads), runtime != "builtin"))
    return tuple(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated keras.applications names, of "
                         + ", ".join(MODELS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=5,
                    help="alternating rounds; the median is reported")
    ap.add_argument("--runs", type=int, default=50,
                    help="timed invocations per model per round")
    ap.add_argument("--qat-steps", type=int, default=3,
                    help="QAT steps on random data (0: no QAT row)")
    ap.add_argument("--configs", default="1:xnnpack,2:xnnpack,1:builtin,"
                    "2:builtin", help="threads:xnnpack|builtin, ...")
    args = ap.parse_args()
    args.configs = parse_configs(args.configs)
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; use "
                 f"{', '.join(MODELS)}")
    rows = []
    suffix = "" if args.size == 224 else f"_{args.size}"
    with tempfile.TemporaryDirectory() as folder:
        for name in names:     # results are written after every model
            rows += measure(name, args, folder)
            table = markdown(rows, args)
            print(table)
            common.save(f"int8_speed{suffix}", {
                "size": args.size, "rounds": args.rounds, "runs": args.runs,
                "qat_steps": args.qat_steps, "models": names,
                "configs": [{"threads": t, "xnnpack": x}
                            for t, x in args.configs],
                "rows": rows})
            common.save_markdown(f"int8_speed{suffix}", table)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
