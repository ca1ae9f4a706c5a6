"""Per-layer sensitivity: how much accuracy each layer costs when it alone
is pruned or quantized.

For every prunable layer the analysis zeros its smallest weights to each
sparsity in turn (and, separately, rounds its kernel to int8 / 4-bit
symmetric per-channel levels), evaluates the model, and restores the
weights. The table tells which layers can take aggressive pruning and
which must stay dense or float.

>>> result = sensitivity(model, (x_test[:2000], y_test[:2000]))   # doctest: +SKIP
>>> print(result.table())                                          # doctest: +SKIP
>>> propose_sparsities(result, max_drop=1.0)                       # doctest: +SKIP
{'conv1': 0.5, 'conv2': 0.9, 'fc1': 0.9, 'logits': 0.75}
"""

from __future__ import annotations

import collections
import dataclasses
import json

import numpy as np

from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_counts, is_number, layer_names

# bumped when the same model and data give other figures (what is pruned or
# rounded changed), so that results stored by an older tfcompress are not
# reused; 2: transposed-conv kernels rounded per output channel
VERSION = 2


@dataclasses.dataclass
class SensitivityResult:
    """Baseline metric and per-layer metrics (higher is better).

    :func:`sensitivity` returns one; ``table()`` prints the drop in points
    per layer and setting, ``to_json()`` saves it.

    >>> result = SensitivityResult(
    ...     metric="accuracy", baseline=0.90, sparsities=[0.5, 0.9],
    ...     bits=[8], pruned={"conv1": {0.5: 0.89, 0.9: 0.70},
    ...                       "fc1": {0.5: 0.90, 0.9: 0.895}},
    ...     quantized={"conv1": {8: 0.90}, "fc1": {8: 0.899}}, samples=1000)
    >>> print(result.table())
    baseline accuracy: 0.9000 (1000 samples); cells: drop in points
    layer     p50     p90    int8
    conv1    1.00   20.00    0.00
    fc1      0.00    0.50    0.10
    >>> sorted(result.to_dict())[:3]
    ['baseline', 'bits', 'metric']
    """
    metric: str
    baseline: float
    sparsities: list
    bits: list
    pruned: dict          # layer -> {sparsity: metric}
    quantized: dict       # layer -> {bits: metric}
    samples: int
    seconds: float = 0.0

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """A text table: metric drop (points) per layer and setting."""
        heads = [f"p{int(s * 100)}" for s in self.sparsities] + \
                [f"int{b}" for b in self.bits]
        width = max([5] + [len(n) for n in self.pruned])
        lines = [f"baseline {self.metric}: {self.baseline:.4f} "
                 f"({self.samples} samples); cells: drop in points",
                 f"{'layer':<{width}} " + " ".join(f"{h:>7}" for h in heads)]
        for name in self.pruned:
            cells = [(self.baseline - self.pruned[name][s]) * 100
                     for s in self.sparsities]
            cells += [(self.baseline - self.quantized[name][b]) * 100
                      for b in self.bits]
            lines.append(f"{name:<{width}} " +
                         " ".join(f"{c:>7.2f}" for c in cells))
        return "\n".join(lines)

    def plot(self, path):
        """Saves a PNG: metric vs sparsity, one line per layer."""
        from tfcompress.utils.plotting import png_figure
        with png_figure(path) as (fig, ax):
            for name, row in self.pruned.items():
                ax.plot([0] + list(self.sparsities),
                        [self.baseline] + [row[s] for s in self.sparsities],
                        marker="o", label=name)
            ax.set_xlabel("sparsity of this layer alone")
            ax.set_ylabel(self.metric)
            ax.set_title("Per-layer pruning sensitivity")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        return str(path)


def _kernels(model):
    """``(name, weights, layer)`` of every built prunable layer:
    all its prunable weights (a recurrent layer's input and recurrent
    kernels, MultiHeadAttention's four), each pruned and rounded on its
    own as pruning masks each; ``layer`` says where the output channels
    are (see :func:`_fake_quant`)."""
    from tfcompress.prune.prunable import get_prunable_weights, is_prunable
    from tfcompress.utils.layer_map import iter_layers
    return [(layer.name, list(get_prunable_weights(layer)), layer)
            for layer in iter_layers(model)
            if is_prunable(layer) and layer.built]


