"""Conversion figures for the seed CNN on Fashion-MNIST: every mode's size
and accuracy, post-training int8 with 200 calibration samples by each
calibration method, the gzip size of an 80%-pruned int8 model vs the
dense int8 model, and what TFLite's sparse storage (``sparse=True``) does
to that pruned model's size and single-thread latency (built-in kernels,
XNNPACK off for all four, since XNNPACK refuses sparse int8).

    .venv/bin/python benchmarks/convert_sizes.py --train-samples 20000
"""

import argparse

import common


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-samples", type=int, default=20000)
    ap.add_argument("--test-samples", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    import os
    import shutil
    import tempfile

    import keras
    from tfcompress import prune
    from tfcompress.convert import convert
    from tfcompress.models import seed_cnn
    data = common.fashion_mnist(args.train_samples, args.test_samples)
    (xt, yt), _ = data
    keras.utils.set_random_seed(0)
    model = common.train(seed_cnn(), data, args.epochs)
    float_acc = common.keras_accuracy(model, data)
    calib = xt[:200]
    modes = {}
    for mode in ("float32", "float16", "dynamic", "int8", "int16x8"):
        r = convert(model, mode, representative_data=calib, strict=False)
        modes[mode] = {"size_bytes": r.report["size_bytes"],
                       "gzip_bytes": r.report["gzip_bytes"],
                       "float_ops": len(r.fallback_ops),
                       "tflite_accuracy": common.tflite_accuracy(
                           r.tflite_bytes, data)}
    ptq = {}
    for method in ("minmax", "percentile", "entropy"):
        r = convert(model, "int8", representative_data=calib,
                    calibration=method)
        acc = common.tflite_accuracy(r.tflite_bytes, data)
        ptq[method] = {"tflite_accuracy": acc,
                       "drop_points": 100 * (float_acc - acc)}
    steps = len(xt) // 128
    pruned = prune.prune_low_magnitude(model, prune.PolynomialDecay(
        0.0, 0.8, 0, int(steps * 0.8), frequency=20))
    common.train(pruned, data, 1, lr=5e-4,
                 callbacks=[prune.UpdatePruningStep()])
    pruned = prune.strip_pruning(pruned)
    rp = convert(pruned, "int8", representative_data=calib)
    dense_gzip = modes["int8"]["gzip_bytes"]
    tmp = tempfile.mkdtemp()
    storage = {}
    for mode in ("float32", "int8"):
        for sparse in (False, True):
            key = f"{mode}_{'sparse' if sparse else 'dense'}_storage"
            r = convert(pruned, mode, representative_data=calib,
                        sparse=sparse,
                        output_path=os.path.join(tmp, key + ".tflite"))
            storage[key] = {"size_bytes": r.report["size_bytes"],
                            "gzip_bytes": r.report["gzip_bytes"],
                            "densify_ops": sum(o["op"] == "DENSIFY"
                                               for o in r.report["ops"]),
                            "tflite_accuracy": common.tflite_accuracy(
                                r.tflite_bytes, data), "path": r.path}
    p50 = common.alternating_p50([v["path"] for v in storage.values()],
                                 runs=100, repeats=3, xnnpack=False)
    for v in storage.values():
        v["p50_ms_no_xnnpack"] = p50[v.pop("path")]
    shutil.rmtree(tmp)
    common.save("convert_sizes", {
        "args": vars(args), "float_keras_accuracy": float_acc,
        "modes": modes, "ptq_int8_200_samples": ptq,
        "pruned80_int8": {"gzip_bytes": rp.report["gzip_bytes"],
                          "sparsity": rp.report["sparsity"],
                          "tflite_accuracy": common.tflite_accuracy(
                              rp.tflite_bytes, data),
                          "gzip_ratio_vs_dense_int8":
                              rp.report["gzip_bytes"] / dense_gzip},
        "pruned80_storage": storage})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
