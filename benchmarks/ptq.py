"""Post-training quantization without retraining, side by side: per-tensor
int8 (plain, equalized, equalized + bias correction), per-channel int8
(nearest vs AdaRound) and 4-bit weights with int8 activations (nearest vs
AdaRound vs 4-bit QAT), on keras.applications MobileNetV2 (alpha 0.35)
and on the seed CNN, trained briefly from scratch on real Fashion-MNIST.

Synthetic stress test (``--variants spread``): briefly trained models do
not show the per-tensor failure of pretrained ImageNet weights (folded
kernels whose channel ranges differ by orders of magnitude). The
``spread`` variant reproduces it on each trained model by a
function-preserving reparametrization
(:func:`tfcompress.ptq.spread.spread_channels`): for every pair of layers
equalization would pair, output channel ``c`` of the first is multiplied
by ``s_c`` (log-uniform in ``[1/--spread, --spread]``, seeded) and input
channel ``c`` of the second divided by it. ReLU6 on such paths becomes
ReLU first (as ``equalize`` does; the clip at 6 does not commute with the
scaling), so the spread model's float function is that of the ReLU model,
checked on the test images (max |difference| <= 1e-4 of max |output|).
It is a synthetic model, not a pretrained one.

Every figure is the accuracy of the converted flatbuffer run by LiteRT on
the test split (``convert(..., strict=True)``: fully integer), next to the
float Keras model. Calibration, bias correction and AdaRound use
``--calib`` training images (no labels); only the 4-bit QAT row trains
(``--qat-epochs`` on the training split).

    nice -n 10 .venv/bin/python benchmarks/ptq.py            # default run
    nice -n 10 .venv/bin/python benchmarks/ptq.py --variants spread

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
VARIANTS = ("trained", "spread")
# max |spread - base| / max |base| of the float outputs on the test split
FLOAT_TOLERANCE = 1e-4


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
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help="trained: every row on the trained model; spread: "
                        "the synthetic channel-spread stress test")
    p.add_argument("--spread", type=float, default=100.0,
                   help="spread factors log-uniform in [1/spread, spread]")
    p.add_argument("--spread-seed", type=int, default=0)
    p.add_argument("--name", default=None,
                   help="results file name (default ptq, or ptq_spread "
                        "with --variants spread)")
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown --variants {sorted(unknown)}; choose from "
                f"{', '.join(VARIANTS)}")
    if args.spread < 1:
        p.error("--spread must be >= 1 (factors in [1/spread, spread])")
    if args.name is None:
        args.name = "ptq" if "trained" in args.variants.split(",") \
            else "ptq_spread"
    return args


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

    def flat(key, make, per_channel=True, rows=None):
        rows = row["rows"] if rows is None else rows
        t = time.perf_counter()
        try:
            m = make()
            result = convert(m, "int8", representative_data=calib,
                             per_channel=per_channel, strict=True)
            from tfcompress.inspect import inspect
            kinds = sorted({w["dtype"] for w in inspect(
                result.tflite_bytes)["weights"] if len(w["shape"]) >= 2})
            rows[key] = {
                "tflite_accuracy": common.tflite_accuracy(
                    result.tflite_bytes, data),
                "kernel_types": kinds,
                "size_bytes": len(result.tflite_bytes),
                "seconds": round(time.perf_counter() - t, 1)}
        except Exception as e:                      # recorded, run goes on
            rows[key] = {"error": zoo.error_text(e)}
        print(name, key, rows[key], flush=True)

    report = {}

    def equalized():
        m, r = ptq.equalize(model, return_report=True)
        report.update(pairs=len(r.pairs), unpaired=len(r.unpaired),
                      relu6_replaced=len(r.relu6_replaced),
                      absorbed=len(r.absorbed))
        return m

    variants = args.variants.split(",")
    if "trained" in variants:
        flat("int8_per_tensor_plain", lambda: model, per_channel=False)
        flat("int8_per_tensor_equalized", equalized, per_channel=False)
        flat("int8_per_tensor_equalized_bias_corrected",
             lambda: ptq.correct_bias(ptq.equalize(model), calib,
                                      per_channel=False), per_channel=False)
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
    if "spread" in variants:
        row["spread"] = run_spread(name, model, data, calib, args, flat)
    return row


def run_spread(name, model, data, calib, args, flat):
    """The synthetic stress test: ``model``'s channel ranges spread
    without changing its float function, then per-tensor int8 plain,
    equalized, equalized + bias correction and per-channel int8."""
    from tfcompress import ptq
    from tfcompress.ptq.equalize import relu6_to_relu
    from tfcompress.ptq.spread import spread_channels
    spread, rep = spread_channels(model, 1.0 / args.spread, args.spread,
                                  seed=args.spread_seed, replace_relu6=True)
    base = relu6_to_relu(model, rep.relu6_replaced) \
        if rep.relu6_replaced else model
    _, (xv, _) = data
    ref = base.predict(xv, batch_size=500, verbose=0)
    out = spread.predict(xv, batch_size=500, verbose=0)
    diff = float(np.abs(out - ref).max() / np.abs(ref).max())
    factors = np.concatenate(list(rep.factors.values()))
    info = {"pairs": len(rep.pairs), "skipped": rep.skipped,
            "relu6_replaced": len(rep.relu6_replaced),
            "spread": args.spread, "seed": args.spread_seed,
            "factor_range": [float(factors.min()), float(factors.max())],
            "float_max_relative_difference": diff,
            "base_float_accuracy": common.keras_accuracy(base, data),
            "float_accuracy": common.keras_accuracy(spread, data),
            "rows": {}}
    print(name, "spread", {k: v for k, v in info.items() if k != "rows"},
          flush=True)
    if not diff <= FLOAT_TOLERANCE:             # recorded, no rows
        info["error"] = (f"spread changed the float outputs: max relative "
                         f"difference {diff:.2e} > {FLOAT_TOLERANCE:.0e}")
        return info
    rows = info["rows"]
    flat("unspread_int8_per_channel_plain", lambda: base, rows=rows)
    flat("int8_per_tensor_plain", lambda: spread, per_channel=False,
         rows=rows)
    flat("int8_per_tensor_equalized", lambda: ptq.equalize(spread),
         per_channel=False, rows=rows)
    flat("int8_per_tensor_equalized_bias_corrected",
         lambda: ptq.correct_bias(ptq.equalize(spread), calib,
                                  per_channel=False),
         per_channel=False, rows=rows)
    flat("int8_per_channel_plain", lambda: spread, rows=rows)
    return info


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


SPREAD_LABELS = {
    "unspread_int8_per_channel_plain":
        "before spreading: int8 per-channel, plain PTQ",
    "int8_per_tensor_plain": "spread: int8 per-tensor, plain PTQ",
    "int8_per_tensor_equalized": "spread: int8 per-tensor, equalized",
    "int8_per_tensor_equalized_bias_corrected":
        "spread: int8 per-tensor, equalized + bias correction",
    "int8_per_channel_plain": "spread: int8 per-channel, plain PTQ",
}


def per_tensor_aim(f, acc):
    """Where plain per-tensor int8 loses >= 5 points, does equalization
    (best of equalized, equalized + bias correction) come within 1 point
    of float?"""
    plain, eq = acc.get("int8_per_tensor_plain"), acc.get(
        "int8_per_tensor_equalized")
    best_eq = max([a for a in (eq, acc.get(
        "int8_per_tensor_equalized_bias_corrected")) if a is not None],
        default=None)
    if plain is None or best_eq is None:
        return None
    loses = (f - plain) * 100
    return (f"per-tensor plain loses {loses:.1f} points; "
            + (f"equalization (best of the two rows) is "
               f"{(f - best_eq) * 100:.1f} points from float: aim "
               f"{'met' if (f - best_eq) * 100 <= 1 else 'NOT met'}"
               if loses >= 5 else "under 5 points, the aim does not apply"))


def accuracies(rows):
    return {k: v.get("tflite_accuracy") for k, v in rows.items()}


def aims(row):
    f = row["float_accuracy"]
    acc = accuracies(row["rows"])
    out = []
    aim = per_tensor_aim(f, acc)
    if aim:
        out.append(aim)
    near, ada = acc.get("w4a8_nearest"), acc.get("w4a8_adaround")
    if near is not None and ada is not None:
        out.append(
            f"W4A8 nearest loses {(f - near) * 100:.1f} points, AdaRound "
            f"{(f - ada) * 100:.1f}: aim (AdaRound within 2 points where "
            f"nearest loses more) "
            + ("does not apply" if (f - near) * 100 <= 2 else
               "met" if (f - ada) * 100 <= 2 else "NOT met"))
    spread = row.get("spread") or {}
    aim = per_tensor_aim(spread.get("float_accuracy", float("nan")),
                         accuracies(spread.get("rows", {})))
    if aim:
        out.append("synthetic spread model: " + aim)
    return out


def cell(rows, key):
    v = rows.get(key, {})
    return (f"{v['tflite_accuracy']:.4f}" if "tflite_accuracy" in v
            else "error: " + v.get("error", "-")[:80])


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
    head = [" | ".join(names) + " |", "|---|" + "---|" * len(names)]
    if "trained" in args.variants.split(","):
        lines += ["| variant | " + head[0], head[1]]
        lines.append("| float (Keras) | " + " | ".join(
            f"{r['float_accuracy']:.4f}" for r in results) + " |")
        for key, label in LABELS.items():
            lines.append(f"| {label} | " + " | ".join(
                cell(r["rows"], key) for r in results) + " |")
        lines.append("")
    if "spread" in args.variants.split(","):
        sp = [r.get("spread") or {} for r in results]
        lines += [
            "## Synthetic stress test: channel ranges spread (not a "
            "pretrained model)", "",
            "Each trained model reparametrized without changing its float "
            "function: output channel c of every equalization pair's first "
            "layer times s_c, log-uniform in "
            f"[1/{args.spread:g}, {args.spread:g}] (seed {args.spread_seed}),"
            " input channel c of the second divided by s_c; ReLU6 on those "
            "paths replaced by ReLU first (as equalize does), so the "
            "'before spreading' model is the ReLU model.", "",
            "| variant | " + head[0], head[1],
            "| float, trained model | " + " | ".join(
                f"{r['float_accuracy']:.4f}" for r in results) + " |",
            "| float, before spreading (ReLU6 -> ReLU) | " + " | ".join(
                f"{s.get('base_float_accuracy', float('nan')):.4f}"
                for s in sp) + " |",
            "| float, spread model | " + " | ".join(
                f"{s.get('float_accuracy', float('nan')):.4f}"
                for s in sp) + " |"]
        for key, label in SPREAD_LABELS.items():
            lines.append(f"| {label} | " + " | ".join(
                cell(s.get("rows", {}), key) for s in sp) + " |")
        lines.append("")
        for r, s in zip(results, sp):
            info = {k: v for k, v in s.items() if k not in ("rows",)}
            lines.append(f"- {r['model']} spread: {info}")
        lines.append("")
    lines += ["Aims:", ""]
    for r in results:
        for a in aims(r):
            lines.append(f"- {r['model']}: {a}")
        if r.get("equalization"):
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
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
