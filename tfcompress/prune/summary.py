"""``summary(model)``: per layer, what is pruned and how sparse it is."""

from __future__ import annotations

import keras
import numpy as np

from tfcompress.prune import prunable
from tfcompress.prune.wrapper import PruneLowMagnitude
from tfcompress.utils.arguments import check_model
from tfcompress.utils.layer_map import iter_layers


class SummaryRows(list):
    """The per-layer rows of :func:`summary`, a list as before, with the
    whole model's figures in ``total`` (a row with the same keys)."""

    total: dict


def summary(model, print_fn=print) -> list:
    """Rows describing every layer with weights, pruned or left dense.

    Each row: ``layer``, ``type``, ``status`` (``pruned``, ``dense
    (excluded)``, ``dense (N:M does not fit)``: left out of N:M pruning
    because an input-channel axis is not a multiple of M, ``dense (block
    does not fit)``: one block would span the kernel, or ``dense
    (unsupported)``), ``weights``, ``params``,
    ``target_sparsity`` and ``sparsity`` (measured zeros). The table is
    printed with ``print_fn``; ``print_fn=None`` prints nothing, as in
    ``quantize.summary`` and ``cluster.summary``.

    The returned list's ``total`` is a row for the whole model, the last
    line of the table: every weight of the listed layers (a pruned layer's
    bias too), its ``target_sparsity`` and measured ``sparsity``, its
    ``status`` how many layers are pruned.

    >>> import keras
    >>> from tfcompress.prune import prune_low_magnitude
    >>> m = prune_low_magnitude(keras.Sequential([
    ...     keras.Input((4,)), keras.layers.Dense(2)]))
    >>> rows = summary(m, print_fn=None)
    >>> rows[0]["status"], rows.total["params"], rows.total["status"]
    ('pruned', 10, '1 of 1 layers pruned')
    """
    check_model(model, "prune.summary")
    rows, totals = SummaryRows(), []
    layers = list(iter_layers(model))
    n_of_m = {l.sparsity_m_by_n[1] for l in layers
              if isinstance(l, PruneLowMagnitude) and l.sparsity_m_by_n}
    blocks = {tuple(l.block_size) for l in layers
              if isinstance(l, PruneLowMagnitude)} - {(1, 1)}
    for layer in layers:
        if isinstance(layer, PruneLowMagnitude):
            row, figures = _pruned_row(layer)
        elif layer.weights:
            row, figures = _dense_row(layer, n_of_m, blocks)
        else:
            continue
        rows.append(row)
        totals.append(figures)
    rows.total = _total_row(rows, totals)
    if print_fn is not None:
        print_fn(format_table(rows, rows.total))
    return rows


def _pruned_row(layer):
    """The row of wrapped ``layer`` and its ``(params, zeros, target
    zeros)`` over all its weights (the bias, not pruned, too)."""
    weights = layer.pruned_weights
    params = sum(int(np.prod(w.shape)) for w in weights)
    zeros = sum(s * int(np.prod(w.shape))
                for s, w in zip(layer.sparsity(), weights))
    kind = ("global" if layer.global_pruning else
            "{} zeros in {}".format(*layer.sparsity_m_by_n)
            if layer.sparsity_m_by_n else
            "block {}x{}".format(*layer.block_size)
            if layer.block_size != (1, 1) else "unstructured")
    target = layer.target_sparsity()
    row = {"layer": layer.layer.name, "type": type(layer.layer).__name__,
           "status": "pruned", "granularity": kind,
           "weights": layer.weight_keys(), "params": params,
           "target_sparsity": round(target, 4),
           "sparsity": round(zeros / max(params, 1), 4),
           "step": layer.step}
    pruned = {id(w) for w in weights}
    rest = [w for w in layer.layer.weights if id(w) not in pruned]
    return row, (params + sum(int(np.prod(w.shape)) for w in rest),
                 zeros + _zeros(rest), target * params)


def _dense_row(layer, n_of_m=(), blocks=()):
    """The row of ``layer`` left dense and its ``(params, zeros, 0)``;
    ``n_of_m``: the M of the model's N:M pruning, if any; ``blocks``: the
    model's block sizes, if any."""
    status = ("dense (unsupported)" if not prunable.is_prunable(layer)
              else "dense (N:M does not fit)" if n_of_m and not any(
                  prunable.supports_n_of_m(layer, m) for m in n_of_m)
              else "dense (block does not fit)" if blocks and not any(
                  prunable.supports_block(layer, b) for b in blocks)
              else "dense (excluded)")
    params = sum(int(np.prod(w.shape)) for w in layer.weights)
    zeros = _zeros(layer.weights)
    row = {"layer": layer.name, "type": type(layer).__name__,
           "status": status, "granularity": "-",
           "weights": [w.name for w in layer.weights],
           "params": params, "target_sparsity": 0.0,
           "sparsity": round(zeros / max(params, 1), 4), "step": None}
    return row, (params, zeros, 0.0)


def _zeros(weights) -> int:
    """How many entries of ``weights`` are exactly zero."""
    return sum(int(np.sum(keras.ops.convert_to_numpy(w) == 0))
               for w in weights)


def _total_row(rows, totals) -> dict:
    """The whole model's row from each row's ``(params, zeros, target
    zeros)``."""
    params = sum(t[0] for t in totals)
    pruned = sum(r["status"] == "pruned" for r in rows)
    return {"layer": "total", "type": "-",
            "status": f"{pruned} of {len(rows)} layers pruned",
            "granularity": "-", "weights": [], "params": params,
            "target_sparsity": round(sum(t[2] for t in totals)
                                     / max(params, 1), 4),
            "sparsity": round(sum(t[1] for t in totals) / max(params, 1), 4),
            "step": None}


def format_table(rows, total=None) -> str:
    """Renders summary rows as a fixed-width text table, ``total`` (a row)
    under a rule at the end if given."""
    head = ("layer", "type", "status", "granularity", "params",
            "target", "sparsity")
    every = list(rows) + ([total] if total is not None else [])
    lines = [[r["layer"], r["type"], r["status"], r["granularity"],
              str(r["params"]), f"{r['target_sparsity']:.3f}",
              f"{r['sparsity']:.3f}"] for r in every]
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    rule = fmt.format(*("-" * w for w in widths))
    out = [fmt.format(*head), rule]
    out += [fmt.format(*l) for l in lines[:len(rows)]]
    if total is not None:
        out += [rule, fmt.format(*lines[-1])]
    return "\n".join(out)
