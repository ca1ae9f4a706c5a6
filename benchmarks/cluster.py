"""Weight clustering on the seed CNN (Fashion-MNIST), in one run:

1. dense baseline -> int8 (post-training): the reference;
2. clustered: 16 clusters on every Conv/Dense kernel, fine-tuned -> int8;
   distinct int8 values per kernel (per output channel for conv kernels);
3. pruned 80% -> clustered 16 (zeros kept) -> cluster-preserving QAT ->
   int8 (Deep Compression's pipeline): its size ratio to the float32
   flatbuffer of the same model (raw and gzip; the headline), to the
   dense int8 flatbuffer and, labelled as such, to the .keras file holding
   the Adam state; and the Deep Compression estimate n*log2(k) + k*32
   bits per layer.

    .venv/bin/python benchmarks/cluster.py                       # full data
    .venv/bin/python benchmarks/cluster.py --train-samples 12000
"""

import argparse
import gzip
import os
import tempfile

import common
import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-samples", type=int, default=None)
    p.add_argument("--test-samples", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--prune-epochs", type=int, default=2)
    p.add_argument("--cluster-epochs", type=int, default=1)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--clusters", type=int, default=16)
    p.add_argument("--sparsity", type=float, default=0.8)
    return p.parse_args(argv)


def int8_figures(result, data):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=result.tflite_bytes)
    names = {w["name"]: w for w in result.report["weights"]
             if w["dtype"] == "INT8" and w["params"] >= 100}
    per_kernel = {}
    for d in it.get_tensor_details():
        if d["name"] in names:
            w = it.get_tensor(d["index"])
            # TFLite keeps the output channel first: (out, ...) for
            # FULLY_CONNECTED and CONV_2D kernels
            rows = w.reshape(w.shape[0], -1)
            per_kernel[d["name"]] = {
                "shape": list(w.shape), "distinct": int(len(np.unique(w))),
                "per_channel_scales": len(d["quantization_parameters"][
                    "scales"]) > 1,
                "distinct_per_channel_max": int(max(
                    len(np.unique(r)) for r in rows)),
                "zeros": round(float((w == 0).mean()), 4)}
    return {"tflite_accuracy": common.tflite_accuracy(result.tflite_bytes,
                                                      data),
            "fully_integer": result.report["fully_integer"],
            "size_bytes": len(result.tflite_bytes),
            "gzip_bytes": len(gzip.compress(result.tflite_bytes, 9)),
            "kernels": per_kernel}


