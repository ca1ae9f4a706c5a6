"""Pruning policies: which layers of a model ``prune_low_magnitude`` may
prune, with tfmot's names.

``PruneForLatencyOnXNNPack`` prunes only 1x1 convolutions, and first checks
that the model has the shape XNNPACK's sparse inference runs fast: from a
3x3 stride-2 convolution on 3 input channels (after a one-pixel
``ZeroPadding2D``, with ``valid`` padding) to a ``GlobalAveragePooling2D``
on every branch, and only layers XNNPACK runs sparse in between.

>>> import keras
>>> from keras import layers as L
>>> i = keras.Input((16, 16, 3))
>>> x = L.Conv2D(8, 3, strides=2)(L.ZeroPadding2D(1)(i))
>>> x = L.Conv2D(16, 1, name="expand")(L.ReLU()(L.BatchNormalization()(x)))
>>> x = L.GlobalAveragePooling2D(keepdims=True)(x)
>>> model = keras.Model(i, L.Flatten()(L.Conv2D(4, 1, name="head")(x)))
>>> policy = PruneForLatencyOnXNNPack()
>>> policy.ensure_model_supports_pruning(model)
>>> [l.name for l in model.layers if policy.allow_pruning(l)]
['expand', 'head']
"""

from __future__ import annotations

import keras
from keras import layers as L

from tfcompress.errors import InputError
from tfcompress.utils.graph import (SEQUENTIAL_INPUT, consumers, node_graph,
                                    output_keys)
from tfcompress.utils.layer_map import is_container

# keras.ops calls XNNPACK runs sparse (x + y, x * y, ...)
_SPARSE_OPS = ("Add", "Subtract", "Multiply", "Identity")
_SPARSE_ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "sigmoid")


class PruningPolicy:
    """What ``prune_low_magnitude(model, pruning_policy=...)`` asks: whether
    the model suits the policy, and whether a layer may be pruned."""

    def allow_pruning(self, layer) -> bool:
        """True if ``layer`` may be wrapped for pruning."""
        raise NotImplementedError

    def ensure_model_supports_pruning(self, model) -> None:
        """Raises InputError if ``model`` does not suit the policy."""
        raise NotImplementedError


class PruneForLatencyOnXNNPack(PruningPolicy):
    """Prunes only 1x1 ``Conv2D`` layers, in a model XNNPACK's sparse
    inference accelerates (see the module docstring); as tfmot's policy of
    the same name."""

    def allow_pruning(self, layer) -> bool:
        return _is_conv2d(layer) and tuple(layer.kernel_size) == (1, 1)

    def ensure_model_supports_pruning(self, model) -> None:
        name = type(self).__name__
        if not isinstance(model, keras.Model) or not is_container(model):
            raise InputError(f"{name} checks Sequential and Functional "
                             "models; this is a subclassed model")
        if not model.built:
            raise InputError(f"{name}: model {model.name} is not built; "
                             "give it an Input")
        nodes = {n.key: n for n in node_graph(model)}
        readers = consumers(nodes.values())
        producers = {k: n.parents for k, n in nodes.items()}
        inputs = [k for k, n in nodes.items() if not n.parents] or \
            [SEQUENTIAL_INPUT]
        starts = _search(inputs, lambda k: _starts_sparse(nodes, k),
                         lambda k: readers.get(k, []))
        if not starts:
            raise InputError(
                f"{name}: every input branch must reach a Conv2D 3x3 with "
                "strides 2, 3 input channels and 'valid' padding, read "
                "through ZeroPadding2D(1); the model has none. Start the "
                "model so, or prune it without this policy")
        ends = _search(output_keys(model),
                       lambda k: isinstance(nodes[k].op,
                                            L.GlobalAveragePooling2D),
                       lambda k: producers.get(k, []))
        if not ends:
            raise InputError(
                f"{name}: every output branch must come from a "
                "GlobalAveragePooling2D; the model has none on some branch")

        def stop(key):
            if key not in ends and not _runs_sparse(nodes, key):
                op = nodes[key].op
                raise InputError(
                    f"{name}: layer {op.name!r} ({type(op).__name__}) "
                    "between the first convolution and the global pooling "
                    "is not run sparse by XNNPACK; replace it, or prune "
                    "without this policy")
            return key in ends

        _search([r for k in starts for r in readers.get(k, [])], stop,
                lambda k: readers.get(k, []))


def _search(sources, stop, step):
    """Walks from ``sources`` along ``step`` until ``stop``; the keys where
    it stopped, or an empty set if some path ends without stopping."""
    to_visit, seen, found = list(sources), set(sources), set()
    while to_visit:
        key = to_visit.pop()
        if stop(key):
            found.add(key)
            continue
        following = step(key)
        if not following:
            return set()
        for k in following:
            if k not in seen:
                seen.add(k)
                to_visit.append(k)
    return found


def _is_conv2d(op):
    # DepthwiseConv2D, SeparableConv2D and Conv2DTranspose are other classes
    return isinstance(op, L.Conv2D)


def _starts_sparse(nodes, key):
    node = nodes.get(key)
    if node is None or not _is_conv2d(node.op):
        return False
    conv = node.op
    if len(node.parents) != 1 or node.parents[0] not in nodes:
        return False
    pad = nodes[node.parents[0]].op
    return (conv.built and tuple(conv.kernel.shape[:3]) == (3, 3, 3) and
            tuple(conv.strides) == (2, 2) and conv.padding == "valid" and
            isinstance(pad, L.ZeroPadding2D) and
            _padding(pad) == ((1, 1), (1, 1)))


def _padding(layer):
    return tuple(tuple(int(v) for v in p) for p in layer.padding)


def _runs_sparse(nodes, key):
    """XNNPACK's sparse-inference subgraph check, per layer."""
    node = nodes[key]
    op = node.op
    if not isinstance(op, keras.layers.Layer):
        return type(op).__name__ in _SPARSE_OPS
    if isinstance(op, (L.Add, L.Multiply, L.ZeroPadding2D, L.ReLU,
                       L.LeakyReLU, L.ELU, L.Dropout)):
        return True
    if isinstance(op, L.DepthwiseConv2D):
        return _depthwise_runs_sparse(nodes, node)
    if _is_conv2d(op):
        return (op.groups == 1 and tuple(op.dilation_rate) == (1, 1) and
                tuple(op.kernel_size) == (1, 1) and
                tuple(op.strides) == (1, 1))
    if isinstance(op, L.GlobalAveragePooling2D):
        return bool(op.keepdims)
    if isinstance(op, L.BatchNormalization):
        return op.axis in (-1, 3, [3], [-1])
    if isinstance(op, L.UpSampling2D):
        return op.interpolation == "bilinear"
    if isinstance(op, L.Activation):
        return getattr(op.activation, "__name__", "") in _SPARSE_ACTIVATIONS
    return False


def _depthwise_runs_sparse(nodes, node):
    op = node.op
    parent = nodes.get(node.parents[0]) if len(node.parents) == 1 else None
    pad = _padding(parent.op) if parent is not None and isinstance(
        parent.op, L.ZeroPadding2D) else None
    kernel, strides = tuple(op.kernel_size), tuple(op.strides)
    for size in (3, 5):
        edge = size // 2
        if kernel != (size, size):
            continue
        if strides == (1, 1) and op.padding == "same":
            return op.depth_multiplier == 1 and \
                tuple(op.dilation_rate) == (1, 1)
        if strides in ((1, 1), (2, 2)) and op.padding == "valid" and \
                pad == ((edge, edge), (edge, edge)):
            return op.depth_multiplier == 1 and \
                tuple(op.dilation_rate) == (1, 1)
    return False
