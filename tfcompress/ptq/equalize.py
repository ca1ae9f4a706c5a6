"""Cross-layer equalization with high-bias absorption (Nagel et al. 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction").

Two layers joined by a positively homogeneous path (ReLU, identity, max
or average pooling, zero padding, dropout, flatten into a Dense) compute
the same function when output channel ``i`` of the first is divided by
``s_i`` and input channel ``i`` of the second multiplied by it. Choosing
``s_i = sqrt(r1_i * r2_i) / r2_i`` (``r`` the channel's largest absolute
weight) gives both channels the same range, so one per-tensor scale fits
all channels: what per-tensor int8 weights need. Chains (Conv ->
Depthwise -> Conv) are swept until the scales settle.

Batch norms are folded first (:func:`tfcompress.ptq.fold_batchnorm`); their
``beta`` and ``gamma`` give each folded layer's pre-activation mean and
deviation, from which high-bias absorption moves
``c = max(0, beta - 3 |gamma|)`` of the first layer's bias through the ReLU
into the second layer's bias (exact where the input to the ReLU stays above
``c``, and away from zero-padded borders).

ReLU6 between equalized layers becomes ReLU (its clip at 6 does not
commute with the scaling), as in the paper and AIMET; the report lists
each one. Layers that cannot be paired are listed with the reason, never
guessed.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((6, 6, 3)),
...     keras.layers.Conv2D(4, 3, activation="relu", name="a"),
...     keras.layers.Conv2D(2, 3, name="b")])
>>> eq, report = equalize(m, return_report=True)
>>> report.pairs, report.unpaired
([('a', 'b')], {'b': 'model output'})
>>> x = np.random.rand(2, 6, 6, 3).astype("float32")
>>> bool(np.allclose(m(x), eq(x), atol=1e-4))
True
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfcompress.ptq import layers as lyr
from tfcompress.ptq.grid import channel_view
from tfcompress.ptq.fold import fold_batchnorm_with_stats
from tfcompress.utils.graph import consumers, node_graph, output_keys

L = keras.layers
# per-channel, positively homogeneous: commute with scaling channels by s>0
_SCALE_TRANSPARENT = (L.MaxPooling2D, L.AveragePooling2D,
                      L.GlobalAveragePooling2D, L.GlobalMaxPooling2D,
                      L.ZeroPadding2D, L.Dropout, L.Flatten, L.Identity)


@dataclasses.dataclass
class EqualizationReport:
    """What :func:`equalize` did.

    ``pairs``: ``(first, second)`` layers equalized; ``unpaired``: each
    Conv2D/DepthwiseConv2D/Dense whose output could not be paired, with
    the reason; ``folded_batchnorms`` ``(layer, batchnorm)`` and
    ``unfolded_batchnorms`` (name -> reason); ``relu6_replaced``: ReLU6
    activations turned into ReLU; ``absorbed``: ``"first->second"`` -> the
    total bias moved; ``sweeps``: equalization sweeps until the scales
    settled.

    ``equalize(model, return_report=True)`` returns one:

    >>> import keras
    >>> import numpy as np
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="conv2"),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> _, report = equalize(model, return_report=True)
    >>> report.pairs, report.folded_batchnorms
    ([('conv1', 'conv2'), ('conv2', 'logits')], [('conv1', 'bn1')])
    >>> report.unpaired
    {'logits': 'model output'}
    >>> sorted(report.to_dict())[:3]
    ['absorbed', 'folded_batchnorms', 'pairs']
    """
    pairs: list = dataclasses.field(default_factory=list)
    unpaired: dict = dataclasses.field(default_factory=dict)
    folded_batchnorms: list = dataclasses.field(default_factory=list)
    unfolded_batchnorms: dict = dataclasses.field(default_factory=dict)
    relu6_replaced: list = dataclasses.field(default_factory=list)
    absorbed: dict = dataclasses.field(default_factory=dict)
    sweeps: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _Pair:
    first: str
    second: str
    flatten_channels: int | None      # Flatten between (channels last)
    relus: list                       # ReLU-like layers on the path
    relu6: list                       # of them, the ReLU6 ones
    has_relu: bool
    zero_padding: bool


def pair_from(node, nodes_by_key, readers, outputs):
    """The pair starting at weight-layer ``node``, or the reason why not."""
    first = node.op
    act = lyr.activation_name(first)
    if act is None:
        return None, f"activation {first.activation.__name__!r} is not " \
                     "ReLU, ReLU6 or linear"
    relus, relu6, flatten, padding = [], [], None, False
    has_relu = act in ("relu", "relu6")
    if act == "relu6":
        relu6.append(first.name)
    cur = node
    while True:
        if cur.key in outputs:
            return None, "model output"
        nxt = readers.get(cur.key, [])
        if len(nxt) != 1:
            names = ", ".join(nodes_by_key[k].op.name for k in nxt)
            return None, f"output read by {len(nxt)} layers ({names})"
        cur = nodes_by_key[nxt[0]]
        op = cur.op
        if cur.calls > 1:
            return None, f"{op.name} is shared"
        if lyr.is_weight_layer(op):
            if flatten is not None and type(op) is not L.Dense:
                return None, "Flatten before a non-Dense layer"
            return _Pair(first.name, op.name, flatten, relus, relu6,
                         has_relu, padding), None
        if type(op) in (L.ReLU, L.Activation):
            name = lyr.activation_name(op)
            if name is None:
                return None, f"followed by {type(op).__name__} {op.name!r}, " \
                             "not ReLU, ReLU6 or linear"
            has_relu |= name != "linear"
            relus.append(op.name)
            if name == "relu6":
                relu6.append(op.name)
            continue
        if isinstance(op, _SCALE_TRANSPARENT):
            if type(op) is L.Flatten:
                shape = cur.parent_shapes[0] if cur.parent_shapes else None
                if not shape or shape[-1] is None or \
                        getattr(op, "data_format", "channels_last") != \
                        "channels_last":
                    return None, "Flatten of unknown channel count"
                flatten = int(shape[-1])
            if type(op) is L.ZeroPadding2D:
                padding = True
            continue
        return None, f"followed by {type(op).__name__} {op.name!r}"


def input_channel_view(kernel, layer, flatten_channels):
    """Second layer's kernel as ``(A, input_channels, B)``."""
    if type(layer) is L.Dense:
        if flatten_channels:
            return kernel.reshape(-1, flatten_channels, kernel.shape[-1])
        return kernel.reshape(1, kernel.shape[0], kernel.shape[1])
    h, w, n, m = kernel.shape
    return kernel.reshape(h * w, n, m)


