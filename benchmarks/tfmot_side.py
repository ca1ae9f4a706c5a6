"""The tfmot (tf_keras) side of the side-by-side benchmarks.

Runs in its own process (tfmot needs TF_USE_LEGACY_KERAS=1 before
TensorFlow is imported); prints one JSON object.

    TF_USE_LEGACY_KERAS=1 python benchmarks/tfmot_side.py qat --model lenet_300_100
"""

import argparse
import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import common  # noqa: E402


def build(name):
    """The reference model ``name`` built with tf_keras."""
    import tf_keras
    from tfcompress.models import get_model
    return get_model(name, keras_module=tf_keras)


def compile_(m, lr):
    import tf_keras as k
    m.compile(k.optimizers.Adam(lr), k.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["qat"])
    ap.add_argument("--model", default="lenet_300_100")
    ap.add_argument("--train-samples", type=int, default=12000)
    ap.add_argument("--test-samples", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--qat-epochs", type=int, default=1)
    args = ap.parse_args()
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as k
    from tfcompress.recipes import load_data
    (x, y), (xt, yt) = load_data("fashion_mnist", args.train_samples,
                                 args.test_samples)
    k.utils.set_random_seed(0)
    m = compile_(build(args.model), 1e-3)
    t_float = common.step_timer(k)
    m.fit(x, y, epochs=args.epochs, batch_size=128, verbose=0,
          callbacks=[t_float])
    out = {"model": args.model, "tfmot": tfmot.__version__,
           "float_keras_accuracy": float(m.evaluate(xt, yt, verbose=0)[1]),
           "float_step_s": t_float.median()}
    try:
        q = tfmot.quantization.keras.quantize_model(m)
    except Exception as e:
        out["qat_error"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        print(json.dumps(out))
        return
    compile_(q, 1e-4)
    t_qat = common.step_timer(k)
    q.fit(x, y, epochs=args.qat_epochs, batch_size=128, verbose=0,
          callbacks=[t_qat])
    out["qat_step_s"] = t_qat.median()
    out["qat_keras_accuracy"] = float(q.evaluate(xt, yt, verbose=0)[1])
    conv = tf.lite.TFLiteConverter.from_keras_model(q)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    tfl = conv.convert()
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=tfl)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    hits = 0
    for n in range(len(xt)):
        it.set_tensor(i["index"], xt[n:n + 1])
        it.invoke()
        hits += int(it.get_tensor(o["index"])[0].argmax() == yt[n])
    out["qat_tflite_accuracy"] = hits / len(xt)
    print(json.dumps(out))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