def main(argv=None):
    args = parse_args(argv)
    import keras
    from tfcompress import cluster, prune, quantize
    from tfcompress.convert import convert
    from tfcompress.models import compile_classifier, seed_cnn
    data = common.fashion_mnist(args.train_samples, args.test_samples)
    (x, y), _ = data
    calib = x[:200]
    k = args.clusters
    out = {"args": vars(args)}

    keras.utils.set_random_seed(0)
    dense = common.train(seed_cnn(), data, args.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dense.keras")
        dense.save(path)
        out["float_keras_bytes"] = os.path.getsize(path)
        plain = seed_cnn()          # weights only (clone_model would keep
        plain.set_weights(dense.get_weights())   # the Adam state)
        plain.save(path)
        out["float_keras_weights_only_bytes"] = os.path.getsize(path)
    out["dense_keras_accuracy"] = common.keras_accuracy(dense, data)
    out["float32_tflite_bytes"] = len(convert(dense, "float32").tflite_bytes)
    out["dense_int8"] = int8_figures(
        convert(dense, "int8", representative_data=calib), data)
    print("dense:", out["dense_keras_accuracy"], flush=True)

    # 2. clustered dense model
    clustered = compile_classifier(cluster.cluster_weights(dense, k), 1e-4)
    clustered.fit(x, y, epochs=args.cluster_epochs, batch_size=128,
                  verbose=0)
    stripped = cluster.strip_clustering(clustered)
    out["clustered_keras_accuracy"] = common.keras_accuracy(stripped, data)
    out["clustered_int8"] = int8_figures(
        convert(stripped, "int8", representative_data=calib), data)
    print("clustered:", out["clustered_keras_accuracy"], flush=True)

    # 3. prune -> cluster (zeros kept) -> cluster-preserving QAT
    steps = args.prune_epochs * -(-len(x) // 128)
    pruned = compile_classifier(prune.prune_low_magnitude(
        dense, prune.PolynomialDecay(0.0, args.sparsity, 0, int(0.7 * steps),
                                     frequency=max(1, steps // 20))), 1e-4)
    pruned.fit(x, y, epochs=args.prune_epochs, batch_size=128, verbose=0,
               callbacks=[prune.UpdatePruningStep()])
    pruned = prune.strip_pruning(pruned)
    out["pruned_keras_accuracy"] = common.keras_accuracy(pruned, data)
    pc = compile_classifier(cluster.cluster_weights(
        pruned, k, preserve_sparsity=True), 1e-4)
    pc.fit(x, y, epochs=args.cluster_epochs, batch_size=128, verbose=0)
    rows = cluster.summary(pc, print_fn=None)
    out["deep_compression_estimate_bytes"] = int(sum(
        r["deep_compression_bits"] for r in rows) / 8)
    pc = cluster.strip_clustering(pc)
    # Deep Compression stores only the non-zeros of a pruned layer: a
    # log2(k)-bit cluster index and a 5-bit relative position each
    nonzero = sum(int(np.count_nonzero(l.kernel.numpy()))
                  for l in pc.layers if hasattr(l, "kernel"))
    out["deep_compression_sparse_estimate_bytes"] = int(
        nonzero * (np.log2(k) + 5) / 8 + len(rows) * k * 4)
    out["pruned_clustered_keras_accuracy"] = common.keras_accuracy(pc, data)
    q = compile_classifier(quantize.quantize_model(
        pc, quantize.ClusterPreservingScheme()), 1e-4)
    q.fit(x, y, epochs=args.qat_epochs, batch_size=128, verbose=0)
    out["pcqat_keras_accuracy"] = common.keras_accuracy(q, data)
    out["pcqat_int8"] = int8_figures(convert(q, "int8",
                                             representative_data=calib), data)
    print("pruned+clustered+QAT:", out["pcqat_int8"]["tflite_accuracy"],
          flush=True)

    g = out["pcqat_int8"]["gzip_bytes"]
    ref = out["float32_tflite_bytes"]
    out["pcqat_ratio_vs_float32_tflite"] = {
        "raw": ref / out["pcqat_int8"]["size_bytes"], "gzip": ref / g}
    out["pcqat_vs_float_keras_with_adam_state"] = \
        out["float_keras_bytes"] / g
    out["pcqat_vs_float_keras_weights_only"] = \
        out["float_keras_weights_only_bytes"] / g
    out["pcqat_vs_dense_int8_gzip"] = out["dense_int8"]["gzip_bytes"] / g
    out["clustered_vs_dense_int8_gzip"] = (
        out["dense_int8"]["gzip_bytes"] / out["clustered_int8"]["gzip_bytes"])
    out["clustered_accuracy_loss_points"] = 100 * (
        out["dense_keras_accuracy"] - out["clustered_int8"]["tflite_accuracy"])
    out["pcqat_accuracy_loss_points"] = 100 * (
        out["dense_keras_accuracy"] - out["pcqat_int8"]["tflite_accuracy"])
    r = out["pcqat_ratio_vs_float32_tflite"]
    print(f"pruned+clustered+QAT int8: {r['gzip']:.1f}x smaller than the "
          f"float32 flatbuffer gzipped ({r['raw']:.1f}x raw; {ref:,} -> "
          f"{g:,} bytes gzip), accuracy "
          f"{out['pcqat_int8']['tflite_accuracy']:.4f} (float "
          f"{out['dense_keras_accuracy']:.4f})", flush=True)
    common.save("cluster", out)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
