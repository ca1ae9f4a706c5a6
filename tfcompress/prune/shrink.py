"""``shrink``: physically remove zeroed channels from a Keras model."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers as L

from tfcompress.prune.channel_graph import channel_spaces
from tfcompress.errors import InputError


def dead_channels(space) -> np.ndarray:
    """Bool mask of channels that carry exact zeros through ``space``.

    A channel is dead when every producer's kernel and bias are zero for
    it, every BatchNormalization on the path has gamma = beta = 0 for it
    and every depthwise convolution on the path has bias 0 for it.
    """
    dead = np.ones(space.channels, bool)
    for layer in space.producers:
        k = np.asarray(layer.kernel).reshape(-1, space.channels)
        dead &= np.all(k == 0, axis=0)
        if getattr(layer, "bias", None) is not None:
            dead &= np.asarray(layer.bias) == 0
    for layer, offset in space.iter_followers():
        window = slice(offset, offset + space.channels)
        if isinstance(layer, L.BatchNormalization):
            for v in (layer.gamma, layer.beta):
                if v is not None:
                    dead &= np.asarray(v)[window] == 0
            if layer.beta is None and layer.gamma is None:
                dead &= False
        elif getattr(layer, "bias", None) is not None:
            dead &= np.asarray(layer.bias)[window] == 0
    return dead


def shrink(model):
    """Returns a smaller model without the channels pruning zeroed.

    Works on Sequential and Functional models (Conv1D/Conv2D/Dense
    producers; BatchNormalization, DepthwiseConv2D, activations, pooling,
    Add and channel-axis Concatenate on the path; Conv/Dense or
    Flatten->Dense consumers). Outputs equal the input model's to float
    tolerance.

    Raises:
      ValueError: when zeroed channels feed a layer that cannot be rewired
        (the message names the layers), or the model is nested/subclassed.

    >>> from tfcompress.models import lenet_300_100
    >>> m = lenet_300_100()
    >>> k = m.get_layer("fc1").kernel
    >>> _ = k.assign(k.numpy() * ([0.0] * 150 + [1.0] * 150))
    >>> _ = m.get_layer("fc1").bias.assign([0.0] * 300)
    >>> shrink(m).get_layer("fc1").units
    150
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config"):
        raise InputError("shrink takes a Sequential or Functional model")
    spaces = channel_spaces(model)
    out_keep, flat_keep = {}, {}
    # consumers and followers may see several spaces at offsets (after a
    # Concatenate): collect the absolute channels to drop per layer
    in_drop, follow_drop = {}, {}
    for space in spaces:
        dead = dead_channels(space)
        if not dead.any():
            continue
        if space.frozen or not space.producers:
            raise InputError(
                f"cannot shrink: channels of {space.names()} are zeroed but "
                f"cannot be removed ({space.frozen}); exclude these layers "
                "from channel pruning")
        if dead.all():
            dead[np.argmax(dead)] = False   # keep one channel: shapes > 0
        keep = np.flatnonzero(~dead)
        drop = np.flatnonzero(dead)
        for layer in space.producers:
            out_keep[layer.name] = keep
        for layer, offset in space.iter_followers():
            follow_drop.setdefault(layer.name, []).extend(drop + offset)
        for layer, kind, offset in space.consumers:
            if kind == "flatten_dense":
                flat_keep[layer.name] = (keep, space.channels)
            else:
                in_drop.setdefault(layer.name, []).extend(drop + offset)
    config = model.get_config()
    for entry in config["layers"]:
        entry.pop("build_config", None)   # input shapes change
        name = entry["config"]["name"]
        if name in out_keep:
            key = "units" if entry["class_name"] == "Dense" else "filters"
            entry["config"][key] = int(len(out_keep[name]))
    new = model.__class__.from_config(config)
    for old_layer in model.layers:
        if not old_layer.weights:
            continue
        new_layer = new.get_layer(old_layer.name)
        weights = [np.asarray(w) for w in old_layer.get_weights()]
        name = old_layer.name
        if isinstance(old_layer, (L.Dense, L.Conv1D, L.Conv2D)):
            kernel = weights[0]
            if name in in_drop:
                axis = 0 if isinstance(old_layer, L.Dense) else -2
                kernel = np.delete(kernel, in_drop[name], axis=axis)
            if name in flat_keep:
                keep, channels = flat_keep[name]
                units = kernel.shape[-1]
                kernel = kernel.reshape(-1, channels, units)[:, keep, :]
                kernel = kernel.reshape(-1, units)
            if name in out_keep:
                kernel = kernel[..., out_keep[name]]
                weights[1:] = [w[out_keep[name]] for w in weights[1:]]
            weights[0] = kernel
        elif name in follow_drop:
            drop = follow_drop[name]
            if isinstance(old_layer, L.DepthwiseConv2D):
                weights[0] = np.delete(weights[0], drop, axis=2)
                weights[1:] = [np.delete(w, drop) for w in weights[1:]]
            else:
                weights = [np.delete(w, drop) for w in weights]
        new_layer.set_weights(weights)
    return new


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass (Conv, Dense, Depthwise).

    >>> from tfcompress.models import lenet_300_100
    >>> count_macs(lenet_300_100())
    266200
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
            continue
        if not isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D,
                                  L.DepthwiseConv2D)):
            continue
        out = layer.output.shape
        spatial = int(np.prod(out[1:-1])) if len(out) > 2 else 1
        kernel = np.prod(layer.kernel.shape)
        if isinstance(layer, L.DepthwiseConv2D):
            total += spatial * int(kernel)
        else:
            total += spatial * int(kernel)
    return int(total)
