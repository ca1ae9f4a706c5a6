"""Stage implementations: each takes a Keras model (or a .tflite path) and
the stage's validated parameters, and returns its artifact."""

from __future__ import annotations

import math

import numpy as np

from tfcompress.errors import InputError


def _optimizer(name, lr):
    import keras
    return keras.optimizers.get({"class_name": name,
                                 "config": {"learning_rate": lr}})


def _compile(model, optimizer, lr):
    import keras
    model.compile(optimizer=_optimizer(optimizer, lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), metrics=["accuracy"])
    return model


def _fit(model, data, epochs, batch_size, callbacks=()):
    (xt, yt), _ = data
    model.fit(xt, yt, epochs=epochs, batch_size=batch_size, verbose=2,
              callbacks=list(callbacks))


def run_prune(model, params, data, train):
    """Fine-tunes with pruning on a schedule; returns the stripped model."""
    from tfcompress import prune
    (xt, _), _ = data
    steps = math.ceil(len(xt) / train["batch_size"]) * params["epochs"]
    end = max(1, int(steps * params["end_fraction"]))
    freq = max(1, min(params["frequency"], end))
    if params["schedule"] == "polynomial":
        schedule = prune.PolynomialDecay(params["initial_sparsity"],
                                         params["final_sparsity"], 0, end,
                                         frequency=freq)
    else:
        schedule = prune.ConstantSparsity(params["final_sparsity"], 0,
                                          frequency=freq)
    kwargs = {}
    g = params["granularity"]
    if g == "block":
        kwargs["block_size"] = tuple(params["block_size"])
    elif g == "n_of_m":
        kwargs["sparsity_m_by_n"] = tuple(params["m_by_n"])
    elif g == "global":
        kwargs["global_pruning"] = True
    pruned = prune.prune_low_magnitude(model, schedule,
                                       exclude=params["exclude"], **kwargs)
    _compile(pruned, train["optimizer"], params["learning_rate"])
    _fit(pruned, data, params["epochs"], train["batch_size"],
         [prune.UpdatePruningStep()])
    return prune.strip_pruning(pruned)


def run_cluster(model, params, data, train):
    """Fine-tunes with weight clustering; returns the stripped model (its
    kernels hold at most ``number_of_clusters`` values, plus 0 when
    ``preserve_sparsity``)."""
    from tfcompress import cluster
    clustered = cluster.cluster_weights(
        model, params["number_of_clusters"], params["centroid_init"],
        preserve_sparsity=params["preserve_sparsity"],
        per_channel=params["per_channel"], exclude=params["exclude"])
    _compile(clustered, train["optimizer"], params["learning_rate"])
    _fit(clustered, data, params["epochs"], train["batch_size"])
    return cluster.strip_clustering(clustered)


def run_qat(model, params, data, train):
    """Quantization-aware fine-tuning; returns the QAT model."""
    from tfcompress import quantize
    scheme = {"default_8bit": quantize.Default8BitScheme,
              "prune_preserving": quantize.PrunePreservingScheme,
              "cluster_preserving": quantize.ClusterPreservingScheme,
              "n_bit": quantize.NBitScheme}[params["scheme"]](
        weight_bits=params["weight_bits"],
        activation_bits=params["activation_bits"])
    try:
        qat = quantize.quantize_model(model, scheme,
                                      layer_bits=params.get("layer_bits"))
    except ValueError as e:   # e.g. cluster_preserving on unclustered kernels
        raise InputError(f"qat stage: {e}") from None
    _compile(qat, train["optimizer"], params["learning_rate"])
    _fit(qat, data, params["epochs"], train["batch_size"])
    return qat


def run_convert(model, params, data, out_path):
    """Converts to TFLite; returns the conversion report (dict)."""
    from tfcompress.convert import FloatFallbackError, convert
    (xt, _), (xv, _) = data
    try:
        result = convert(model, params["mode"],
                         representative_data=xt[:params["samples"]],
                         input_type=params["io_type"] if params["mode"] in (
                             "int8", "int16x8") else "float32",
                         output_type=params["io_type"] if params["mode"] in (
                             "int8", "int16x8") else "float32",
                         output_path=out_path, strict=params["strict"],
                         sparse=params["sparse"],
                         calibration=params["calibration"],
                         check_data=xv[:200])
    except FloatFallbackError as e:
        raise InputError(str(e)) from None
    return result.report


def run_bench(tflite_path, params, eval_npz):
    """Benchmarks the flatbuffer (own process); returns the result dict."""
    from tfcompress.bench import benchmark_models
    return benchmark_models([tflite_path], data=eval_npz,
                            host=params["host"], runtime=params["runtime"],
                            threads=params["threads"], runs=params["runs"],
                            warmup_runs=params["warmup_runs"],
                            xnnpack=params["xnnpack"], progress=False)[0]


def evaluate(model, data):
    """Keras test accuracy of a classifier."""
    _, (xv, yv) = data
    logits = model.predict(xv, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == yv))