def _fake_quant(w, bits, layer=None):
    """Symmetric per-output-channel rounding to ``bits`` levels.

    Output channels are those the converter scales one by one
    (:mod:`tfcompress.utils.channels`): the last kernel axis, axis -2 of
    a transposed-conv kernel ``(..., out, in)``, the ``C * M`` outputs of
    a depthwise kernel ``(..., C, M)``.

    >>> import keras
    >>> up = keras.layers.Conv2DTranspose(2, 1)
    >>> w = np.array([100.0, 0.3], "float32").reshape(1, 1, 2, 1)
    >>> _fake_quant(w, 8, up).ravel().tolist() == w.ravel().tolist()
    True
    >>> _fake_quant(w, 8).ravel().tolist()   # one scale: 0.3 rounds to 0
    [100.0, 0.0]
    """
    from tfcompress.utils.channels import (from_output_channel_rows,
                                           output_channel_rows)
    q = 2 ** (bits - 1) - 1
    rows = np.asarray(output_channel_rows(layer, w))
    scale = np.abs(rows).max(axis=1, keepdims=True) / q
    scale[scale == 0] = 1.0
    rounded = np.clip(np.round(rows / scale), -q, q) * scale
    return np.asarray(from_output_channel_rows(layer, rounded, w.shape))


def _prune(w, sparsity):
    k = int(round(w.size * sparsity))
    if k == 0:
        return w
    flat = np.abs(w).ravel()
    threshold = np.partition(flat, k - 1)[k - 1]
    out = w.copy()
    out[np.abs(w) <= threshold] = 0
    return out


def _binary(out, y, sigmoid, metric):
    """Accuracy or mean log-likelihood of a one-unit binary classifier:
    class 1 when the logit is above 0 (the probability above 0.5 after a
    sigmoid)."""
    if metric == "accuracy":
        return float(np.mean((out > (0.5 if sigmoid else 0.0)) == y))
    if sigmoid:
        p = np.clip(out.astype("float64"), 1e-12, 1 - 1e-12)
        return float(np.mean(np.where(y == 1, np.log(p), np.log(1 - p))))
    return float(np.mean(-np.logaddexp(0, np.where(y == 1, -out, out))))


def _as_list(values, name, example):
    """One number, or a list or tuple of them (empty: none), as a list."""
    if is_number(values) or isinstance(values, np.number):
        return [values]
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise InputError(f"sensitivity: {name} takes a number or a list of "
                         f"them, e.g. {example}; got {values!r:.60}")
    return list(values)


def sensitivity(model, data, sparsities=(0.5, 0.75, 0.9, 0.95),
                bits=(8, 4), layers=None, batch_size=500,
                metric="accuracy") -> SensitivityResult:
    """Measures each layer's sensitivity to pruning and quantization.

    Args:
      model: a built Keras classifier (logits or probabilities), or a
        binary one with one output unit (a logit, or a sigmoid).
      data: ``(x, y)`` evaluation arrays (a few thousand samples suffice).
      sparsities: fractions of the layer's weights to zero.
      bits: weight bit-widths (2 to 16) to round the layer's kernel to.
      layers: names of layers to analyse (default: every prunable one);
        layers of nested models go by their own names.
      metric: ``accuracy`` (top-1) or ``loss`` (negated cross-entropy,
        so higher is better everywhere).

    Here the labels are the model's own predictions, so the baseline is
    1.0 and every drop comes from the layer being pruned or rounded:

    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu", name="hidden"),
    ...     keras.layers.Dense(3, name="logits")])
    >>> x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    >>> y = np.argmax(model(x), axis=-1)
    >>> before = model.get_weights()
    >>> result = sensitivity(model, (x, y), sparsities=(0.5, 0.9), bits=(8,))
    >>> result.baseline, list(result.pruned), result.pruned["logits"].keys()
    (1.0, ['hidden', 'logits'], dict_keys([0.5, 0.9]))
    >>> result.pruned["hidden"][0.9] < result.pruned["hidden"][0.5]
    True
    >>> all(np.array_equal(a, b)   # the weights are restored
    ...     for a, b in zip(before, model.get_weights()))
    True
    """
    import time
    import tensorflow as tf
    if metric not in ("accuracy", "loss"):
        raise InputError(f"metric must be accuracy or loss, got {metric!r}")
    try:
        x, y = data
    except (TypeError, ValueError):
        raise InputError("data must be a pair (x, y) of arrays") from None
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        raise InputError(f"labels have shape {y.shape} (one-hot or "
                         "probabilities); pass integer class ids, e.g. "
                         "y.argmax(-1)")
    y = y.astype("int64").ravel()
    if len(x) != len(y) or len(x) == 0:
        raise InputError(f"data has {len(x)} inputs and {len(y)} labels; "
                         "they must be equal and non-zero")
    # one name or number stands for a list of one
    layers = layer_names(layers, "layers", "sensitivity")
    check_counts("sensitivity", batch_size=batch_size)
    sparsities = _as_list(sparsities, "sparsities", "(0.5, 0.9)")
    bits = _as_list(bits, "bits", "(8, 4)")
    for s in sparsities:
        if not is_number(s) or not 0 < s < 1:
            raise InputError(f"sparsities must be in (0, 1), got {s!r}")
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) \
                or not 2 <= b <= 16:
            raise InputError(f"bits must be integer weight bit-widths "
                             f"from 2 to 16, e.g. (8, 4); got {b!r}")
    start = time.time()
    forward = tf.function(lambda t: model(t, training=False))
    from tfcompress.utils.outputs import output_activation
    sigmoid = output_activation(model) == "sigmoid"

    def evaluate():
        logits = np.concatenate([forward(x[i:i + batch_size]).numpy()
                                 for i in range(0, len(x), batch_size)])
        if logits.ndim == 2 and logits.shape[1] == 1:
            return _binary(logits[:, 0], y, sigmoid, metric)
        if metric == "accuracy":
            return float(np.mean(logits.argmax(-1) == y))
        logp = tf.nn.log_softmax(logits).numpy() if np.any(logits < 0) or \
            not np.allclose(logits.sum(-1), 1, atol=1e-3) else \
            np.log(np.clip(logits, 1e-12, 1))
        return float(np.mean(logp[np.arange(len(y)), y]))

    kernels = _kernels(model)
    if not kernels:
        # a model wrapped for pruning or QAT has none either: its table
        # came back empty
        raise InputError("the model has no prunable layer (Conv, Dense, "
                         "...); analyse the float model: strip pruning "
                         "wrappers first (prune.strip_pruning), or run it "
                         "before quantize_model")
    if layers is not None:
        known = {n for n, _, _ in kernels}
        missing = set(layers) - known
        if missing:
            raise InputError(f"layers {sorted(missing)} are not prunable "
                             f"layers of the model; choose from "
                             f"{sorted(known)}")
        kernels = [k for k in kernels if k[0] in layers]
    repeated = sorted(n for n, c in collections.Counter(
        n for n, _, _ in kernels).items() if c > 1)
    if repeated:
        # results are keyed by name: one layer's would replace the other's
        raise InputError(
            f"layers named {repeated[:5]} occur more than once (in "
            f"different nested models) and results go by layer name: "
            f"leave them out with layers=, or build the nested models "
            f"with unique layer names")
    baseline = evaluate()
    pruned, quantized = {}, {}
    for name, weights, layer in kernels:
        originals = [np.asarray(w).copy() for w in weights]
        try:
            pruned[name] = {}
            for s in sparsities:
                for w, original in zip(weights, originals):
                    w.assign(_prune(original, s))
                pruned[name][s] = evaluate()
            quantized[name] = {}
            for b in bits:
                for w, original in zip(weights, originals):
                    w.assign(_fake_quant(original, b, layer))
                quantized[name][b] = evaluate()
        finally:
            for w, original in zip(weights, originals):
                w.assign(original)
    return SensitivityResult(metric, baseline, list(sparsities), list(bits),
                             pruned, quantized, len(x),
                             round(time.time() - start, 2))


