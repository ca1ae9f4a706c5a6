"""``summary(model)``: per layer, what is pruned and how sparse it is."""

from __future__ import annotations

import keras
import numpy as np

from tfcompress.prune import prunable
from tfcompress.prune.wrapper import PruneLowMagnitude
from tfcompress.utils.layer_map import iter_layers


def summary(model, print_fn=print) -> list:
    """Rows describing every layer with weights, pruned or left dense.

    Each row: ``layer``, ``type``, ``status`` (``pruned``, ``dense
    (excluded)`` or ``dense (unsupported)``), ``weights``, ``params``,
    ``target_sparsity`` and ``sparsity`` (measured zeros). The table is
    printed with ``print_fn``; ``print_fn=None`` prints nothing, as in
    ``quantize.summary`` and ``cluster.summary``.

    >>> import keras
    >>> from tfcompress.prune import prune_low_magnitude
    >>> m = prune_low_magnitude(keras.Sequential([
    ...     keras.Input((4,)), keras.layers.Dense(2)]))
    >>> summary(m, print_fn=None)[0]["status"]
    'pruned'
    """
    rows = []
    for layer in iter_layers(model):
        if isinstance(layer, PruneLowMagnitude):
            weights = layer.pruned_weights
            params = sum(int(np.prod(w.shape)) for w in weights)
            zeros = sum(s * int(np.prod(w.shape))
                        for s, w in zip(layer.sparsity(), weights))
            kind = ("global" if layer.global_pruning else
                    "{} zeros in {}".format(*layer.sparsity_m_by_n)
                    if layer.sparsity_m_by_n else
                    "block {}x{}".format(*layer.block_size)
                    if layer.block_size != (1, 1) else "unstructured")
            rows.append({
                "layer": layer.layer.name, "type": type(layer.layer).__name__,
                "status": "pruned", "granularity": kind,
                "weights": layer.weight_keys(), "params": params,
                "target_sparsity": round(layer.target_sparsity(), 4),
                "sparsity": round(zeros / max(params, 1), 4),
                "step": layer.step})
        elif layer.weights:
            status = ("dense (excluded)" if prunable.is_prunable(layer)
                      else "dense (unsupported)")
            params = sum(int(np.prod(w.shape)) for w in layer.weights)
            rows.append({"layer": layer.name, "type": type(layer).__name__,
                         "status": status, "granularity": "-",
                         "weights": [w.name for w in layer.weights],
                         "params": params, "target_sparsity": 0.0,
                         "sparsity": round(float(np.mean(np.concatenate(
                             [keras.ops.convert_to_numpy(w).ravel() == 0
                              for w in layer.weights]))), 4),
                         "step": None})
    if print_fn is not None:
        print_fn(format_table(rows))
    return rows


def format_table(rows) -> str:
    """Renders summary rows as a fixed-width text table."""
    head = ("layer", "type", "status", "granularity", "params",
            "target", "sparsity")
    lines = [[r["layer"], r["type"], r["status"], r["granularity"],
              str(r["params"]), f"{r['target_sparsity']:.3f}",
              f"{r['sparsity']:.3f}"] for r in rows]
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*l) for l in lines]
    return "\n".join(out)
