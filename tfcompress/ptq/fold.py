"""Batch-norm folding for post-training quantization.

Each BatchNormalization (last axis) whose only input is a Conv2D,
DepthwiseConv2D or Dense with linear activation and no other reader is
folded into that layer's kernel and bias, and replaced by a
:class:`FoldedBatchNorm` identity layer (which converts to no TFLite op). Every Conv2D, DepthwiseConv2D and
Dense of the result has a bias, so later steps can correct it.

The converter folds such batch norms itself; folding here first lets
equalization, bias correction and AdaRound see the kernels TFLite will
quantize.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((4, 4, 3)),
...     keras.layers.Conv2D(8, 3, use_bias=False, name="conv"),
...     keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU()])
>>> folded = fold_batchnorm(m)
>>> type(folded.get_layer("bn")).__name__, folded.get_layer("conv").use_bias
('FoldedBatchNorm', True)
>>> x = np.random.rand(2, 4, 4, 3).astype("float32")
>>> bool(np.allclose(m(x), folded(x), atol=1e-5))
True
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from tfcompress.ptq import layers as lyr
from tfcompress.ptq.folded_layer import FoldedBatchNorm
from tfcompress.utils.graph import consumers, node_graph, output_keys

L = keras.layers


@dataclasses.dataclass
class Folded:
    """What :func:`fold_batchnorm_with_stats` did."""
    model: keras.Model
    # layer name -> (mean, std) per output channel of its pre-activation
    # output, from the folded batch norm's beta and |gamma|
    stats: dict
    folded: list            # [(layer, batchnorm)]
    not_folded: dict        # batchnorm name -> reason


def _bn_axis_is_last(bn, rank):
    axis = bn.axis if isinstance(bn.axis, int) else (
        bn.axis[0] if len(bn.axis) == 1 else None)
    return axis is not None and axis in (-1, rank - 1)


def fold_batchnorm_with_stats(model) -> Folded:
    """:func:`fold_batchnorm`, also returning per-channel statistics and
    the batch norms left alone with the reason."""
    model = lyr.flat_model(model, "fold_batchnorm")
    nodes = node_graph(model)
    readers = consumers(nodes)
    outputs = set(output_keys(model))
    by_key = {n.key: n for n in nodes}
    weights, replace, stats, folded, not_folded = {}, {}, {}, [], {}
    for node in nodes:
        if not node.is_layer:
            continue
        if lyr.is_weight_layer(node.op) and node.op.name not in weights:
            weights[node.op.name] = lyr.kernel_and_bias(node.op)
        bn = node.op
        if type(bn) is not L.BatchNormalization:
            continue
        parent = by_key.get(node.parents[0]) if len(node.parents) == 1 \
            else None
        reason = None
        if node.calls > 1:
            reason = "shared batch norm (called more than once)"
        elif parent is None or not parent.is_layer or \
                not lyr.is_weight_layer(parent.op):
            reason = ("input is not a Conv2D, DepthwiseConv2D or Dense "
                      f"({type(parent.op).__name__ if parent else 'model input'})")
        elif parent.calls > 1:
            reason = f"{parent.op.name} is shared"
        elif lyr.activation_name(parent.op) != "linear":
            reason = f"{parent.op.name} applies an activation before it"
        elif len(readers.get(parent.key, [])) != 1 or parent.key in outputs:
            reason = f"{parent.op.name}'s output is also read elsewhere"
        elif not _bn_axis_is_last(bn, len(node.parent_shapes[0] or [])):
            reason = "batch norm is not over the last (channel) axis"
        if reason:
            not_folded[bn.name] = reason
            continue
        layer = parent.op
        kernel, bias = weights[layer.name]
        gamma = bn.gamma.numpy() if bn.scale else np.ones(
            bn.moving_mean.shape, np.float32)
        beta = bn.beta.numpy() if bn.center else np.zeros(
            bn.moving_mean.shape, np.float32)
        mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
        scale = gamma / np.sqrt(var + bn.epsilon)
        if lyr.is_depthwise(layer):
            kernel = kernel * scale.reshape(kernel.shape[-2:])
        else:
            kernel = kernel * scale
        bias = (bias - mean) * scale + beta
        weights[layer.name] = (kernel.astype(np.float32),
                               bias.astype(np.float32))
        stats[layer.name] = (beta.astype(np.float64),
                             np.abs(gamma).astype(np.float64))
        replace[bn.name] = lambda l: FoldedBatchNorm(name=l.name)
        folded.append((layer.name, bn.name))
    new = lyr.with_weights(model, weights, replace)
    return Folded(new, stats, folded, not_folded)


def fold_batchnorm(model) -> keras.Model:
    """A new model with batch norms folded into the Conv2D,
    DepthwiseConv2D or Dense before them (see the module docstring);
    batch norms that cannot be folded are kept.

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.Conv2D(4, 3, activation="relu", name="conv2"),
    ...     keras.layers.BatchNormalization(name="bn2")])  # after a ReLU
    >>> _ = model.get_layer("bn1").moving_variance.assign(np.full(8, 4.0))
    >>> folded = fold_batchnorm(model)
    >>> [type(layer).__name__ for layer in folded.layers]
    ['Conv2D', 'FoldedBatchNorm', 'Conv2D', 'BatchNormalization']
    >>> x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    >>> bool(np.allclose(model(x), folded(x), atol=1e-5))
    True
    >>> fold_batchnorm_with_stats(model).not_folded
    {'bn2': 'conv2 applies an activation before it'}
    """
    return fold_batchnorm_with_stats(model).model
