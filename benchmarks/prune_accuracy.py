"""Accuracy cost of pruning the seed CNN to 80 % on Fashion-MNIST.

1. Trains the dense seed CNN (``--dense-epochs``, default 2) and records
   its test accuracy: the baseline the issue compares against.
2. Prunes a copy with PolynomialDecay 0 -> 80 % (sparsity ramp over the
   first ``--ramp`` fraction of the fine-tune, masks updated every 100
   steps) during ``--prune-epochs`` (default 2), strips the wrappers and
   records test accuracy and measured sparsity of every pruned kernel.
3. Also continues the dense model for the same number of epochs, so the
   pruned model is compared with equally trained dense weights too.

    .venv/bin/python benchmarks/prune_accuracy.py
    .venv/bin/python benchmarks/prune_accuracy.py --train-size 10000  # quick

Writes benchmarks/results/prune_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dense-epochs", type=int, default=2)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--final-sparsity", type=float, default=0.8)
    p.add_argument("--ramp", type=float, default=0.6,
                   help="fraction of the fine-tune over which sparsity "
                        "rises; the rest recovers at the final sparsity")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--train-size", type=int, default=None,
                   help="use only the first N training images")
    p.add_argument("--no-continued-baseline", action="store_true",
                   help="skip step 3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(
        ROOT, "benchmarks", "results", "prune_accuracy.json"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    from tfcompress import prune
    from tfcompress.data import load_fashion_mnist, prepare_images
    from tfcompress.models import compile_classifier, seed_cnn
    from tfcompress.utils import atomic_write_text

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(download=False)
    x_train, x_test = prepare_images(x_train), prepare_images(x_test)
    if args.train_size:
        x_train, y_train = x_train[:args.train_size], y_train[:args.train_size]
    fit = dict(batch_size=args.batch_size, verbose=2)

    def accuracy(model):
        return float(model.evaluate(x_test, y_test, batch_size=256,
                                    verbose=0)[1])

    started = time.time()
    dense = compile_classifier(seed_cnn(), args.learning_rate)
    dense.fit(x_train, y_train, epochs=args.dense_epochs, **fit)
    dense_accuracy = accuracy(dense)
    print(f"dense baseline: test accuracy {dense_accuracy:.4f}")

    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    prune_steps = steps_per_epoch * args.prune_epochs
    end_step = max(1, int(prune_steps * args.ramp))
    schedule = prune.PolynomialDecay(0.0, args.final_sparsity, begin_step=0,
                                     end_step=end_step, frequency=100)
    pruned = compile_classifier(prune.prune_low_magnitude(dense, schedule),
                                args.learning_rate)
    pruned.fit(x_train, y_train, epochs=args.prune_epochs,
               callbacks=[prune.UpdatePruningStep()], **fit)
    rows = prune.summary(pruned)
    stripped = compile_classifier(prune.strip_pruning(pruned))
    pruned_accuracy = accuracy(stripped)
    kernels = {r["layer"]: r["sparsity"] for r in rows
               if r["status"] == "pruned"}
    total = sum(r["params"] for r in rows if r["status"] == "pruned")
    overall = sum(r["params"] * r["sparsity"] for r in rows
                  if r["status"] == "pruned") / total
    print(f"pruned to {args.final_sparsity:.0%}: test accuracy "
          f"{pruned_accuracy:.4f}, measured kernel sparsity {overall:.4f}")

    result = {
        "benchmark": "prune_accuracy", "model": "seed_cnn",
        "dataset": "fashion_mnist", "train_images": int(len(x_train)),
        "test_images": int(len(x_test)), "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "seed": args.seed,
        "dense_epochs": args.dense_epochs, "prune_epochs": args.prune_epochs,
        "schedule": schedule.get_config(),
        "dense_test_accuracy": round(dense_accuracy, 4),
        "pruned_test_accuracy": round(pruned_accuracy, 4),
        "accuracy_drop_points": round(100 * (dense_accuracy
                                             - pruned_accuracy), 2),
        "kernel_sparsity": kernels,
        "overall_pruned_kernel_sparsity": round(overall, 4),
        "target_met": (100 * (dense_accuracy - pruned_accuracy) <= 1.0 and
                       all(abs(s - args.final_sparsity) <= 0.01
                           for s in kernels.values())),
    }
    if not args.no_continued_baseline:
        dense.fit(x_train, y_train, epochs=args.prune_epochs, **fit)
        continued = accuracy(dense)
        print(f"dense trained {args.prune_epochs} more epochs: test "
              f"accuracy {continued:.4f}")
        result["dense_continued_test_accuracy"] = round(continued, 4)
        result["drop_vs_continued_points"] = round(
            100 * (continued - pruned_accuracy), 2)
    result["seconds"] = round(time.time() - started, 1)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items()
                      if k != "schedule"}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    sys.exit(main())
