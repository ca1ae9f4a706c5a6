"""QAT accuracy and overhead, tfcompress vs tfmot, side by side in one run.

For each model: float Keras accuracy, post-training int8 (calibrated, 200
samples), QAT int8 TFLite accuracy, and the QAT/float train-step time
ratio, for tfcompress (Keras 3) and for tfmot 0.8.1 on the equivalent
tf_keras model (its own subprocess, started by this script).

    .venv/bin/python benchmarks/qat_accuracy.py
"""

import argparse
import os
import sys

import common


def ours(name, args, data):
    import keras
    from tfcompress import quantize
    from tfcompress.convert import convert
    from tfcompress.models import compile_classifier, get_model
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    m = compile_classifier(get_model(name))
    tf_ = common.step_timer()
    m.fit(x, y, epochs=args.epochs, batch_size=128, verbose=0,
          callbacks=[tf_])
    out = {"float_keras_accuracy": common.keras_accuracy(m, data),
           "float_step_s": tf_.median()}
    ptq = convert(m, "int8", representative_data=x[:200])
    out["ptq_tflite_accuracy"] = common.tflite_accuracy(ptq.tflite_bytes,
                                                        data)
    q = compile_classifier(quantize.quantize_model(m), 1e-4)
    tq = common.step_timer()
    q.fit(x, y, epochs=args.qat_epochs, batch_size=128, verbose=0,
          callbacks=[tq])
    out["qat_step_s"] = tq.median()
    out["qat_keras_accuracy"] = common.keras_accuracy(q, data)
    r = convert(q, "int8", representative_data=x[:200])
    out["qat_tflite_accuracy"] = common.tflite_accuracy(r.tflite_bytes, data)
    out["qat_fully_integer"] = r.report["fully_integer"]
    out["qat_overhead"] = out["qat_step_s"] / out["float_step_s"]
    return out


def tfmot(name, args):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.join(os.path.dirname(__file__),
                                        "tfmot_side.py"), "qat",
           "--model", name, "--train-samples", str(args.train_samples),
           "--test-samples", str(args.test_samples), "--epochs",
           str(args.epochs), "--qat-epochs", str(args.qat_epochs)]
    out = common.json_child(cmd, env=env)
    if "qat_step_s" in out:
        out["qat_overhead"] = out["qat_step_s"] / out["float_step_s"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lenet_300_100,seed_cnn")
    ap.add_argument("--train-samples", type=int, default=12000)
    ap.add_argument("--test-samples", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--qat-epochs", type=int, default=1)
    args = ap.parse_args()
    data = common.fashion_mnist(args.train_samples, args.test_samples)
    results = {}
    for name in args.models.split(","):
        results[name] = {"tfcompress": ours(name, args, data),
                         "tfmot": tfmot(name, args)}
    common.save("qat_accuracy", {"args": vars(args), "models": results})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
