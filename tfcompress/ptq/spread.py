"""Synthetic stress test for per-tensor quantization: spread the channel
ranges of a model without changing its float function.

Pretrained networks (ImageNet MobileNetV2 is the known case) have, after
batch-norm folding, kernels whose output channels differ in range by
orders of magnitude; one per-tensor int8 scale then rounds the small
channels to zero. Briefly trained models rarely show it. This module
reproduces that pathology on any model by the reparametrization
cross-layer equalization undoes: for each pair of layers equalization
would pair (joined by ReLU, identity, pooling, zero padding, dropout or
flatten), output channel ``c`` of the first is multiplied by ``s_c``
(log-uniform in ``[low, high]``, seeded) and input channel ``c`` of the
second divided by it. ReLU is positively homogeneous, so the float
outputs are unchanged up to rounding. Where the first layer's output goes
through a folded batch norm, the batch norm's ``gamma`` and ``beta`` are
scaled (the folded kernel is then ``s_c`` times the original's, and the
batch norm stays in the model for the converter to fold).

ReLU6 does not commute with the scaling (its clip at 6 would move to
``6 s_c``): pairs joined by ReLU6 are skipped and reported, unless
``replace_relu6=True`` first turns every ReLU6 on a pair's path into
ReLU, as :func:`tfcompress.ptq.equalize` does. That changes the float
function where activations exceeded 6; the result then preserves the
function of that ReLU model, not of the input model.

It is a test device, not a compression step: nothing here makes a model
smaller or better.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((6, 6, 3)),
...     keras.layers.Conv2D(4, 3, activation="relu", name="a"),
...     keras.layers.Conv2D(2, 3, name="b")])
>>> spread, report = spread_channels(m, seed=0)
>>> report.pairs
[('a', 'b')]
>>> x = np.random.rand(2, 6, 6, 3).astype("float32")
>>> bool(np.allclose(m(x), spread(x), rtol=1e-4, atol=1e-5))
True
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfcompress.errors import InputError
from tfcompress.ptq import layers as lyr
from tfcompress.ptq.equalize import (find_pairs, input_channel_view,
                                     relu6_to_relu)
from tfcompress.ptq.fold import fold_batchnorm_with_stats
from tfcompress.ptq.grid import channel_view



@dataclasses.dataclass
class SpreadReport:
    """What :func:`spread_channels` did: ``pairs`` spread, ``skipped``
    (first layer -> reason), ``relu6_replaced`` (with
    ``replace_relu6=True``), ``factors`` (first layer -> the ``s_c``)."""
    pairs: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)
    relu6_replaced: list = dataclasses.field(default_factory=list)
    factors: dict = dataclasses.field(default_factory=dict)


def _pairs(model):
    """Equalization pairs of ``model`` (on its batch-norm-folded graph),
    the ``layer -> batch norm`` folding map, and the unpaired reasons."""
    folded = fold_batchnorm_with_stats(model)
    pairs, unpaired = find_pairs(folded.model)
    return pairs, dict(folded.folded), unpaired


def spread_channels(model, low: float = 0.01, high: float = 100.0,
                    seed: int = 0, replace_relu6: bool = False):
    """A copy of ``model`` whose paired channel ranges are spread by
    factors log-uniform in ``[low, high]`` (see the module docstring).

    Returns ``(model, SpreadReport)``. The input model is not changed.
    """
    model = lyr.flat_model(model, "spread_channels")
    if not 0 < low <= high:
        raise InputError(f"spread_channels: need 0 < low <= high, got "
                         f"low={low}, high={high}")
    pairs, bn_of, _ = _pairs(model)
    report = SpreadReport()
    if replace_relu6:
        names = sorted({n for p in pairs for n in p.relu6})
        if names:
            model = relu6_to_relu(model, names)
            report.relu6_replaced = names
            pairs, bn_of, _ = _pairs(model)
    new = lyr.copy_model(model)
    rng = np.random.default_rng(seed)
    for p in pairs:
        if p.relu6:
            report.skipped[p.first] = (
                f"ReLU6 between {p.first} and {p.second} "
                f"({', '.join(p.relu6)}) does not commute with scaling")
            continue
        first, second = new.get_layer(p.first), new.get_layer(p.second)
        bn = new.get_layer(bn_of[p.first]) if p.first in bn_of else None
        if bn is not None and not (bn.scale and bn.center):
            report.skipped[p.first] = (
                f"batch norm {bn.name} has no gamma or beta to scale")
            continue
        n = first.kernel.shape[-1] * (
            first.kernel.shape[-2] if lyr.is_depthwise(first) else 1)
        s = np.exp(rng.uniform(np.log(low), np.log(high), n))
        if bn is not None:
            bn.gamma.assign((bn.gamma.numpy() * s).astype(np.float32))
            bn.beta.assign((bn.beta.numpy() * s).astype(np.float32))
        else:
            k = first.kernel.numpy()
            view = channel_view(k, lyr.is_depthwise(first)) * s
            first.kernel.assign(view.reshape(k.shape).astype(np.float32))
            if first.use_bias:
                first.bias.assign((first.bias.numpy() * s).astype(
                    np.float32))
        k2 = second.kernel.numpy()
        v2 = input_channel_view(k2, second, p.flatten_channels) / s[None, :, None]
        second.kernel.assign(v2.reshape(k2.shape).astype(np.float32))
        report.pairs.append((p.first, p.second))
        report.factors[p.first] = s.astype(np.float32)
    return new, report
