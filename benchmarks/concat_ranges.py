"""One QAT range per chain of concatenations against one per tensor.

TFLite's int8 CONCATENATION takes its inputs at its output's scale; with
a range per tensor (``share_concat_ranges=False``) the converter adds a
requantizing QUANTIZE op wherever two ranges meet, with one range per
chain (the default, :mod:`tfcompress.quantize.shared_ranges`) it adds
none. Side by side in one run:

- DenseNet121 (keras.applications, ``weights=None``, 32x32x3, 10
  classes; 3 QAT steps on random pixels): ops, QUANTIZE ops and p50
  latency (LiteRT, 1 thread, XNNPACK, measured in turns) of both QAT
  flatbuffers and of post-training int8 of the float model;
- a small dense network (two dense blocks of three BN-ReLU-Conv layers,
  average-pooling transition) trained on Fashion-MNIST, then QAT from the
  same float weights with either setting, for each seed: QAT Keras and
  int8 accuracy on the test images, top-1 agreement of the flatbuffer
  with the QAT model, logit error in output steps.

    .venv/bin/python benchmarks/concat_ranges.py
    .venv/bin/python benchmarks/concat_ranges.py --seeds 0 --no-densenet

Writes benchmarks/results/concat_ranges.json and concat_ranges.md.
"""

import argparse
import collections
import os
import sys
import tempfile

import common  # noqa: F401  (quiet TensorFlow logs, sys.path)
import numpy as np

SETTINGS = (("one range per chain", True), ("range per tensor", False))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train-samples", type=int, default=6000)
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--no-densenet", action="store_true")
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--name", default="concat_ranges")
    return p.parse_args(argv)


def ops_of(result):
    return collections.Counter(op["op"] for op in result.report["ops"])


def densenet(args, tmp):
    import keras
    from tfcompress import quantize
    from tfcompress.convert import convert
    from tfcompress.quantize.zoo import build_zoo_model, zoo_inputs
    model = build_zoo_model("DenseNet121")
    x = zoo_inputs(model, 64)
    labels = np.random.default_rng(0).integers(0, 10, len(x))
    flatbuffers, rows = {}, []
    for label, share in SETTINGS:
        keras.utils.set_random_seed(0)
        q = quantize.quantize_model(model, quantize.Default8BitScheme(
            share_concat_ranges=share))
        q.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
        q.fit(x[:24], labels[:24], batch_size=8, verbose=0)
        flatbuffers[label] = convert(q, "int8", representative_data=x,
                                     check_data=x[:32])
    flatbuffers["post-training int8"] = convert(
        model, "int8", representative_data=x, check_data=x[:32])
    paths = {}
    for label, r in flatbuffers.items():
        paths[label] = os.path.join(tmp, label.replace(" ", "_") + ".tflite")
        with open(paths[label], "wb") as f:
            f.write(r.tflite_bytes)
    p50 = common.alternating_p50(list(paths.values()), runs=args.runs)
    for label, r in flatbuffers.items():
        ops = ops_of(r)
        rows.append({"model": "DenseNet121 32x32", "setting": label,
                     "ops": sum(ops.values()),
                     "quantize_ops": ops.get("QUANTIZE", 0),
                     "p50_ms": round(p50[paths[label]], 3),
                     "fully_integer": r.report["fully_integer"]})
        print(rows[-1], flush=True)
    return rows


def dense_network(keras):
    from keras import layers as L
    i = keras.Input((28, 28, 1))
    x = L.Conv2D(16, 3, strides=2, padding="same", name="stem")(i)
    for b in range(2):
        for _ in range(3):
            h = L.ReLU()(L.BatchNormalization()(x))
            x = L.Concatenate()([x, L.Conv2D(8, 3, padding="same",
                                             use_bias=False)(h)])
        if b == 0:
            x = L.ReLU()(L.BatchNormalization()(x))
            x = L.AveragePooling2D(2)(L.Conv2D(16, 1)(x))
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization()(x)))
    return keras.Model(i, L.Dense(10)(x))


