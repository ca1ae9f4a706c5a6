"""Which int8 activation ranges cost a QAT model its accuracy.

From the zoo's float start (E epochs, seed 0, as ``qat_seeds.py`` trains
it) the model is fine-tuned F epochs with QAT whose activations are
fake-quantized at 16 bits (int8 weights). That model is then evaluated
(Keras, test set) with one group of its activation quantizers at a time
put to 8 bits: a group is the quantizers of one kind of layer in every
block (EfficientNet's ``block2b_add``, ``block3b_add``, ... form the group
``add``). Last, every quantizer at 8 bits, with its trained EMA range and
with ranges taken at percentiles of the activations on calibration
images (what ``Default8BitScheme(activation_percentile=...)`` trains
towards). Quantizers with a fixed range (a sigmoid's) keep it.

    .venv/bin/python benchmarks/qat_activation_groups.py   # EfficientNetB0
    .venv/bin/python benchmarks/qat_activation_groups.py --models resnet20 \\
        --train-samples 1000 --test-samples 500 --epochs 1 --name groups_small

Writes ``benchmarks/results/<name>.{json,md}``.
"""

import argparse
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
import qat_seeds  # noqa: E402
import zoo  # noqa: E402

PERCENTILES = (99.9, 99.99, 99.999)


def parse_args(argv=None):
    zoo_default = zoo.parse_args([])   # the zoo's settings, unless given
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="efficientnet_b0")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the QAT fine-tune (the float start: 0)")
    p.add_argument("--epochs", type=int, default=zoo_default.epochs,
                   help="float epochs E")
    p.add_argument("--finetune-epochs", type=int,
                   default=zoo_default.finetune_epochs, help="QAT epochs F")
    for key in ("train_samples", "test_samples", "size",
                "calibration_samples"):
        p.add_argument("--" + key.replace("_", "-"), type=int,
                       default=getattr(zoo_default, key))
    p.add_argument("--finetune-lr", type=float,
                   default=zoo_default.finetune_lr)
    p.add_argument("--finetune-schedule", choices=zoo.SCHEDULES,
                   default="cosine")
    p.add_argument("--name", default="qat_activation_groups")
    args = p.parse_args(argv)
    zoo.check_models(p, args.models)
    return args


def group_of(layer_name):
    """The group of a QAT layer: its name without ``quant_`` and without
    the block prefix of EfficientNet, MobileNet and ResNet layer names.

    >>> group_of("quant_block2b_add"), group_of("quant_stem_conv")
    ('add', 'stem_conv')
    >>> group_of("quant_block_3_expand_relu"), group_of("quant_conv4_block1_out")
    ('expand_relu', 'out')
    """
    name = layer_name.removeprefix("quant_")
    for pattern in (r"block\d+[a-z]_(.+)", r"block_\d+_(.+)",
                    r"conv\d+_block\d+_(.+)", r"expanded_conv_\d+_(.+)"):
        m = re.fullmatch(pattern, name)
        if m:
            return m.group(1)
    return name


def activation_quantizers(model):
    """The QAT layers with an activation range of their own to set."""
    return [layer for layer in model.layers
            if getattr(layer, "range", None) is not None
            and hasattr(layer, "activation_bits")
            and getattr(layer, "quantize_output", True)]


def accuracy(model, data):
    """Keras accuracy through a function traced now (the bits just set)."""
    import tensorflow as tf
    _, (xv, yv) = data
    f = tf.function(lambda x: model(x, training=False))
    logits = np.concatenate([f(xv[i:i + 500]).numpy()
                             for i in range(0, len(xv), 500)])
    return float(np.mean(logits.argmax(1) == yv))


