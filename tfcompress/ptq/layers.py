"""Kernels, biases and pre-activation outputs of the layers the
post-training steps change (Conv2D, DepthwiseConv2D, Dense), and the
rebuild of a model with new weights.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
>>> new = with_weights(m, {"fc": (np.ones((3, 2), "float32"), np.zeros(2, "float32"))})
>>> new.get_layer("fc").kernel.numpy().tolist()
[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
>>> new is m
False
"""

from __future__ import annotations

import keras
import numpy as np

from tfcompress.errors import InputError
from tfcompress.ptq.folded_layer import FoldedBatchNorm
from tfcompress.utils.flatten import flatten_nested
from tfcompress.utils.layer_map import (copy_layer, copy_model,
                                        is_container, map_layers)

L = keras.layers


def is_weight_layer(layer) -> bool:
    """Conv2D (ungrouped), DepthwiseConv2D or Dense, channels last."""
    if type(layer) is L.Dense:
        return True
    if type(layer) in (L.Conv2D, L.DepthwiseConv2D):
        return (getattr(layer, "groups", 1) == 1 and
                layer.data_format == "channels_last")
    return False


def is_depthwise(layer) -> bool:
    return type(layer) is L.DepthwiseConv2D


def activation_name(layer) -> str | None:
    """``linear``, ``relu`` or ``relu6`` for what the layer applies after
    its affine part (Conv/Dense ``activation``, ReLU, Activation,
    Identity, the identity a folded batch norm leaves); None for anything
    else."""
    if type(layer) in (L.Identity, FoldedBatchNorm):
        return "linear"
    if type(layer) is L.ReLU:
        if layer.negative_slope or layer.threshold:
            return None
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else None
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    name = getattr(act, "__name__", "")
    return name if name in ("linear", "relu", "relu6") else None


def kernel_and_bias(layer):
    """``(kernel, bias)`` as float32 arrays (bias zeros when unused)."""
    kernel = np.asarray(layer.kernel.numpy(), np.float32)
    n = kernel.shape[-1] * (kernel.shape[-2] if is_depthwise(layer) else 1)
    bias = layer.bias.numpy() if layer.use_bias else np.zeros(n, np.float32)
    return kernel, np.asarray(bias, np.float32)


def preactivation(layer, x, kernel, bias):
    """``layer``'s output before its activation, with the given weights."""
    ops = keras.ops
    if type(layer) is L.Dense:
        y = ops.matmul(x, kernel)
    elif is_depthwise(layer):
        y = ops.depthwise_conv(x, kernel, layer.strides, layer.padding,
                               layer.data_format, layer.dilation_rate)
    else:
        y = ops.conv(x, kernel, layer.strides, layer.padding,
                     layer.data_format, layer.dilation_rate)
    return y + bias


def apply_activation(name, y):
    if name == "relu":
        return keras.ops.relu(y)
    if name == "relu6":
        return keras.ops.relu6(y)
    return y


def flat_model(model, what):
    """The model a post-training step works on: ``model`` itself, or,
    when it nests models (a keras.applications base inside a Sequential),
    the same network as one flat Functional model of copied layers
    (:func:`tfcompress.utils.flatten.flatten_nested`), so the step reaches
    the layers inside. Raises InputError for a subclassed or unbuilt
    model."""
    if not isinstance(model, keras.Model) or not is_container(model):
        raise InputError(f"{what} takes a Sequential or Functional Keras 3 "
                         f"model, got {type(model).__name__}; rebuild a "
                         "subclassed model as a Functional one first")
    if not model.built or not model.inputs:
        raise InputError(f"{what}: model {model.name!r} has no Input; "
                         "give it a keras.Input first")
    _refuse_wrapped(model, what)
    return flatten_nested(model)


def _refuse_wrapped(model, what):
    """InputError for a model still wrapped for pruning or clustering, or
    quantization-aware: the post-training steps change only plain
    Conv2D/DepthwiseConv2D/Dense/BatchNormalization layers, so such a
    model would come back unchanged."""
    from tfcompress.utils.training_wrappers import refuse_wrapped
    refuse_wrapped(model, what, lambda layer: (
        f"{what}: model {model.name!r} is quantization-aware (layer "
        f"{layer.name!r} is a QAT layer); post-training steps take the "
        "float model: run them before quantize_model, or convert the QAT "
        "model as it is"))


def with_weights(model, weights: dict, replace: dict | None = None,
                 overrides: dict | None = None):
    """A new model: ``weights`` maps layer name to ``(kernel, bias)``,
    ``replace`` maps a layer name to a function making its replacement
    (given the copy), ``overrides`` maps a layer name to config changes.
    Layers given new weights get ``use_bias=True``. The input model is not
    changed."""
    replace = replace or {}
    overrides = dict(overrides or {})
    for name in weights:
        overrides.setdefault(name, {})["use_bias"] = True

    def fn(layer):
        if layer.name in replace:
            return replace[layer.name](layer)
        if layer.name in overrides:
            config = layer.get_config()
            config.update(overrides[layer.name])
            return layer.__class__.from_config(config)
        return layer

    new = map_layers(model, fn)
    for name, (kernel, bias) in weights.items():
        layer = new.get_layer(name)
        layer.kernel.assign(np.asarray(kernel, np.float32))
        layer.bias.assign(np.asarray(bias, np.float32))
    # layers rebuilt from their config (not in ``weights``) keep the
    # original's weights
    for name in overrides:
        if name in weights or name in replace:
            continue
        old, layer = model.get_layer(name), new.get_layer(name)
        if len(old.weights) == len(layer.weights):
            layer.set_weights(old.get_weights())
    return new


def feature_model(model, layer):
    """A model from ``model``'s input to ``layer``'s input."""
    return keras.Model(model.inputs[0], layer.input)


def channel_moments(batches):
    """Mean and biased variance per channel (last axis), in float64, over
    the arrays in ``batches``.

    >>> mean, var = channel_moments([np.array([[0.0, 1.0]]), np.array([[2.0, 1.0]])])
    >>> mean.tolist(), var.tolist()
    ([1.0, 1.0], [1.0, 0.0])
    """
    total = total_sq = 0.0
    count = 0
    for batch in batches:
        y = np.asarray(batch, np.float64)
        y = y.reshape(-1, y.shape[-1])
        total = total + y.sum(0)
        total_sq = total_sq + (y * y).sum(0)
        count += len(y)
    mean = total / count
    return mean, np.maximum(total_sq / count - mean * mean, 0.0)


def batches(x, batch_size):
    """``x`` cut into batches of ``batch_size`` (the last one shorter).

    >>> [len(b) for b in batches(np.zeros((10, 2)), 4)]
    [4, 4, 2]
    """
    return [x[i:i + batch_size] for i in range(0, len(x), batch_size)]


def batched(fn, x, batch_size=64):
    """``fn`` applied to ``x`` in batches, concatenated as numpy."""
    return np.concatenate([np.asarray(fn(b)) for b in batches(x, batch_size)])


__all__ = ["activation_name", "apply_activation", "batched", "batches",
           "channel_moments", "flat_model",
           "copy_layer", "copy_model", "feature_model", "is_depthwise", "is_weight_layer",
           "kernel_and_bias", "preactivation", "with_weights"]
