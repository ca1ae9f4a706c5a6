"""QAT int8 against the float model trained as long, over several seeds.

One zoo run (``benchmarks/zoo.py``) compares each model's QAT int8 accuracy
with its float model's after the same number of epochs once. At the zoo's
budget the test accuracy of one float model moves by 1-2 points between
epochs and between shuffling seeds, so one run cannot decide a 0.5-point
aim. This script trains each model's float start once (E epochs, seed 0,
the zoo's data, architecture and settings), then for each seed fine-tunes
two copies of it for F epochs with the same shuffling: one in float, one
with ``quantize.quantize_model``, and converts the QAT model to strict
int8. It reports the QAT int8 (TFLite) minus float (Keras) difference per
seed and its mean and standard deviation.

    .venv/bin/python benchmarks/qat_seeds.py                # 4 models, 3 seeds
    .venv/bin/python benchmarks/qat_seeds.py --models resnet20 --seeds 2 \\
        --train-samples 1000 --test-samples 500 --epochs 1 --name qat_small

Writes ``benchmarks/results/<name>.{json,md}``.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import common  # noqa: E402
import zoo  # noqa: E402


def parse_args(argv=None):
    zoo_default = zoo.parse_args([])   # the zoo's settings, unless given
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=zoo.DEFAULT_MODELS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=zoo_default.epochs,
                   help="float epochs E")
    p.add_argument("--finetune-epochs", type=int,
                   default=zoo_default.finetune_epochs,
                   help="epochs F of each fine-tune (float and QAT)")
    for option in ("train_samples", "test_samples", "size",
                   "calibration_samples"):
        p.add_argument("--" + option.replace("_", "-"), type=int,
                       default=getattr(zoo_default, option))
    p.add_argument("--finetune-lr", type=float,
                   default=zoo_default.finetune_lr,
                   help="Adam learning rate of both fine-tunes")
    p.add_argument("--finetune-schedule", choices=zoo.SCHEDULES,
                   default=zoo_default.finetune_schedule,
                   help="learning rate within both fine-tunes: constant, "
                        "or cosine decay from --finetune-lr to 0")
    p.add_argument("--freeze-bn-delay", type=int,
                   default=zoo_default.qat_freeze_bn_delay,
                   help="Default8BitScheme freeze_bn_delay: QAT steps "
                        "before the folded batch norms use their moving "
                        "statistics (default: the zoo's "
                        "--qat-freeze-bn-delay, 0; -1: never)")
    p.add_argument("--ema-decay", type=float,
                   default=zoo_default.qat_ema_decay,
                   help="Default8BitScheme ema_decay of the activation "
                        "ranges (default: the zoo's --qat-ema-decay)")
    p.add_argument("--float-freeze-bn", action="store_true",
                   help="the float fine-tune runs its BatchNormalization "
                        "layers frozen (trainable=False: moving statistics,"
                        " gamma and beta fixed), the float counterpart of "
                        "--freeze-bn-delay 0")
    p.add_argument("--activation-percentile", type=float,
                   default=zoo_default.qat_activation_percentile,
                   help="Default8BitScheme activation_percentile of the "
                        "activation ranges (default: the zoo's "
                        "--qat-activation-percentile, 99.99; 100: each "
                        "batch's min and max)")
    p.add_argument("--name", default="qat_seeds")
    args = p.parse_args(argv)
    zoo.check_models(p, args.models)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    return args


def summary(differences):
    """Mean and sample standard deviation (points) of per-seed
    differences given as fractions.

    >>> summary([0.01, -0.01, 0.0])
    {'mean_points': 0.0, 'sd_points': 1.0, 'runs': 3}
    """
    d = 100 * np.asarray(differences, np.float64)
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
    return {"mean_points": round(float(np.mean(d)), 6),
            "sd_points": round(sd, 6), "runs": len(d)}


def freeze_batchnorm(model):
    """Sets every BatchNormalization layer of ``model`` (nested ones too)
    ``trainable = False``: Keras then normalizes with the moving
    statistics and trains neither them nor gamma and beta."""
    import keras
    from tfcompress.utils.layer_map import iter_layers
    for layer in iter_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def float_start(name, args):
    """``(data, start)``: the zoo's data for ``name`` and its float model
    trained ``args.epochs`` epochs from seed 0, the start every seed
    fine-tunes."""
    import keras
    data = zoo.load(args, name)
    keras.utils.set_random_seed(0)
    start = zoo.build(name, keras, args.size)
    zoo.timed_train(start, data, args.epochs, 1e-3)
    return data, start


def run_model(name, args):
    import keras
    from tfcompress import quantize
    from tfcompress.convert import convert
    data, start = float_start(name, args)
    (xt, _), _ = data
    row = {"float_start_accuracy": common.keras_accuracy(start, data),
           "seeds": []}
    rate = zoo.finetune_rate(args, keras, len(xt), args.finetune_epochs)
    for seed in range(1, args.seeds + 1):
        keras.utils.set_random_seed(seed)
        fl = zoo.clone(start)
        if args.float_freeze_bn:
            freeze_batchnorm(fl)
        zoo.timed_train(fl, data, args.finetune_epochs, rate)
        keras.utils.set_random_seed(seed)
        scheme = quantize.Default8BitScheme(
            ema_decay=args.ema_decay,
            freeze_bn_delay=zoo.freeze_delay(args.freeze_bn_delay),
            activation_percentile=zoo.range_percentile(
                args.activation_percentile))
        q = quantize.quantize_model(zoo.clone(start), scheme)
        zoo.timed_train(q, data, args.finetune_epochs, rate)
        r = convert(q, "int8", strict=True,
                    representative_data=xt[:args.calibration_samples])
        one = {"seed": seed, "float": common.keras_accuracy(fl, data),
               "qat_keras": common.keras_accuracy(q, data),
               "qat_int8": common.tflite_accuracy(r.tflite_bytes, data)}
        row["seeds"].append(one)
        print(f"[{name}] seed {seed}: float {one['float']:.4f}, QAT int8 "
              f"{one['qat_int8']:.4f}", flush=True)
    row.update(summary([s["qat_int8"] - s["float"] for s in row["seeds"]]))
    return row


def markdown(results, args):
    lines = [f"E = {args.epochs} float epochs (seed 0), then per seed F = "
             f"{args.finetune_epochs} epochs (learning rate "
             f"{getattr(args, 'finetune_lr', zoo.FT_LR):g}"
             + (", cosine decay to 0" if getattr(
                 args, "finetune_schedule", "") == "cosine" else "")
             + ") of float and "
             "of QAT from the "
             f"same start with the same shuffling (QAT ema_decay "
             f"{getattr(args, 'ema_decay', 0.999):g}"
             + (f", freeze_bn_delay {args.freeze_bn_delay}"
                if zoo.freeze_delay(getattr(args, "freeze_bn_delay", None))
                is not None else "")
             + (f", activation_percentile {args.activation_percentile:g}"
                if zoo.range_percentile(getattr(
                    args, "activation_percentile", None)) is not None
                else "")
             + ("; float with batch norm frozen"
                if getattr(args, "float_freeze_bn", False) else "")
             + f"); {args.train_samples} "
             f"training / {args.test_samples} test images, "
             f"{args.size}x{args.size}. Difference: QAT int8 (TFLite) minus "
             "float (Keras), points.", "",
             "| model | float start | per seed: float / QAT int8 | mean "
             "difference | sd |", "|---|---|---|---|---|"]
    for name, r in results.items():
        seeds = "; ".join(f"{s['float']:.4f} / {s['qat_int8']:.4f}"
                          for s in r["seeds"])
        lines.append(f"| {name} | {r['float_start_accuracy']:.4f} | {seeds} "
                     f"| {r['mean_points']:+.2f} | {r['sd_points']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    results = {}
    for name in args.models.split(","):
        results[name] = run_model(name, args)
    common.save_models(args, results, markdown)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
