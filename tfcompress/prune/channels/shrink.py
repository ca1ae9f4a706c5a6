"""``shrink``: physically remove zeroed channels from a Keras model."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers as L

from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_model
from tfcompress.prune.channels.graph import (channel_spaces, output_kernel,
                                             require_built)
from tfcompress.utils.channels import repeated_positions
from tfcompress.utils.layer_map import is_container

SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)


def dead_channels(space) -> np.ndarray:
    """Bool mask of channels that carry exact zeros through ``space``.

    A channel is dead when every producer's kernel and bias are zero for
    it, every BatchNormalization on the path has gamma = beta = 0 for it
    (beta, if any, and moving mean = 0 when it has no gamma) and every
    depthwise convolution on the path has bias 0 for it (for each of its
    outputs with a ``depth_multiplier`` above 1).

    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="conv2"),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> space = channel_spaces(model)[0]   # conv1 -> bn1
    >>> bool(dead_channels(space).any())  # fresh model: every channel lives
    False
    >>> conv1, bn1 = model.get_layer("conv1"), model.get_layer("bn1")
    >>> for v in (conv1.kernel, conv1.bias, bn1.gamma, bn1.beta):
    ...     value = v.numpy()
    ...     value[..., 2] = 0           # channel 2 carries exact zeros
    ...     _ = v.assign(value)
    >>> np.flatnonzero(dead_channels(space)).tolist()
    [2]
    """
    dead = np.ones(space.channels, bool)
    for layer in space.producers:
        k = np.asarray(output_kernel(layer)).reshape(-1, space.channels)
        dead &= np.all(k == 0, axis=0)
        if getattr(layer, "bias", None) is not None:
            dead &= np.asarray(layer.bias) == 0
    for layer, _, outputs in space.iter_follower_positions():
        if isinstance(layer, L.BatchNormalization):
            # no scale: -moving_mean / std reaches the output
            vectors = (layer.gamma, layer.beta) if layer.gamma is not None \
                else (layer.beta, layer.moving_mean)
        else:
            vectors = (getattr(layer, "bias", None),)
        for v in vectors:
            if v is not None:
                dead &= np.all(np.asarray(v)[outputs] == 0, axis=1)
    return dead


class _Plan:
    """Which channels each layer keeps or drops."""

    def __init__(self):
        self.out_keep = {}      # producer name -> kept output channels
        self.flat_keep = {}     # Dense after Flatten -> (keep, channels)
        self.in_drop = {}       # consumer name -> dropped input channels
        self.follow_drop = {}   # per-channel layer -> dropped channels
        self.reshape_drop = {}  # Reshape name -> number of channels dropped

    def add(self, space, dead):
        if dead.all():
            dead = dead.copy()
            dead[np.argmax(dead)] = False   # keep one channel: shapes > 0
        keep = np.flatnonzero(~dead)
        drop = np.flatnonzero(dead)
        for layer in space.producers + space.passengers:
            self.out_keep[layer.name] = keep
        for layer, inputs, _ in space.iter_follower_positions():
            self.follow_drop.setdefault(layer.name, []).extend(
                inputs[drop].ravel())
        for layer in space.passenger_followers:
            self.follow_drop.setdefault(layer.name, []).extend(drop)
        for layer in space.reshapes:
            self.reshape_drop[layer.name] = \
                self.reshape_drop.get(layer.name, 0) + len(drop)
        for layer, kind, offset, repeat in space.consumers:
            positions = space.positions(offset, repeat)
            if kind == "flatten_dense":
                self.flat_keep[layer.name] = (positions[keep].ravel(),
                                              positions.size)
            else:
                self.in_drop.setdefault(layer.name, []).extend(
                    positions[drop].ravel())

    def config(self, entry):
        """Edits one layer entry of the model config in place."""
        entry.pop("build_config", None)   # input shapes change
        cfg = entry["config"]
        name = cfg.get("name")
        if name in self.out_keep:
            key = "units" if "units" in cfg else "filters"
            cfg[key] = int(len(self.out_keep[name]))
        if name in self.reshape_drop:
            shape = list(cfg["target_shape"])
            shape[-1] -= self.reshape_drop[name]
            cfg["target_shape"] = shape

    def weights(self, layer):
        """``layer``'s weights with the planned channels removed."""
        weights = [np.asarray(w) for w in layer.get_weights()]
        name = layer.name
        if isinstance(layer, SEPARABLE):
            depthwise, pointwise = weights[0], weights[1]
            if name in self.in_drop:
                drop = np.asarray(self.in_drop[name])
                rows = repeated_positions(drop, depthwise.shape[-1]).ravel()
                depthwise = np.delete(depthwise, drop, axis=-2)
                pointwise = np.delete(pointwise, rows, axis=-2)
            if name in self.out_keep:
                pointwise = pointwise[..., self.out_keep[name]]
                weights[2:] = [w[self.out_keep[name]] for w in weights[2:]]
            weights[0], weights[1] = depthwise, pointwise
        elif isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D)):
            kernel = weights[0]
            if name in self.in_drop:
                axis = 0 if isinstance(layer, L.Dense) else -2
                kernel = np.delete(kernel, self.in_drop[name], axis=axis)
            if name in self.flat_keep:
                keep, channels = self.flat_keep[name]
                units = kernel.shape[-1]
                kernel = kernel.reshape(-1, channels, units)[:, keep, :]
                kernel = kernel.reshape(-1, units)
            if name in self.out_keep:
                kernel = kernel[..., self.out_keep[name]]
                weights[1:] = [w[self.out_keep[name]] for w in weights[1:]]
            weights[0] = kernel
        elif name in self.follow_drop:
            drop = self.follow_drop[name]
            if isinstance(layer, DEPTHWISE):
                outputs = repeated_positions(
                    drop, layer.depth_multiplier).ravel()
                weights[0] = np.delete(weights[0], drop, axis=-2)
                weights[1:] = [np.delete(w, outputs) for w in weights[1:]]
            else:
                weights = [np.delete(w, drop) for w in weights]
        return weights


