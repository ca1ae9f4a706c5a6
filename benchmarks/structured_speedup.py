"""Structured channel pruning: accuracy, MACs and int8 latency of the
shrunk model vs the unpruned one, measured in one run.

Trains the model, removes 50% of the channels of every prunable layer with
``ChannelPruning`` during a fine-tune, shrinks it, fine-tunes the shrunk
model for ``--recover-epochs`` (optionally distilling from the unpruned
model, ``--distill``), converts both to int8 and benchmarks them
single-threaded. The unpruned reference gets the same number of extra
epochs, so both have trained equally long.

    .venv/bin/python benchmarks/structured_speedup.py --train-samples 20000
    .venv/bin/python benchmarks/structured_speedup.py --train-samples 0 --recover-epochs 2 --distill
"""

import argparse
import os
import tempfile

import common
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="seed_cnn,mobilenet_small")
    ap.add_argument("--train-samples", type=int, default=20000,
                    help="0: all 60,000")
    ap.add_argument("--test-samples", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--recover-epochs", type=int, default=0)
    ap.add_argument("--distill", action="store_true",
                    help="recover by distilling from the unpruned model")
    ap.add_argument("--runs", type=int, default=100)
    args = ap.parse_args()
    import keras
    from tfcompress import prune
    from tfcompress.bench import benchmark_model
    from tfcompress.convert import convert
    from tfcompress.models import get_model
    data = common.fashion_mnist(args.train_samples or None,
                                args.test_samples)
    (xt, _), _ = data
    tmp = tempfile.mkdtemp()
    out = {}
    for name in args.models.split(","):
        keras.utils.set_random_seed(0)
        trained = common.train(get_model(name), data, args.epochs)
        pruned = keras.models.clone_model(trained)
        pruned.set_weights(trained.get_weights())
        # the unpruned reference gets the same fine-tune, without pruning
        dense = trained
        common.train(dense, data, args.finetune_epochs + args.recover_epochs,
                     lr=5e-4)
        dense_acc = common.keras_accuracy(dense, data)
        steps = int(np.ceil(len(xt) / 128))
        cb = prune.ChannelPruning(prune.PolynomialDecay(
            0.0, args.sparsity, 0, steps * args.finetune_epochs // 2,
            frequency=max(1, steps // 4)))
        common.train(pruned, data, args.finetune_epochs, lr=5e-4,
                     callbacks=[cb])
        small = prune.shrink(pruned)
        shrunk_acc = common.keras_accuracy(small, data)
        if args.recover_epochs and args.distill:
            from tfcompress.distill import Distiller
            (x, y), _ = data
            d = Distiller(small, None, temperature=4.0, alpha=0.5)
            d.compile(keras.optimizers.Adam(5e-4), metrics=["accuracy"])
            d.fit(x, (y, dense.predict(x, batch_size=500, verbose=0)),
                  epochs=args.recover_epochs, batch_size=128, verbose=0)
        elif args.recover_epochs:
            common.train(small, data, args.recover_epochs, lr=5e-4)
        small_acc = common.keras_accuracy(small, data)
        rows = {}
        for label, m in (("dense", dense), ("shrunk", small)):
            path = os.path.join(tmp, f"{name}_{label}.tflite")
            r = convert(m, "int8", representative_data=xt[:200],
                        output_path=path)
            b = benchmark_model(path, runs=args.runs, threads=1)
            rows[label] = {"keras_accuracy": dense_acc if label == "dense"
                           else small_acc,
                           "tflite_accuracy": common.tflite_accuracy(
                               r.tflite_bytes, data),
                           "params": int(m.count_params()),
                           "macs": prune.count_macs(m),
                           "size_bytes": r.report["size_bytes"],
                           "p50_ms": b["latency"]["p50_ms"]}
        out[name] = {**rows, "shrunk_keras_accuracy_before_recovery":
                     shrunk_acc,
                     "accuracy_drop_points": 100 * (
                         rows["dense"]["tflite_accuracy"] -
                         rows["shrunk"]["tflite_accuracy"]),
                     "int8_speedup": rows["dense"]["p50_ms"] /
                     rows["shrunk"]["p50_ms"],
                     "mac_ratio": rows["shrunk"]["macs"] /
                     rows["dense"]["macs"],
                     "channels_removed": args.sparsity}
    common.save("structured_speedup", {"args": vars(args), "models": out})


if __name__ == "__main__":
    main()
