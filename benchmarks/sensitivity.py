"""Per-layer sensitivity of the seed CNN on a 2,000-sample evaluation
subset of Fashion-MNIST: wall time, table and proposed sparsities.

    .venv/bin/python benchmarks/sensitivity.py
"""

import argparse
import time

import common


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-samples", type=int, default=12000)
    ap.add_argument("--eval-samples", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    import keras
    from tfcompress.analyze import (layers_to_keep_float,
                                    propose_sparsities, sensitivity)
    from tfcompress.models import seed_cnn
    data = common.fashion_mnist(args.train_samples, args.eval_samples)
    keras.utils.set_random_seed(0)
    model = common.train(seed_cnn(), data, args.epochs)
    start = time.time()
    result = sensitivity(model, data[1])
    seconds = time.time() - start
    print(result.table())
    result.plot(f"{common.RESULTS}/sensitivity_seed_cnn.png")
    common.save("sensitivity", {
        "args": vars(args), "analysis_seconds": round(seconds, 1),
        "result": result.to_dict(),
        "proposed_sparsities_1pt": propose_sparsities(result, 1.0),
        "keep_float_int4_1pt": layers_to_keep_float(result, 4, 1.0)})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
