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
    .venv/bin/python benchmarks/structured_speedup.py --models mobilenet_small,mobilenet_small:32 ...

``--models`` takes reference model names; ``mobilenet_small:32`` is the
small MobileNet with 32 stem filters instead of 16 (every layer twice as
wide).

Latency: p50 of each int8 flatbuffer, single thread, the median of
``--repeats`` rounds that time the unpruned and the shrunk model in turn.
"""

import argparse
import os
import shutil
import tempfile

import common
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="seed_cnn,mobilenet_small",
                    help="comma-separated; NAME:WIDTH sets mobilenet_small's "
                         "stem width (default 16)")
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
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--name", default="structured_speedup",
                    help="results file benchmarks/results/<name>.json")
    args = ap.parse_args()
    import keras
    from tfcompress import prune
    from tfcompress.convert import convert
    from tfcompress.models import get_model
    data = common.fashion_mnist(args.train_samples or None,
                                args.test_samples)
    (xt, _), _ = data
    tmp = tempfile.mkdtemp()
    out, paths = {}, {}
    for spec in args.models.split(","):
        keras.utils.set_random_seed(0)
        name, _, width = spec.partition(":")
        kwargs = {"width": int(width)} if width else {}
        trained = common.train(get_model(name, **kwargs), data, args.epochs)
        if width:
            name = f"{name}_width{width}"
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
            paths[name, label] = os.path.join(tmp, f"{name}_{label}.tflite")
            r = convert(m, "int8", representative_data=xt[:200],
                        output_path=paths[name, label])
            rows[label] = {"keras_accuracy": dense_acc if label == "dense"
                           else small_acc,
                           "tflite_accuracy": common.tflite_accuracy(
                               r.tflite_bytes, data),
                           "params": int(m.count_params()),
                           "macs": prune.count_macs(m),
                           "size_bytes": r.report["size_bytes"]}
        out[name] = {**rows, "shrunk_keras_accuracy_before_recovery":
                     shrunk_acc,
                     "accuracy_drop_points": 100 * (
                         rows["dense"]["tflite_accuracy"] -
                         rows["shrunk"]["tflite_accuracy"]),
                     "mac_ratio": rows["shrunk"]["macs"] /
                     rows["dense"]["macs"],
                     "channels_removed": args.sparsity}
    # timed after all training, every flatbuffer in turn: timing right
    # after a model's training read up to 40% slow on some flatbuffers
    p50 = common.alternating_p50(list(paths.values()), args.runs,
                                 args.repeats)
    for (name, label), path in paths.items():
        out[name][label]["p50_ms"] = p50[path]
    shutil.rmtree(tmp)
    for row in out.values():
        row["int8_speedup"] = row["dense"]["p50_ms"] / row["shrunk"]["p50_ms"]
    common.save(args.name, {"args": vars(args), "models": out})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