def run_model(name, args):
    import keras
    from tfcompress import quantize
    data, start = qat_seeds.float_start(name, args)
    (xt, _), _ = data
    keras.utils.set_random_seed(args.seed)
    scheme = quantize.Default8BitScheme()
    scheme.activation_bits = 16     # past the [2, 8] TFLite stores
    qat = quantize.quantize_model(zoo.clone(start), scheme)
    zoo.timed_train(qat, data, args.finetune_epochs,
                    zoo.finetune_rate(args, keras, len(xt),
                                      args.finetune_epochs))
    quantizers = activation_quantizers(qat)
    groups = collections.defaultdict(list)
    for q in quantizers:
        groups[group_of(q.name)].append(q)

    def at_bits(layers, bits):
        for q in layers:
            q.activation_bits = bits

    row = {"float_start": common.keras_accuracy(start, data),
           "quantizers": len(quantizers), "int16": accuracy(qat, data),
           "groups": {}}
    for group, layers in groups.items():
        at_bits(layers, 8)
        row["groups"][group] = {"quantizers": len(layers),
                                "accuracy": accuracy(qat, data)}
        at_bits(layers, 16)
        print(f"[{name}] {group} ({len(layers)}) at 8 bits: "
              f"{row['groups'][group]['accuracy']:.4f}", flush=True)
    at_bits(quantizers, 8)
    row["int8_ema_ranges"] = accuracy(qat, data)
    # the activations on calibration images (outside a range: clipped)
    taps = keras.Model(qat.input, [q.output for q in quantizers])
    values = taps.predict(xt[:args.calibration_samples], batch_size=100,
                          verbose=0)
    trained = [[v.numpy() for v in q.range[:2]] for q in quantizers]
    row["int8_percentile_ranges"] = {}
    for pct in PERCENTILES:
        for q, v, (lo, hi) in zip(quantizers, values, trained):
            if getattr(q, "fixed_range", None):
                continue                      # sigmoid's fixed range
            q.range[0].assign(min(float(np.percentile(v, 100 - pct)), 0.0))
            q.range[1].assign(max(float(np.percentile(v, pct)), 1e-6))
        row["int8_percentile_ranges"][str(pct)] = accuracy(qat, data)
        for q, (lo, hi) in zip(quantizers, trained):
            q.range[0].assign(lo)
            q.range[1].assign(hi)
    print(f"[{name}] 16-bit {row['int16']:.4f}, 8-bit EMA ranges "
          f"{row['int8_ema_ranges']:.4f}, percentile ranges "
          f"{row['int8_percentile_ranges']}", flush=True)
    return row


def markdown(results, args):
    lines = [f"Float start: E = {args.epochs} epochs (seed 0); QAT with "
             f"16-bit activations fine-tuned F = {args.finetune_epochs} "
             f"epochs (seed {args.seed}, learning rate {args.finetune_lr:g}"
             + (", cosine decay to 0" if args.finetune_schedule == "cosine"
                else "") + f"); {args.train_samples} training / "
             f"{args.test_samples} test images, {args.size}x{args.size}. "
             "Keras test accuracy with one group of activation quantizers "
             "at 8 bits, the rest at 16; then all at 8 bits with the "
             "trained EMA ranges and with ranges at percentiles of "
             f"{args.calibration_samples} training images' activations.",
             ""]
    for name, r in results.items():
        lines += [f"### {name}", "",
                  f"{r['quantizers']} activation quantizers. Float start "
                  f"{r['float_start']:.4f}; all at 16 bits "
                  f"{r['int16']:.4f}; all at 8 bits {r['int8_ema_ranges']:.4f}"
                  " (EMA ranges), "
                  + ", ".join(f"{a:.4f} (p{p} ranges)" for p, a in
                              r["int8_percentile_ranges"].items()) + ".", "",
                  "| group at 8 bits | quantizers | accuracy | points vs "
                  "all at 16 bits |", "|---|---|---|---|"]
        for group, g in sorted(r["groups"].items(),
                               key=lambda kv: kv[1]["accuracy"]):
            lines.append(f"| {group} | {g['quantizers']} | "
                         f"{g['accuracy']:.4f} | "
                         f"{100 * (g['accuracy'] - r['int16']):+.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    results = {name: run_model(name, args)
               for name in args.models.split(",")}
    common.save_models(args, results, markdown)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