def propose_sparsities(result: SensitivityResult, max_drop=1.0) -> dict:
    """Per layer, the highest analysed sparsity whose drop (in points)
    stays within ``max_drop``; 0.0 when none does.

    Layers are analysed one at a time, so the combined drop can exceed the
    budget: fine-tune after pruning and check.

    >>> result = SensitivityResult(
    ...     metric="accuracy", baseline=0.90, sparsities=[0.5, 0.75, 0.9],
    ...     bits=[8], pruned={"conv1": {0.5: 0.885, 0.75: 0.85, 0.9: 0.7},
    ...                       "fc1": {0.5: 0.90, 0.75: 0.899, 0.9: 0.895},
    ...                       "logits": {0.5: 0.80, 0.75: 0.6, 0.9: 0.3}},
    ...     quantized={}, samples=1000)
    >>> propose_sparsities(result, max_drop=1.0)
    {'conv1': 0.0, 'fc1': 0.9, 'logits': 0.0}
    >>> propose_sparsities(result, max_drop=2.0)["conv1"]
    0.5
    """
    out = {}
    for name, row in result.pruned.items():
        ok = [s for s in result.sparsities
              if (result.baseline - row[s]) * 100 <= max_drop]
        out[name] = max(ok) if ok else 0.0
    return out


def layers_to_keep_float(result: SensitivityResult, bits=8,
                         max_drop=1.0) -> list:
    """Layers whose ``bits``-bit weights alone cost more than ``max_drop``
    points: candidates to keep in float.

    >>> result = SensitivityResult(
    ...     metric="accuracy", baseline=0.90, sparsities=[], bits=[8, 4],
    ...     pruned={}, quantized={"conv1": {8: 0.899, 4: 0.80},
    ...                           "fc1": {8: 0.90, 4: 0.897},
    ...                           "logits": {8: 0.87, 4: 0.75}},
    ...     samples=1000)
    >>> layers_to_keep_float(result)  # int8 weights, 1 point budget
    ['logits']
    >>> layers_to_keep_float(result, bits=4, max_drop=0.5)
    ['conv1', 'logits']
    """
    return [name for name, row in result.quantized.items()
            if (result.baseline - row[bits]) * 100 > max_drop]
