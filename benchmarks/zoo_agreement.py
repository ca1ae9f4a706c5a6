"""Every keras.applications family: does the int8 flatbuffer agree with
its Keras QAT model after a short fine-tune on real data?

Each family of ``tfcompress.utils.zoo.FAMILIES`` at its smallest
configuration (smallest width, smallest input it accepts, ``weights=None``,
10 logits; BatchNormalization momentum 0.9 so a short run settles its
statistics) trains on Fashion-MNIST resized to its input side and
repeated to 3 channels (pixels in [0, 255] for the families that rescale
their input, else [0, 1]): E float epochs, then ``quantize_model`` and F
QAT epochs, then ``convert(q, "int8", strict=False)``. On the test images:
top-1 agreement of the flatbuffer's logits (LiteRT, XNNPACK) with the
Keras QAT model's, their difference in output quantization steps, and
the accuracies. Each family runs in a process of its own.

    .venv/bin/python benchmarks/zoo_agreement.py
    .venv/bin/python benchmarks/zoo_agreement.py --families DenseNet121

Writes benchmarks/results/zoo_agreement.json and zoo_agreement.md.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

import common  # noqa: F401  (quiet TensorFlow logs, sys.path)
import numpy as np

AIM = 0.98
# VGG16 has no batch norm: from scratch at 1e-3 it stays at chance
LEARNING_RATE = {"VGG16": 1e-4}


def parse_args(argv=None):
    from tfcompress.utils.zoo import FAMILIES
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=list(FAMILIES))
    p.add_argument("--train-samples", type=int, default=3000)
    p.add_argument("--test-samples", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--name", default="zoo_agreement")
    p.add_argument("--merge", action="store_true",
                   help="replace these families' rows in the saved "
                        "results, keep the others")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_family(family, args):
    import keras
    from tfcompress import quantize
    from tfcompress.convert import convert
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    from tfcompress.models.applications import set_batchnorm_momentum
    from tfcompress.models.applications import rescales_input
    from tfcompress.quantize.zoo import output_step
    from tfcompress.utils.zoo import build
    import zoo
    start = time.time()
    keras.utils.set_random_seed(0)
    model = build(family)
    set_batchnorm_momentum(model, 0.9, keras)
    side = int(model.inputs[0].shape[1])
    data = zoo.images(common.fashion_mnist(args.train_samples,
                                           args.test_samples), side,
                      rescales_input(model))
    (xt, yt), (xv, yv) = data
    common.train(model, data, args.epochs, args.batch_size,
                 lr=LEARNING_RATE.get(family, 1e-3))
    float_acc = common.keras_accuracy(model, data)
    q = quantize.quantize_model(model)
    common.train(q, data, args.qat_epochs, args.batch_size, lr=1e-4)
    qat_logits = q.predict(xv, batch_size=100, verbose=0)
    r = convert(q, "int8", representative_data=xt[:64], strict=False)
    interp, _ = litert_interpreter(r.tflite_bytes)
    int8_logits = run_flatbuffer(interp, xv)
    with quantize.device_rounding(q):
        device_logits = q.predict(xv, batch_size=100, verbose=0)
    step = output_step(q)
    err = np.abs(int8_logits - qat_logits) / step
    device_err = np.abs(int8_logits - device_logits) / step
    ops = collections.Counter(op["op"] for op in r.report["ops"])
    return {
        "family": family, "input_side": side,
        "float_accuracy": round(float_acc, 4),
        "qat_keras_accuracy": round(float(
            (qat_logits.argmax(1) == yv).mean()), 4),
        "int8_accuracy": round(float((int8_logits.argmax(1) == yv).mean()),
                               4),
        "top1_agreement": round(float(
            (int8_logits.argmax(1) == qat_logits.argmax(1)).mean()), 4),
        "mean_error_steps": round(float(err.mean()), 3),
        "max_error_steps": round(float(err.max()), 2),
        "within_one_step": round(float((err <= 1.001).mean()), 4),
        "device_rounding": {
            "top1_agreement": round(float(
                (int8_logits.argmax(1) == device_logits.argmax(1)).mean()),
                4),
            "mean_error_steps": round(float(device_err.mean()), 3),
            "max_error_steps": round(float(device_err.max()), 2),
            "within_one_step": round(float((device_err <= 1.001).mean()),
                                     4)},
        "fully_integer": bool(r.report["fully_integer"]),
        "float_ops": sorted({op["op"] for op in r.report["ops"]
                             if "FLOAT32" in op["inputs"] + op["outputs"]
                             and op["op"] not in ("QUANTIZE",
                                                  "DEQUANTIZE")}),
        "ops": sum(ops.values()), "quantize_ops": ops.get("QUANTIZE", 0),
        "seconds": round(time.time() - start, 1)}


def _device_cell(row):
    d = row.get("device_rounding")
    if d is None:
        return "not run"
    return (f"{d['top1_agreement']:.1%} / {d['mean_error_steps']} / "
            f"{d['max_error_steps']}")


def markdown(rows, args, commands):
    lines = ["# int8 flatbuffer vs Keras QAT model, every keras.applications "
             "family", "", "Commands (later ones replace their families' "
             "rows):", ""] + [f"- `{c}`" for c in commands] + ["",
             f"{args.train_samples} Fashion-MNIST training images, "
             f"{args.epochs} float epoch(s) + {args.qat_epochs} QAT "
             f"epoch(s), batch {args.batch_size}; {args.test_samples} test "
             "images. Agreement: top-1 "
             "of the int8 TFLite logits (LiteRT, XNNPACK) vs the Keras QAT "
             "model's; error in output quantization steps. With "
             "`quantize.device_rounding`: the same Keras QAT model, "
             "rounding as the int8 kernels do (not run: rows of an "
             "earlier run). VGG16 (no "
             "batch norm) trains at 1e-4, the others at 1e-3.", "",
             "| family | input | float acc | QAT acc | int8 acc | top-1 "
             "agreement | mean / max error (steps) | within one step | "
             "with device_rounding: top-1 / mean / max error | "
             "ops (QUANTIZE) | float ops | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['family']} | | | | | failed: {r['error']} "
                         "| | | | | | |")
            continue
        lines.append(
            f"| {r['family']} | {r['input_side']} | {r['float_accuracy']} | "
            f"{r['qat_keras_accuracy']} | {r['int8_accuracy']} | "
            f"{r['top1_agreement']:.1%} | {r['mean_error_steps']} / "
            f"{r['max_error_steps']} | {r['within_one_step']:.1%} | "
            f"{_device_cell(r)} | {r['ops']} ({r['quantize_ops']}) | "
            f"{', '.join(r['float_ops']) or '-'} | {r['seconds']} |")
    done = [r for r in rows if "error" not in r]
    met = [r["family"] for r in done if r["top1_agreement"] >= AIM]
    missed = [f"{r['family']} ({r['top1_agreement']:.1%})" for r in done
              if r["top1_agreement"] < AIM]
    lines += ["", f"Top-1 agreement >= {AIM:.0%}: met on {len(met)} of "
              f"{len(done)}" + (f"; missed: {', '.join(missed)}"
                                if missed else "") + "."]
    device = [r for r in done if "device_rounding" in r]
    if device:
        met = [r for r in device
               if r["device_rounding"]["top1_agreement"] >= AIM]
        lines += ["", f"With device_rounding: met on {len(met)} of "
                  f"{len(device)} run with it."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    if args.one:
        row = run_family(args.one, args)
        with open(args.out, "w") as f:
            json.dump(row, f)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            out = os.path.join(tmp, family + ".json")
            cmd = [sys.executable, os.path.abspath(__file__), "--one",
                   family, "--out", out, "--train-samples",
                   str(args.train_samples), "--test-samples",
                   str(args.test_samples), "--epochs", str(args.epochs),
                   "--qat-epochs", str(args.qat_epochs),
                   "--batch-size", str(args.batch_size)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0 and os.path.exists(out):
                with open(out) as f:
                    rows.append(json.load(f))
            else:
                tail = (done.stderr.strip().splitlines() or ["?"])[-1]
                rows.append({"family": family, "error": tail[:300]})
            print(json.dumps(rows[-1]), flush=True)
    command = " ".join(["python"] + sys.argv)
    commands = [command]
    path = os.path.join(common.RESULTS, args.name + ".json")
    if args.merge and os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        new = {r["family"]: r for r in rows}
        rows = [new.pop(r["family"], r) for r in saved["rows"]]
        rows += list(new.values())
        commands = saved.get("commands", [saved.get("command")]) + commands
    common.save(args.name, {"rows": rows, "commands": commands,
                            "settings": vars(args)})
    common.save_markdown(args.name, markdown(rows, args, commands))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()
    main()
