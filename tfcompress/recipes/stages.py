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
    """Compiles for sparse labels; on logits, or on probabilities for a
    model that ends in a softmax."""
    import keras
    from tfcompress.utils.outputs import gives_probabilities
    model.compile(optimizer=_optimizer(optimizer, lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=not gives_probabilities(model)),
                  metrics=["accuracy"])
    return model


def _fit(model, data, epochs, batch_size, callbacks=(), verbose=2):
    """``verbose``: Keras's fit lines, one per epoch (2), or none (0)."""
    from tfcompress.compat import build_training_state
    (xt, yt), _ = data
    build_training_state(model, xt, yt)   # fit traces its step once
    return model.fit(xt, yt, epochs=epochs, batch_size=batch_size,
                     verbose=verbose, callbacks=list(callbacks))


def run_prune(model, params, data, train, verbose=2):
    """Fine-tunes with pruning on a schedule; returns the stripped model.
    ``verbose``: Keras's per-epoch lines (2) or none (0), as in the other
    training stages."""
    from tfcompress import prune
    (xt, _), _ = data
    steps = math.ceil(len(xt) / train["batch_size"]) * params["epochs"]
    end = max(1, int(steps * params["end_fraction"]))
    freq = max(1, min(params["frequency"], end))

    def schedule_for(final):
        if params["schedule"] == "polynomial":
            return prune.PolynomialDecay(min(params["initial_sparsity"],
                                             final), final, 0, end,
                                         frequency=freq)
        return prune.ConstantSparsity(final, 0, frequency=freq)

    schedule = schedule_for(params["final_sparsity"])
    kwargs = {}
    g = params["granularity"]
    if g == "block":
        kwargs["block_size"] = tuple(params["block_size"])
    elif g == "n_of_m":
        kwargs["sparsity_m_by_n"] = tuple(params["m_by_n"])
    elif g == "global":
        kwargs["global_pruning"] = True
    per_layer = params.get("layer_sparsity") or {}
    if per_layer:
        # only the listed layers with a sparsity above 0, each on its own
        # schedule
        kwargs["include"] = [n for n, s in per_layer.items()
                             if s > 0 and n not in params["exclude"]]
        if not kwargs["include"]:
            return model
    pruned = prune.prune_low_magnitude(model, schedule,
                                       exclude=params["exclude"], **kwargs)
    if per_layer:
        from tfcompress.utils.layer_map import iter_layers
        for layer in iter_layers(pruned):
            if isinstance(layer, prune.PruneLowMagnitude):
                layer.pruning_schedule = schedule_for(
                    per_layer[layer.layer.name])
    _compile(pruned, train["optimizer"], params["learning_rate"])
    _fit(pruned, data, params["epochs"], train["batch_size"],
         [prune.UpdatePruningStep()], verbose)
    return prune.strip_pruning(pruned)


def run_channel_prune(model, params, data, train, report=print, verbose=2):
    """Fine-tunes while :class:`tfcompress.prune.ChannelPruning` zeros
    whole channels on a ramp, then removes them; returns the smaller
    model (``prune.shrink``). ``report`` gets one line: channels,
    parameters and MACs kept."""
    from tfcompress import prune
    from tfcompress.utils.layer_map import copy_model
    (xt, _), _ = data
    steps = math.ceil(len(xt) / train["batch_size"]) * params["epochs"]
    work = copy_model(model)        # the input model stays whole
    cb = prune.ChannelPruning(
        prune.PolynomialDecay.ramp(params["sparsity"], steps,
                                   params["end_fraction"]),
        norm=params["norm"], exclude=params["exclude"],
        allocation=params["allocation"],
        max_space_sparsity=params["max_space_sparsity"])
    _compile(work, train["optimizer"], params["learning_rate"])
    _fit(work, data, params["epochs"], train["batch_size"], [cb], verbose)
    small = prune.shrink(work)
    rows = cb.summary()
    kept = sum(r["kept"] for r in rows)
    total = sum(r["channels"] for r in rows)
    report(f"channel_prune: kept {kept:,} of {total:,} channels in "
          f"{len(rows)} spaces; {small.count_params():,} of "
          f"{model.count_params():,} parameters, "
          f"{prune.count_macs(small) / prune.count_macs(model):.0%} of the "
          "MACs")
    return small