def trained_rows(args):
    import keras
    from tfcompress import quantize
    from tfcompress.convert import convert
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    from tfcompress.quantize.zoo import output_step
    (xt, yt), (xv, yv) = common.fashion_mnist(args.train_samples,
                                              args.test_samples)
    xt = xt.reshape(-1, 28, 28, 1).astype("float32")
    xv = xv.reshape(-1, 28, 28, 1).astype("float32")
    if xt.max() > 1.5:
        xt, xv = xt / 255.0, xv / 255.0
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rows = []
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        float_model = dense_network(keras)
        float_model.compile(keras.optimizers.Adam(2e-3), loss)
        float_model.fit(xt, yt, batch_size=64, epochs=3, verbose=0)
        weights = float_model.get_weights()
        for label, share in SETTINGS:
            keras.utils.set_random_seed(seed)
            float_model.set_weights(weights)
            q = quantize.quantize_model(float_model,
                                        quantize.Default8BitScheme(
                                            share_concat_ranges=share))
            q.compile(keras.optimizers.Adam(5e-4), loss)
            q.fit(xt, yt, batch_size=64, epochs=1, verbose=0)
            r = convert(q, "int8", representative_data=xt[:200])
            interp, _ = litert_interpreter(r.tflite_bytes)
            int8 = run_flatbuffer(interp, xv)
            keras_logits = q.predict(xv, verbose=0)
            step = output_step(q)
            err = np.abs(int8 - keras_logits) / step
            ops = ops_of(r)
            rows.append({
                "seed": seed, "setting": label,
                "qat_keras_accuracy": round(float(
                    (keras_logits.argmax(1) == yv).mean()), 4),
                "int8_accuracy": round(float(
                    (int8.argmax(1) == yv).mean()), 4),
                "top1_agreement": round(float(
                    (int8.argmax(1) == keras_logits.argmax(1)).mean()), 4),
                "mean_error_steps": round(float(err.mean()), 3),
                "within_one_step": round(float((err <= 1.001).mean()), 4),
                "ops": sum(ops.values()),
                "quantize_ops": ops.get("QUANTIZE", 0)})
            print(rows[-1], flush=True)
    return rows


def markdown(result, args):
    lines = ["# One QAT range per concatenation chain, or one per tensor",
             "", f"Command: `{result['command']}`", ""]
    if result["densenet"]:
        lines += ["| model | setting | ops | QUANTIZE ops | p50 ms |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['setting']} | {r['ops']} | "
                  f"{r['quantize_ops']} | {r['p50_ms']} |"
                  for r in result["densenet"]]
        lines.append("")
    lines += [f"Small dense network, Fashion-MNIST ({args.train_samples} "
              f"training images, {args.test_samples} test images):", "",
              "| seed | setting | QAT Keras acc | int8 acc | top-1 agreement "
              "| mean error (steps) | within one step | ops | QUANTIZE ops |",
              "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['setting']} | {r['qat_keras_accuracy']} "
              f"| {r['int8_accuracy']} | {r['top1_agreement']:.2%} | "
              f"{r['mean_error_steps']} | {r['within_one_step']:.2%} | "
              f"{r['ops']} | {r['quantize_ops']} |"
              for r in result["trained"]]
    for label, _ in SETTINGS:
        agree = [r["top1_agreement"] for r in result["trained"]
                 if r["setting"] == label]
        lines.append(f"\n{label}: mean top-1 agreement "
                     f"{np.mean(agree):.2%} over {len(agree)} seeds")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"densenet": [] if args.no_densenet else densenet(args,
                                                                   tmp),
                  "trained": trained_rows(args)}
    result["command"] = " ".join(["python"] + sys.argv)
    common.save(args.name, result)
    common.save_markdown(args.name, markdown(result, args))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()
    main()
