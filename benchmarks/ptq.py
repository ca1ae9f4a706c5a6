"""Post-training quantization without retraining, side by side: per-tensor
int8 (plain, equalized, equalized + bias correction), per-channel int8
(nearest vs AdaRound) and 4-bit weights with int8 activations (nearest vs
AdaRound vs 4-bit QAT), on keras.applications MobileNetV2 (alpha 0.35)
and on the seed CNN, trained briefly from scratch on real Fashion-MNIST.

Every figure is the accuracy of the converted flatbuffer run by LiteRT on
the test split (``convert(..., strict=True)``: fully integer), next to the
float Keras model. Calibration, bias correction and AdaRound use
``--calib`` training images (no labels); only the 4-bit QAT row trains
(``--qat-epochs`` on the training split).

    nice -n 10 .venv/bin/python benchmarks/ptq.py            # default run

Writes ``benchmarks/results/<name>.{json,md}``. A step that fails records
its error; the run goes on.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import zoo  # noqa: E402

MODELS = ("seed_cnn", "mobilenet_v2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--size", type=int, default=32,
                   help="MobileNetV2 image size (Fashion-MNIST resized)")
    p.add_argument("--train-samples", type=int, default=4000)
    p.add_argument("--test-samples", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--calib", type=int, default=128)
    p.add_argument("--iterations", type=int, default=100,
                   help="AdaRound steps per layer")
    p.add_argument("--name", default="ptq")
    return p.parse_args(argv)


def build(name, size):
    if name == "seed_cnn":
        from tfcompress.models import seed_cnn
        return seed_cnn()
    return zoo.build("mobilenet_v2", __import__("keras"), size)


def data_for(name, args):
    data = common.fashion_mnist(args.train_samples, args.test_samples)
    if name == "seed_cnn":
        return data
    return zoo.images(data, args.size, False)


def run_model(name, args):
    import keras
    from tfcompress import ptq, quantize
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    data = data_for(name, args)
    (xt, yt), _ = data
    calib = xt[:args.calib]
    model = build(name, args.size)
    t0 = time.perf_counter()
    common.train(model, data, args.epochs, lr=1e-3)
    row = {"model": name, "train_seconds": round(time.perf_counter() - t0, 1),
           "float_accuracy": common.keras_accuracy(model, data), "rows": {}}

    def flat(key, make, per_channel=True):
        t = time.perf_counter()
        try:
            m = make()
            result = convert(m, "int8", representative_data=calib,
                             per_channel=per_channel, strict=True)
            from tfcompress.inspect import inspect
            kinds = sorted({w["dtype"] for w in inspect(
                result.tflite_bytes)["weights"] if len(w["shape"]) >= 2})
            row["rows"][key] = {
                "tflite_accuracy": common.tflite_accuracy(
                    result.tflite_bytes, data),
                "kernel_types": kinds,
                "size_bytes": len(result.tflite_bytes),
                "seconds": round(time.perf_counter() - t, 1)}
        except Exception as e:                      # recorded, run goes on
            row["rows"][key] = {"error": zoo.error_text(e)}
        print(name, key, row["rows"][key], flush=True)

    report = {}

    def equalized():
        m, r = ptq.equalize(model, return_report=True)
        report.update(pairs=len(r.pairs), unpaired=len(r.unpaired),
                      relu6_replaced=len(r.relu6_replaced),
                      absorbed=len(r.absorbed))
        return m

    flat("int8_per_tensor_plain", lambda: model, per_channel=False)
    flat("int8_per_tensor_equalized", equalized, per_channel=False)
    flat("int8_per_tensor_equalized_bias_corrected", lambda: ptq.correct_bias(
        ptq.equalize(model), calib, per_channel=False), per_channel=False)
    flat("int8_per_channel_plain", lambda: model)
    flat("int8_per_channel_adaround", lambda: ptq.adaround(
        model, calib, bits=8, iterations=args.iterations))
    flat("w4a8_nearest", lambda: ptq.for_conversion(
        ptq.fold_batchnorm(model), calib, bits=4))
    flat("w4a8_adaround", lambda: ptq.for_conversion(ptq.adaround(
        model, calib, bits=4, iterations=args.iterations), calib, bits=4))

    def qat4():
        qat = quantize.quantize_model(zoo.clone(model),
                                      quantize.NBitScheme(4, 8))
        common.train(qat, data, args.qat_epochs, lr=5e-4)
        return qat
    flat("w4a8_qat", qat4)
    row["equalization"] = report
    return row


LABELS = {
    "int8_per_tensor_plain": "int8 per-tensor, plain PTQ",
    "int8_per_tensor_equalized": "int8 per-tensor, equalized",
    "int8_per_tensor_equalized_bias_corrected":
        "int8 per-tensor, equalized + bias correction",
    "int8_per_channel_plain": "int8 per-channel, plain PTQ",
    "int8_per_channel_adaround": "int8 per-channel, AdaRound",
    "w4a8_nearest": "W4A8, nearest rounding",
    "w4a8_adaround": "W4A8, AdaRound",
    "w4a8_qat": "W4A8, 4-bit QAT (trains)",
}


def aims(row):
    f = row["float_accuracy"]
    acc = {k: v.get("tflite_accuracy") for k, v in row["rows"].items()}
    out = []
    plain, eq = acc.get("int8_per_tensor_plain"), acc.get(
        "int8_per_tensor_equalized")
    best_eq = max([a for a in (eq, acc.get(
        "int8_per_tensor_equalized_bias_corrected")) if a is not None],
        default=None)
    if plain is not None and best_eq is not None:
        loses = (f - plain) * 100
        out.append(
            f"per-tensor plain loses {loses:.1f} points; "
            + (f"equalization (best of the two rows) is "
               f"{(f - best_eq) * 100:.1f} points from float: aim "
               f"{'met' if (f - best_eq) * 100 <= 1 else 'NOT met'}"
               if loses >= 5 else "under 5 points, the aim does not apply"))
    near, ada = acc.get("w4a8_nearest"), acc.get("w4a8_adaround")
    if near is not None and ada is not None:
        out.append(
            f"W4A8 nearest loses {(f - near) * 100:.1f} points, AdaRound "
            f"{(f - ada) * 100:.1f}: aim (AdaRound within 2 points where "
            f"nearest loses more) "
            + ("does not apply" if (f - near) * 100 <= 2 else
               "met" if (f - ada) * 100 <= 2 else "NOT met"))
    return out


def markdown(results, args, seconds):
    lines = ["# Post-training quantization (tfcompress.ptq)", "",
             "Command: `nice -n 10 .venv/bin/python benchmarks/ptq.py"
             + "".join(" " + a for a in sys.argv[1:]) + "`", "",
             f"Fashion-MNIST, {args.train_samples} training images, "
             f"{args.test_samples} test images; float models trained "
             f"{args.epochs} epochs from scratch; calibration/AdaRound/bias "
             f"correction on {args.calib} unlabeled training images; "
             f"AdaRound {args.iterations} steps per layer. Accuracy of the "
             "LiteRT flatbuffer on the test split (fully integer). Total "
             f"{seconds:.0f} s.", ""]
    names = [r["model"] for r in results]
    lines.append("| variant | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    lines.append("| float (Keras) | " + " | ".join(
        f"{r['float_accuracy']:.4f}" for r in results) + " |")
    for key, label in LABELS.items():
        cells = []
        for r in results:
            v = r["rows"].get(key, {})
            cells.append(f"{v['tflite_accuracy']:.4f}" if "tflite_accuracy"
                         in v else "error: " + v.get("error", "-")[:80])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Aims:", ""]
    for r in results:
        for a in aims(r):
            lines.append(f"- {r['model']}: {a}")
        lines.append(f"- {r['model']}: equalization {r['equalization']}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    results = []
    for name in args.models.split(","):
        try:
            results.append(run_model(name, args))
        except Exception as e:
            results.append({"model": name, "error": zoo.error_text(e),
                            "float_accuracy": float("nan"), "rows": {},
                            "equalization": {}})
        # written after each model, so a long run leaves its finished part
        seconds = time.perf_counter() - start
        common.save(args.name, {"args": vars(args), "results": results,
                                "seconds": round(seconds, 1),
                                "aims": {r["model"]: aims(r) for r in results
                                         if "error" not in r}})
        common.save_markdown(args.name, markdown(results, args, seconds))


if __name__ == "__main__":
    main()
