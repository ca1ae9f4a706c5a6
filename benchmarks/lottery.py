"""Lottery ticket on LeNet-300-100 / Fashion-MNIST: iterative magnitude
pruning, 20% per round (output layer 10%), rewinding to the initial
weights, with a random re-initialisation control; several seeds.

    .venv/bin/python benchmarks/lottery.py --rounds 7 --seeds 3
"""

import argparse

import common
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-samples", type=int, default=None)
    args = ap.parse_args()
    import keras
    from tfcompress.models import compile_classifier, lenet_300_100
    from tfcompress.prune.lottery import find_winning_ticket
    data = common.fashion_mnist(args.train_samples, None)
    (x, y), (xt, yt) = data

    def model_fn(seed):
        keras.utils.set_random_seed(seed)
        return compile_classifier(lenet_300_100(), 1.2e-3)

    def train_fn(model, callbacks):
        model.fit(x, y, epochs=args.epochs, batch_size=60, verbose=0,
                  callbacks=callbacks)
        return {"accuracy": common.keras_accuracy(model, data)}

    runs = []
    for seed in range(args.seeds):
        rows = find_winning_ticket(model_fn, train_fn, rounds=args.rounds,
                                   prune_fraction_per_round=0.2, seed=seed)
        runs.append(rows)
        for r in rows:
            print(f"seed {seed} round {r['round']} remaining "
                  f"{r['remaining']:.3f} acc {r['accuracy']:.4f} control "
                  f"{r['control_accuracy']}")
    table = []
    for i in range(args.rounds + 1):
        acc = [run[i]["accuracy"] for run in runs]
        ctl = [run[i]["control_accuracy"] for run in runs
               if run[i]["control_accuracy"] is not None]
        table.append({"round": i, "remaining": runs[0][i]["remaining"],
                      "ticket_mean": float(np.mean(acc)),
                      "ticket_std": float(np.std(acc)),
                      "control_mean": float(np.mean(ctl)) if ctl else None})
    common.save("lottery", {"args": vars(args), "table": table,
                            "runs": runs})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