def shrink(model):
    """Returns a smaller model without the channels pruning zeroed.

    Works on Sequential and Functional models (Conv1D/Conv2D/Dense/
    SeparableConv producers; BatchNormalization, DepthwiseConv,
    activations, pooling, padding, Reshape keeping the channel axis, Add,
    squeeze-excitation Multiply and channel-axis Concatenate on the path;
    Conv/Dense/SeparableConv or Flatten->Dense consumers). Outputs equal
    the input model's to float tolerance.

    Raises:
      InputError: when zeroed channels cannot be removed (the message
        names the layers and the reason), or the model is subclassed.

    >>> from tfcompress.models import lenet_300_100
    >>> m = lenet_300_100()
    >>> k = m.get_layer("fc1").kernel
    >>> _ = k.assign(k.numpy() * ([0.0] * 150 + [1.0] * 150))
    >>> _ = m.get_layer("fc1").bias.assign([0.0] * 300)
    >>> shrink(m).get_layer("fc1").units
    150
    """
    if not isinstance(model, keras.Model) or not is_container(model):
        raise InputError("shrink takes a Sequential or Functional model; "
                         "rebuild a subclassed model as Functional first")
    plan = _Plan()
    for space in channel_spaces(model):
        dead = dead_channels(space)
        if not dead.any():
            continue
        if space.frozen or not space.producers:
            raise InputError(
                f"cannot shrink: channels of {space.names()} are zeroed but "
                f"cannot be removed ({space.frozen}); exclude these layers "
                "from channel pruning")
        plan.add(space, dead)
    config = model.get_config()
    for entry in config["layers"]:
        plan.config(entry)
    new = model.__class__.from_config(config)
    for old_layer in model.layers:
        if old_layer.weights:
            weights = plan.weights(old_layer)
            target = new.get_layer(old_layer.name)
            shapes = [tuple(w.shape) for w in target.weights]
            if shapes != [w.shape for w in weights]:
                raise InputError(
                    f"cannot shrink: layer {old_layer.name!r} "
                    f"({type(old_layer).__name__}) reads pruned channels "
                    f"along a path the channel graph does not follow "
                    f"(weights {[w.shape for w in weights]} vs {shapes}); "
                    "exclude the producers feeding it from channel pruning")
            target.set_weights(weights)
    return new


TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_MAC_LAYERS = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D,
               L.DepthwiseConv2D) + TRANSPOSED + SEPARABLE


def _unwrapped(layer):
    """The layer a pruning, clustering or QAT wrapper holds (``.layer``,
    nested wrappers too), or ``layer`` itself."""
    while not isinstance(layer, _MAC_LAYERS) and isinstance(
            getattr(layer, "layer", None), keras.layers.Layer):
        layer = layer.layer
    return layer


def _layer_macs(layer, input_shape):
    """Multiply-accumulates of one call of ``layer`` on ``input_shape``:
    each output position (each input position of a transposed
    convolution) takes one product per kernel weight."""
    if isinstance(layer, TRANSPOSED):
        positions = input_shape[1:-1]
    else:
        positions = layer.compute_output_shape(tuple(input_shape))[1:-1]
    spatial = int(np.prod(positions)) if len(positions) else 1
    kernels = ((layer.depthwise_kernel, layer.pointwise_kernel)
               if isinstance(layer, SEPARABLE) else (layer.kernel,))
    return spatial * sum(int(np.prod(k.shape)) for k in kernels)


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass (Dense, convolutions of
    every kind: 1D to 3D, depthwise, separable, transposed), also inside
    pruning, clustering and QAT wrappers; a layer called twice counts
    twice.

    >>> from tfcompress.models import lenet_300_100
    >>> count_macs(lenet_300_100())
    266200

    A nested model built without an input size (a keras.applications
    base with ``include_top=False`` and no ``input_shape`` takes
    ``(None, None, 3)``) is counted at the size its caller gives it, at
    any depth of nesting.
    """
    from tfcompress.utils.graph import node_graph
    check_model(model, "count_macs", hint="; for one layer, count "
                "keras.Sequential([keras.Input(shape), layer])")
    require_built(model)
    total = 0
    for node in node_graph(model):
        if isinstance(node.op, keras.Model):
            total += count_macs(_at_call_size(node.op, node.parent_shapes))
            continue
        layer = _unwrapped(node.op)
        if not isinstance(layer, _MAC_LAYERS):
            continue
        shape = node.parent_shapes[0] if node.parent_shapes else None
        if not shape:
            raise InputError(f"count_macs: the input shape of "
                             f"{node.op.name} is unknown; build the model "
                             "with a keras.Input")
        if None in tuple(shape)[1:]:
            sized = ", ".join("n" if d is None else str(d)
                              for d in model.inputs[0].shape[1:])
            raise InputError(
                f"count_macs: the input of {node.op.name} has shape "
                f"{tuple(shape)}, whose sizes model {model.name} leaves "
                f"open (its input is {tuple(model.inputs[0].shape)}); "
                f"count keras.Model(i, model(i)) with i = "
                f"keras.Input(({sized})), each n the size you deploy")
        total += _layer_macs(layer, shape)
    return int(total)


def _at_call_size(model, shapes):
    """``model``, nested in another and called on inputs of ``shapes``, as
    that call runs it: when ``model`` leaves an input size open, a copy
    of it (new layers, the original is not touched) built on inputs of
    ``shapes``, whose own nested models :func:`count_macs` sizes in turn;
    else ``model`` itself."""
    if not any(None in tuple(t.shape)[1:] for t in model.inputs):
        return model
    inputs = [keras.Input(batch_shape=shape, dtype=t.dtype)
              for shape, t in zip(shapes, model.inputs)]
    return keras.models.clone_model(
        model, input_tensors=inputs[0] if len(inputs) == 1 else inputs)