def run_cluster(model, params, data, train, verbose=2):
    """Fine-tunes with weight clustering; returns the stripped model (its
    kernels hold at most ``number_of_clusters`` values, plus 0 when
    ``preserve_sparsity``)."""
    from tfcompress import cluster
    clustered = cluster.cluster_weights(
        model, params["number_of_clusters"], params["centroid_init"],
        preserve_sparsity=params["preserve_sparsity"],
        per_channel=params["per_channel"], exclude=params["exclude"],
        gradient_aggregation=params["gradient_aggregation"])
    _compile(clustered, train["optimizer"], params["learning_rate"])
    _fit(clustered, data, params["epochs"], train["batch_size"],
         verbose=verbose)
    return cluster.strip_clustering(clustered)


def run_qat(model, params, data, train, verbose=2):
    """Quantization-aware fine-tuning; returns the QAT model."""
    from tfcompress import quantize
    scheme = {"default_8bit": quantize.Default8BitScheme,
              "prune_preserving": quantize.PrunePreservingScheme,
              "cluster_preserving": quantize.ClusterPreservingScheme,
              "n_bit": quantize.NBitScheme}[params["scheme"]](
        weight_bits=params["weight_bits"],
        activation_bits=params["activation_bits"],
        freeze_bn_delay=params.get("freeze_bn_delay"),
        share_concat_ranges=params.get("share_concat_ranges", True),
        ema_decay=params.get("ema_decay", 0.999),
        activation_percentile=params.get("activation_percentile"),
        **({"preserve_sparsity": True} if params.get("preserve_sparsity")
           else {}))
    try:
        qat = quantize.quantize_model(model, scheme,
                                      layer_bits=params.get("layer_bits"))
    except ValueError as e:   # e.g. cluster_preserving on unclustered kernels
        raise InputError(f"qat stage: {e}") from None
    _compile(qat, train["optimizer"], params["learning_rate"])
    _fit(qat, data, params["epochs"], train["batch_size"], verbose=verbose)
    return qat


def run_ptq(model, params, data, train=None):
    """Post-training steps (:mod:`tfcompress.ptq`) in order, on the first
    ``samples`` training inputs (labels unused). With AdaRound at fewer
    than 8 bits the result carries fake-quant layers, so ``convert``
    stores the rounded weights at that width."""
    from tfcompress import ptq
    (xt, _), _ = data
    x = xt[:params["samples"]]
    bits, per_channel = params["weight_bits"], params["per_channel"]
    for step in params["steps"]:
        if step == "equalize":
            model = ptq.equalize(model)
        elif step == "correct_bias":
            model = ptq.correct_bias(model, x, bits=bits,
                                     per_channel=per_channel)
        elif step == "adaround":
            model = ptq.adaround(model, x, bits=bits,
                                 per_channel=per_channel,
                                 iterations=params["iterations"])
        elif step == "reestimate_batchnorm":
            model = ptq.reestimate_batchnorm(model, x)
    if "adaround" in params["steps"] and bits < 8:
        model = ptq.for_conversion(model, x, bits=bits,
                                   per_channel=per_channel)
    return model


def run_convert(model, params, data, out_path):
    """Converts to TFLite; returns the conversion report (dict)."""
    from tfcompress.convert import (FloatFallbackError, UnrunnableModelError,
                                    convert)
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
                         per_channel=params["per_channel"],
                         float_layers=params.get("float_layers") or None,
                         check_data=xv[:200])
    except (FloatFallbackError, UnrunnableModelError) as e:
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