def _out_view(kernel, layer):
    """First layer's kernel as ``(..., output_channels)`` flattened 2-D."""
    view = channel_view(kernel, lyr.is_depthwise(layer))
    return view.reshape(-1, view.shape[-1])


def _scale_pair(weights, layers, stats, pair):
    """One equalization step for ``pair``; returns max |log s|."""
    l1, l2 = layers[pair.first], layers[pair.second]
    k1, b1 = weights[pair.first]
    k2, b2 = weights[pair.second]
    r1 = np.abs(_out_view(k1, l1)).max(axis=0).astype(np.float64)
    v2 = input_channel_view(k2, l2, pair.flatten_channels)
    r2 = np.abs(v2).max(axis=(0, 2)).astype(np.float64)
    if r1.shape != r2.shape:
        return 0.0
    ok = (r1 > 0) & (r2 > 0)
    s = np.ones_like(r1)
    s[ok] = np.sqrt(r1[ok] * r2[ok]) / r2[ok]
    k1 = (_out_view(k1, l1) / s).reshape(k1.shape)
    b1 = b1 / s
    v2 = v2 * s[None, :, None]
    weights[pair.first] = (k1.astype(np.float32), b1.astype(np.float32))
    weights[pair.second] = (v2.reshape(k2.shape).astype(np.float32), b2)
    if pair.first in stats:
        mean, std = stats[pair.first]
        stats[pair.first] = (mean / s, std / s)
    return float(np.abs(np.log(s)).max()) if s.size else 0.0


def _absorb(weights, layers, stats, pair):
    """High-bias absorption from ``pair.first`` into ``pair.second``;
    returns the total moved."""
    if pair.first not in stats or not pair.has_relu or pair.zero_padding:
        return 0.0
    mean, std = stats[pair.first]
    c = np.maximum(0.0, mean - 3.0 * std)
    if not c.any():
        return 0.0
    k1, b1 = weights[pair.first]
    k2, b2 = weights[pair.second]
    v2 = input_channel_view(k2, layers[pair.second], pair.flatten_channels)
    extra = np.einsum("anb,n->nb" if lyr.is_depthwise(layers[pair.second])
                      else "anb,n->b", v2.astype(np.float64), c)
    weights[pair.first] = (k1, (b1 - c).astype(np.float32))
    weights[pair.second] = (k2, (b2 + extra.reshape(-1)).astype(np.float32))
    stats[pair.first] = (mean - c, std)
    return float(c.sum())


