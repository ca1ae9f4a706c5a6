"""ResNet-20 QAT, batch by batch: where QAT loses accuracy against the
float model continued for the same epoch.

Trains benchmarks/zoo.py's ResNet-20 (Fashion-MNIST 32x32x3, E float
epochs at 1e-3), then fine-tunes copies of it for one epoch at 5e-4 and
prints the training loss and the test accuracy (Keras, inference mode)
after the first batch and every 8th:

- ``qat``: ``tfcompress.quantize.quantize_model`` (before that, the QAT
  model's accuracy with its ranges set by 4 training-mode batches);
- ``float_frozen_bn``: the float model with its BatchNormalization layers
  frozen (``trainable = False``: moving statistics, no batch statistics);
- ``float``: the float model as it is.

``--tfmot`` runs the same on tf_keras with tfmot 0.8.1's ``quantize_model``
(``qat`` and ``float`` only; a separate process, as tf_keras needs).

    .venv/bin/python benchmarks/qat_batchnorm.py
    .venv/bin/python benchmarks/qat_batchnorm.py --tfmot
"""

import os
import sys

if "--tfmot" in sys.argv:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"   # before TensorFlow loads

import argparse  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402,F401  (sys.path, TF log level)
import numpy as np  # noqa: E402
import zoo  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tfmot", action="store_true",
                   help="tf_keras + tfmot 0.8.1 instead of tfcompress")
    p.add_argument("--epochs", type=int, default=2, help="float epochs E")
    p.add_argument("--train-samples", type=int, default=4000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--runs", default="qat,float_frozen_bn,float",
                   help="comma-separated fine-tunes to run")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.tfmot:
        import tf_keras as k
        import tensorflow_model_optimization as tfmot
        quantize_model = tfmot.quantization.keras.quantize_model
    else:
        import keras as k
        from tfcompress.quantize import quantize_model
    args.size = 32
    data = zoo.load(args, "resnet20")
    (xt, yt), (xv, yv) = data

    def accuracy(m):
        return float(np.mean(m.predict(xv, batch_size=500, verbose=0)
                             .argmax(1) == yv))

    class EveryEighth(k.callbacks.Callback):
        def __init__(self, tag):
            super().__init__()
            self.tag = tag

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0 or batch % 8 == 7:
                print(f"{self.tag} batch {batch + 1} loss "
                      f"{logs['loss']:.3f} accuracy "
                      f"{accuracy(self.model):.3f}", flush=True)

    def fit(m, epochs, lr, callbacks=()):
        m.compile(k.optimizers.Adam(lr),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        m.fit(xt, yt, epochs=epochs, batch_size=zoo.BATCH, verbose=0,
              callbacks=list(callbacks))

    def copy(m):
        c = k.models.clone_model(m)
        c.set_weights(m.get_weights())
        return c

    k.utils.set_random_seed(0)
    fl = zoo.build("resnet20", k, 32)
    fit(fl, args.epochs, 1e-3)
    print(f"float after {args.epochs} epochs: {accuracy(fl):.3f}",
          flush=True)
    for run in args.runs.split(","):
        if run == "float_frozen_bn" and args.tfmot:
            continue
        m = copy(fl)
        if run == "qat":
            m = quantize_model(m)
            if not args.tfmot:
                probe = quantize_model(copy(fl))
                for i in range(0, 4 * zoo.BATCH, zoo.BATCH):
                    probe(xt[i:i + zoo.BATCH], training=True)
                print(f"qat before training (ranges from 4 batches): "
                      f"{accuracy(probe):.3f}", flush=True)
        elif run == "float_frozen_bn":
            for layer in m.layers:
                if isinstance(layer, k.layers.BatchNormalization):
                    layer.trainable = False
        k.utils.set_random_seed(1)
        t = time.perf_counter()
        fit(m, 1, zoo.FT_LR, [EveryEighth(run)])
        print(f"{run}: {accuracy(m):.3f} after one epoch "
              f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
