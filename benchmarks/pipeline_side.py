"""One side of ``benchmarks/compare_tfmot.py``: dense -> prune (polynomial
decay to 80%) -> prune-preserving QAT -> int8 TFLite, with tfcompress on
Keras 3 or with tfmot 0.8.1 on tf_keras. Same data, seed, epochs, batch
size, learning rates and schedule on both sides.

    python benchmarks/pipeline_side.py --side tfmot --model lenet_300_100 --out /tmp/cmp

Prints one JSON object; writes ``<out>/<side>_<model>.tflite``.
"""

import argparse
import gzip
import json
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=("tfcompress", "tfmot"), required=True)
    p.add_argument("--model", default="lenet_300_100")
    p.add_argument("--out", required=True)
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument("--test-samples", type=int, default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sparsity", type=float, default=0.8)
    p.add_argument("--calibration-samples", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-dense", default=None,
                   help="write the trained dense weights to this .npz")
    p.add_argument("--dense-from", default=None,
                   help="start from these dense weights (.npz written by "
                        "--save-dense on either side) instead of training")
    p.add_argument("--no-shuffle", action="store_true",
                   help="same batch order on both sides")
    return p.parse_args(argv)


ARGS = parse_args()
if ARGS.side == "tfmot":
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402


class Side:
    """What differs between tfcompress and tfmot: the Keras module, the
    model builder, and the prune / QAT / convert calls."""

    def __init__(self, side):
        self.name = side
        if side == "tfmot":
            import tensorflow_model_optimization as tfmot
            import tf_keras
            self.keras, self.tfmot = tf_keras, tfmot
            self.version = tfmot.__version__
        else:
            import keras
            import tfcompress
            self.keras = keras
            self.version = tfcompress.__version__

    def build(self, model_name):
        from tfcompress.models import get_model
        return get_model(model_name, keras_module=self.keras)

    def prune(self, model, schedule_kwargs):
        if self.name == "tfmot":
            s = self.tfmot.sparsity.keras
            return (s.prune_low_magnitude(
                model, pruning_schedule=s.PolynomialDecay(**schedule_kwargs)),
                s.UpdatePruningStep(), s.strip_pruning)
        from tfcompress import prune
        return (prune.prune_low_magnitude(
            model, pruning_schedule=prune.PolynomialDecay(**schedule_kwargs)),
            prune.UpdatePruningStep(), prune.strip_pruning)

    def prune_preserving_qat(self, model):
        if self.name == "tfmot":
            q = self.tfmot.quantization.keras
            scheme = self.tfmot.experimental.combine.\
                Default8BitPrunePreserveQuantizeScheme()
            return q.quantize_apply(q.quantize_annotate_model(model), scheme)
        from tfcompress import quantize
        return quantize.quantize_model(model,
                                       quantize.PrunePreservingScheme())

    def convert_int8(self, model, calibration):
        if self.name == "tfmot":
            import tensorflow as tf
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda: (
                [calibration[i:i + 1]] for i in range(len(calibration)))
            conv.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            return conv.convert()
        from tfcompress.convert import convert
        return convert(model, "int8",
                       representative_data=calibration).tflite_bytes


def compile_(side, model, lr):
    k = side.keras
    model.compile(k.optimizers.Adam(lr),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def fit(side, model, data, epochs, callbacks=()):
    import common
    (x, y), _ = data
    timer = common.step_timer(side.keras)
    model.fit(x, y, epochs=epochs, batch_size=ARGS.batch_size, verbose=0,
              shuffle=not ARGS.no_shuffle,
              callbacks=[timer, *callbacks])
    return timer.median()


def keras_accuracy(model, data):
    _, (xv, yv) = data
    return float(np.mean(np.asarray(model.predict(
        xv, batch_size=500, verbose=0)).argmax(1) == yv))


def flatbuffer_figures(tflite_bytes, data):
    import common
    from tfcompress.inspect import inspect
    rep = inspect(tflite_bytes)
    big = [w for w in rep["weights"]
           if w["dtype"] == "INT8" and w["params"] >= 1000]
    params = sum(w["params"] for w in big)
    nonzero = sum(w["nonzero"] for w in big)
    return {
        "tflite_accuracy": common.tflite_accuracy(tflite_bytes, data),
        "fully_integer": rep["fully_integer"],
        "float_ops": rep["float_ops"],
        "size_bytes": len(tflite_bytes),
        "gzip_bytes": len(gzip.compress(tflite_bytes, 9)),
        "int8_weight_sparsity": round(1 - nonzero / params, 4)
        if params else 0.0,
    }


def main():
    import common
    side = Side(ARGS.side)
    data = common.fashion_mnist(ARGS.train_samples, ARGS.test_samples)
    (x, _), _ = data
    steps_per_epoch = -(-len(x) // ARGS.batch_size)
    out = {"side": side.name, "version": side.version, "model": ARGS.model,
           "seed": ARGS.seed}

    side.keras.utils.set_random_seed(ARGS.seed)
    model = compile_(side, side.build(ARGS.model), 1e-3)
    out["params"] = int(model.count_params())
    if ARGS.dense_from:
        with np.load(ARGS.dense_from) as f:
            model.set_weights([f[f"w{i}"] for i in range(len(f.files))])
        out["dense_step_s"] = None      # not trained here
    else:
        out["dense_step_s"] = fit(side, model, data, ARGS.epochs)
    if ARGS.save_dense:
        np.savez(ARGS.save_dense, **{f"w{i}": w for i, w in
                                     enumerate(model.get_weights())})
    out["dense_keras_accuracy"] = keras_accuracy(model, data)

    prune_steps = ARGS.prune_epochs * steps_per_epoch
    schedule = dict(initial_sparsity=0.0, final_sparsity=ARGS.sparsity,
                    begin_step=0, end_step=int(prune_steps * 0.7),
                    frequency=max(1, prune_steps // 20))
    out["prune_schedule"] = schedule
    pruned, update_step, strip = side.prune(model, schedule)
    compile_(side, pruned, 1e-4)
    out["pruned_step_s"] = fit(side, pruned, data, ARGS.prune_epochs,
                               [update_step])
    stripped = strip(pruned)
    out["pruned_keras_accuracy"] = keras_accuracy(stripped, data)

    calibration = x[:ARGS.calibration_samples]
    try:
        qat = side.prune_preserving_qat(stripped)
    except Exception as e:  # tfmot refuses some models (seed CNN's BN)
        out["qat_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        out["int8_from"] = "pruned model, post-training int8 (QAT refused)"
        final = stripped
    else:
        compile_(side, qat, 1e-4)
        out["qat_step_s"] = fit(side, qat, data, ARGS.qat_epochs)
        out["qat_keras_accuracy"] = keras_accuracy(qat, data)
        out["int8_from"] = "prune-preserving QAT"
        final = qat
    t0 = time.perf_counter()
    tflite = side.convert_int8(final, calibration)
    out["conversion_s"] = time.perf_counter() - t0
    os.makedirs(ARGS.out, exist_ok=True)
    path = os.path.join(ARGS.out,
                        f"{side.name}_{ARGS.model}_{ARGS.seed}.tflite")
    with open(path + ".tmp", "wb") as f:
        f.write(tflite)
    os.replace(path + ".tmp", path)
    out["tflite_path"] = path
    out.update(flatbuffer_figures(tflite, data))
    if out["dense_step_s"] is None:
        print(json.dumps(out))
        return
    out["pruned_over_dense_step"] = out["pruned_step_s"] / out["dense_step_s"]
    if "qat_step_s" in out:
        out["qat_over_dense_step"] = out["qat_step_s"] / out["dense_step_s"]
    print(json.dumps(out))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
