"""How long int8 conversion takes: tfcompress's frozen inference function
vs the TFLite converter's own Keras path, side by side.

``tf.lite.TFLiteConverter.from_keras_model`` exports a Keras 3 model as a
SavedModel and reads it back; ``tfcompress.convert`` freezes the model's
inference function instead (:mod:`tfcompress.convert.frozen`). For each
keras.applications model (``weights=None``, 32x32x3, 10 classes) and each
of post-training int8 (the float model, 64 calibration images) and QAT
int8 (``quantize_model`` after 2 training steps), both paths convert the
same model with the same settings, twice in A-B-A-B order; the table
gives the faster of the two runs of each, the share of identical outputs
on 64 images and whether both flatbuffers carry a ``serving_default``
signature. ``convert s`` is the whole ``tfcompress.convert`` call
(stripping, conversion, report and numerical check).

    .venv/bin/python benchmarks/conversion_time.py
    .venv/bin/python benchmarks/conversion_time.py --models mobilenet_v2

Writes benchmarks/results/conversion_time.json and conversion_time.md.
"""

import argparse
import os
import sys
import time

import common  # noqa: F401  (quiet TensorFlow logs, sys.path)

MODELS = {
    "mobilenet_v2": ("MobileNetV2", {"alpha": 0.35}),
    "mobilenet_v3_small": ("MobileNetV3Small", {}),
    "efficientnet_b0": ("EfficientNetB0", {}),
    "resnet50": ("ResNet50", {}),
}


def build(name, size):
    import keras
    family, options = MODELS[name]
    keras.utils.set_random_seed(0)
    return getattr(keras.applications, family)(
        input_shape=(size, size, 3), weights=None, classes=10,
        classifier_activation=None, **options)


def qat_model(model, x):
    import keras
    import numpy as np
    from tfcompress.quantize import quantize_model
    qat = quantize_model(model)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    qat.fit(x[:32], np.arange(32) % 10, epochs=1, batch_size=16, verbose=0)
    return qat


def timed_conversion(make_converter, model, calib):
    """(seconds, flatbuffer) of one int8 conversion."""
    import tensorflow as tf
    from tfcompress.quiet import converter_output_silenced
    start = time.perf_counter()
    converter, extra = make_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calib[i:i + 1]]
                                                for i in range(len(calib)))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with converter_output_silenced():
        flat = converter.convert()
    flat = extra(flat)
    return time.perf_counter() - start, flat


def frozen_path(model):
    from tfcompress.convert.frozen import add_signature, inference_converter
    converter, inputs, outputs = inference_converter(model)
    return converter, lambda flat: add_signature(flat, inputs, outputs)


def savedmodel_path(model):
    from tfcompress.convert.frozen import keras_converter
    return keras_converter(model), lambda flat: flat


def outputs(flat, x):
    """The flatbuffer's outputs on ``x`` and whether it has a signature."""
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    interp, _ = litert_interpreter(flat)
    return run_flatbuffer(interp, x), bool(interp.get_signature_list())


def measure(name, kind, model, x):
    from tfcompress.convert import convert, strip_training_wrappers
    stripped = strip_training_wrappers(model)
    calib = x if kind == "ptq_int8" else x[:8]
    times = {"frozen": [], "savedmodel": []}
    flats = {}
    for _ in range(2):
        for path, make in (("savedmodel", savedmodel_path),
                           ("frozen", frozen_path)):
            seconds, flats[path] = timed_conversion(make, stripped, calib)
            times[path].append(round(seconds, 2))
    start = time.perf_counter()
    convert(model, "int8", representative_data=x if kind == "ptq_int8"
            else None)
    total = time.perf_counter() - start
    ours, our_signature = outputs(flats["frozen"], x)
    theirs, their_signature = outputs(flats["savedmodel"], x)
    row = {"model": name, "kind": kind,
           "savedmodel_s": min(times["savedmodel"]),
           "frozen_s": min(times["frozen"]), "runs": times,
           "speedup": round(min(times["savedmodel"]) /
                            min(times["frozen"]), 2),
           "convert_s": round(total, 2),
           "identical_outputs": float((ours == theirs).all(axis=1).mean()),
           "signature": {"frozen": our_signature,
                         "savedmodel": their_signature},
           "bytes": {"frozen": len(flats["frozen"]),
                     "savedmodel": len(flats["savedmodel"])}}
    print(f"{name:20s} {kind:9s} SavedModel path {row['savedmodel_s']:6.1f} s"
          f"  frozen {row['frozen_s']:6.1f} s  x{row['speedup']:.2f}  "
          f"convert() {row['convert_s']:6.1f} s  identical "
          f"{row['identical_outputs']:.0%}", flush=True)
    return row


def markdown(rows, command):
    lines = [f"Command: `{command}`", "",
             "int8 conversion of keras.applications models (weights=None, "
             "32x32x3, 10 classes), faster of two runs per path; same "
             "converter settings on the same model.", "",
             "| model | kind | SavedModel path s | frozen s | speed-up | "
             "tfcompress.convert s | identical outputs | signature |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sig = "both" if all(r["signature"].values()) else str(r["signature"])
        lines.append(f"| {r['model']} | {r['kind']} | {r['savedmodel_s']:.1f}"
                     f" | {r['frozen_s']:.1f} | {r['speedup']:.2f}x | "
                     f"{r['convert_s']:.1f} | {r['identical_outputs']:.0%} | "
                     f"{sig} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--name", default="conversion_time")
    args = ap.parse_args()
    import numpy as np
    x = np.random.default_rng(0).random((64, args.size, args.size, 3),
                                        dtype=np.float32) * 255.0
    rows = []
    start = time.time()
    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"--models: unknown model {name!r}; choose from "
                             f"{', '.join(MODELS)}")
        model = build(name, args.size)
        rows.append(measure(name, "ptq_int8", model, x))
        rows.append(measure(name, "qat_int8", qat_model(model, x), x))
    command = " ".join(["python", "benchmarks/conversion_time.py"] +
                       sys.argv[1:])
    common.save(args.name, {"size": args.size, "rows": rows,
                            "seconds": round(time.time() - start, 1)})
    common.save_markdown(args.name, markdown(rows, command))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