def equalize(model, return_report: bool = False, absorb_bias: bool = True,
             max_sweeps: int = 100, tolerance: float = 1e-4):
    """Cross-layer equalization of a Sequential or Functional model.

    Args:
      model: a Keras 3 model (not changed).
      return_report: also return an :class:`EqualizationReport`.
      absorb_bias: apply high-bias absorption (needs folded batch norms
        for the statistics; layers without one are not absorbed).
      max_sweeps, tolerance: sweep all pairs until no scale changes by
        more than ``tolerance`` (in log) or ``max_sweeps`` times.

    Returns:
      The equalized model (batch norms folded), or ``(model, report)``.
      Convert it with ``convert(..., per_channel=False)`` for per-tensor
      weights, where it helps most.

    The output channels of ``conv1`` get similar ranges (one per-tensor
    scale then fits them all) while the model computes the same function:

    >>> import keras
    >>> import numpy as np
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="conv2"),
    ...     keras.layers.Flatten(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> from tfcompress.ptq import fold_batchnorm
    >>> bn = model.get_layer("bn1")
    >>> _ = bn.gamma.assign(np.linspace(0.1, 4.0, 8))  # uneven channels
    >>> equalized = equalize(model)
    >>> def spread(m):  # largest over smallest channel range of conv1
    ...     k = np.abs(m.get_layer("conv1").kernel.numpy()).reshape(-1, 8)
    ...     return k.max(axis=0).max() / k.max(axis=0).min()
    >>> bool(spread(equalized) < spread(fold_batchnorm(model)) / 2)
    True
    >>> x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    >>> bool(np.allclose(model(x), equalized(x), atol=1e-4))
    True
    """
    model = lyr.flat_model(model, "equalize")
    folded = fold_batchnorm_with_stats(model)
    base = folded.model
    report = EqualizationReport(
        folded_batchnorms=[tuple(p) for p in folded.folded],
        unfolded_batchnorms=dict(folded.not_folded))
    pairs, report.unpaired = find_pairs(base)
    layers, weights = {}, {}
    for pair in pairs:
        for name in (pair.first, pair.second):
            layers[name] = base.get_layer(name)
            weights.setdefault(name, lyr.kernel_and_bias(layers[name]))
    stats = {k: (m.copy(), s.copy()) for k, (m, s) in folded.stats.items()}
    for sweep in range(max_sweeps):
        change = max([_scale_pair(weights, layers, stats, p)
                      for p in pairs] or [0.0])
        report.sweeps = sweep + 1
        if change < tolerance:
            break
    if absorb_bias:
        for p in pairs:
            moved = _absorb(weights, layers, stats, p)
            if moved:
                report.absorbed[f"{p.first}->{p.second}"] = moved
    report.pairs = [(p.first, p.second) for p in pairs]
    report.relu6_replaced = sorted({n for p in pairs for n in p.relu6})
    new = relu6_to_relu(base, report.relu6_replaced, weights)
    return (new, report) if return_report else new


def find_pairs(model):
    """``(pairs, unpaired)``: the equalization pairs of ``model`` (batch
    norms already folded) and, for every other weight layer, why it has
    no pair."""
    nodes = node_graph(model)
    by_key = {n.key: n for n in nodes}
    readers = consumers(nodes)
    outputs = set(output_keys(model))
    pairs, unpaired = [], {}
    for node in nodes:
        if not (node.is_layer and lyr.is_weight_layer(node.op)):
            continue
        if node.calls > 1:
            unpaired[node.op.name] = "shared layer"
            continue
        pair, reason = pair_from(node, by_key, readers, outputs)
        if pair is None:
            unpaired[node.op.name] = reason
        else:
            pairs.append(pair)
    return pairs, unpaired


def relu6_to_relu(model, names, weights=None):
    """A copy of ``model`` whose ReLU6 activations ``names`` (ReLU layers
    or layers with a ``relu6`` activation) are ReLU, with ``weights``
    (layer -> (kernel, bias)) set."""
    replace, overrides = {}, {}
    for name in names:
        if type(model.get_layer(name)) is L.ReLU:
            replace[name] = lambda l: L.ReLU(name=l.name)
        else:
            overrides[name] = {"activation": "relu"}
    return lyr.with_weights(model, weights or {}, replace, overrides)
