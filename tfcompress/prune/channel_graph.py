"""Channel dependency analysis for structured (channel) pruning.

Removing output channel ``c`` of a Conv/Dense layer is exact only if every
layer that carries channel ``c`` onward agrees: BatchNormalization and
depthwise convolutions on the path keep it at zero, an ``Add`` removes the
same channel from all its inputs, a channel-axis ``Concatenate`` places it
at an offset of its output (later layers drop it there), and each consumer
(the next Conv/Dense, or a Flatten followed by Dense) drops the matching
input weights.

``channel_spaces(model)`` groups the model's tensors into channel spaces:
all tensors whose channels must be pruned together. Each space knows its
producers (layers creating the channels), followers (per-channel layers
on the path) and consumers (layers mixing the channels away).

>>> from tfcompress.models import seed_cnn
>>> [s.producers[0].name for s in channel_spaces(seed_cnn()) if s.prunable]
['conv1', 'conv2', 'fc1']
"""

from __future__ import annotations

import dataclasses

import keras
from keras import layers as L

from tfcompress import compat
from tfcompress.errors import InputError

PRODUCERS = (L.Conv1D, L.Conv2D, L.Dense)       # SeparableConv excluded
FOLLOWERS = (L.BatchNormalization, L.DepthwiseConv2D)
ZERO_PRESERVING_ACTIVATIONS = {"relu", "relu6", "linear", "tanh", "swish",
                               "silu", "hard_swish", "hard_silu", "elu",
                               "selu", "leaky_relu", "gelu", None}
PASS_THROUGH = (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D,
                L.AveragePooling2D, L.GlobalAveragePooling1D,
                L.GlobalAveragePooling2D, L.GlobalMaxPooling1D,
                L.GlobalMaxPooling2D, L.Dropout, L.ReLU, L.ZeroPadding2D,
                L.UpSampling2D, L.SpatialDropout2D)


@dataclasses.dataclass
class ChannelSpace:
    """Tensors whose channels are pruned together.

    ``followers`` and ``consumers`` see the space's channels at an offset
    (non-zero after a Concatenate): ``follower_offsets[i]`` is the offset
    for ``followers[i]``; consumers are ``(layer, kind, offset)``.
    """
    channels: int
    producers: list = dataclasses.field(default_factory=list)
    followers: list = dataclasses.field(default_factory=list)
    consumers: list = dataclasses.field(default_factory=list)
    follower_offsets: list = dataclasses.field(default_factory=list)
    frozen: str = ""   # why the space cannot be pruned ("" = it can)

    def iter_followers(self):
        """``(layer, offset)`` of every per-channel layer on the path."""
        return zip(self.followers, self.follower_offsets)

    @property
    def prunable(self) -> bool:
        return not self.frozen and bool(self.producers)

    def names(self):
        return [l.name for l in self.producers]


def _parents(layer_config):
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("class_name") == "__keras_tensor__":
                found.append(node["config"]["keras_history"][0])
            else:
                for v in node.values():
                    walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    nodes = layer_config.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise InputError(f"layer {layer_config['name']!r} is shared (called "
                         "more than once); structured pruning needs each "
                         "layer used once")
    walk(nodes)
    return found


_SEQUENTIAL_INPUT = "__sequential_input__"


def layer_graph(model):
    """``[(layer, [parent names])]`` in topological order."""
    if isinstance(model, keras.Sequential):
        out, prev = [], [_SEQUENTIAL_INPUT]
        for layer in model.layers:
            out.append((layer, prev))
            prev = [layer.name]
        return out
    config = model.get_config()
    by_name = {l.name: l for l in model.layers}
    return [(by_name[c["config"]["name"] if "name" not in c else c["name"]],
             _parents(c)) for c in config["layers"]]


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def _concat_consumer(layer, parents, concat_in, segments, spaces, find,
                     freeze_segments, tensor_space):
    """A layer reading a concatenated tensor: consumers and per-channel
    followers see each segment at its offset; anything else freezes the
    segments. Returns True when the layer is fully handled."""
    segs = segments[concat_in[0]]
    offsets, at = [], 0
    for sid, channels in segs:
        offsets.append(at)
        at += channels
    tensor_space[layer.name] = None
    if len(parents) > 1:
        freeze_segments(concat_in, f"{layer.name} ({type(layer).__name__})"
                        " combines a concatenation with other tensors")
        return True
    if isinstance(layer, PRODUCERS):
        for (sid, _), off in zip(segs, offsets):
            if sid is not None:
                spaces[find(sid)].consumers.append((layer, "input", off))
        return False          # the caller still creates its output space
    zero_safe = _activation_name(layer) in ZERO_PRESERVING_ACTIVATIONS
    if isinstance(layer, FOLLOWERS) and zero_safe and not (
            isinstance(layer, L.DepthwiseConv2D)
            and layer.depth_multiplier != 1):
        for (sid, _), off in zip(segs, offsets):
            if sid is not None:
                spaces[find(sid)].followers.append(layer)
                spaces[find(sid)].follower_offsets.append(off)
        segments[layer.name] = segs
        return True
    if isinstance(layer, PASS_THROUGH) or (
            isinstance(layer, L.Activation) and zero_safe):
        segments[layer.name] = segs
        return True
    freeze_segments(concat_in, f"{layer.name} ({type(layer).__name__}) "
                    "cannot be rewired after a concatenation")
    return True


def channel_spaces(model):
    """Analyses ``model``; returns its list of :class:`ChannelSpace`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            raise InputError(f"structured pruning does not support nested "
                             f"models ({layer.name}); flatten the model first")
    spaces = []
    parent = {}        # union-find over space ids

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def new_space(channels):
        spaces.append(ChannelSpace(channels))
        parent[len(spaces) - 1] = len(spaces) - 1
        return len(spaces) - 1

    tensor_space = {}      # layer name -> space id of its output (or None)
    flattened = {}         # layer name -> space id flattened into features
    output_names = {compat.keras_history(t).operation.name for t in
                    (model.outputs if hasattr(model, "outputs")
                     and model.outputs else [])}
    if isinstance(model, keras.Sequential):
        output_names = {model.layers[-1].name}

    def freeze(sid, why):
        if sid is not None and not spaces[find(sid)].frozen:
            spaces[find(sid)].frozen = why

    # layer name -> [(space id or None, channels), ...] for tensors built by
    # a channel-axis Concatenate (and the per-channel layers after it)
    segments = {}

    def freeze_segments(names, why):
        for n in names:
            for sid, _ in segments.get(n, ()):
                freeze(sid, why)

    def segments_of(name, layer_out):
        if name in segments:
            return segments[name]
        sid = tensor_space.get(name)
        if sid is not None:
            return [(sid, spaces[find(sid)].channels)]
        return [(None, int(layer_out.shape[-1]))]

    by_name = {l.name: l for l in model.layers}
    for layer, parents in layer_graph(model):
        ins = [tensor_space.get(p) for p in parents]
        flat_ins = [flattened.get(p) for p in parents]
        if isinstance(layer, L.InputLayer) or not parents:
            tensor_space[layer.name] = None
            continue
        src = ins[0] if ins else None
        concat_in = [p for p in parents if p in segments]
        if concat_in and not isinstance(layer, L.Concatenate) and \
                _concat_consumer(layer, parents, concat_in,
                                          segments, spaces, find,
                                          freeze_segments, tensor_space):
            continue
        if isinstance(layer, PRODUCERS):
            if flat_ins[0] is not None and isinstance(layer, L.Dense):
                spaces[find(flat_ins[0])].consumers.append(
                    (layer, "flatten_dense", 0))
            elif src is not None:
                spaces[find(src)].consumers.append((layer, "input", 0))
            sid = new_space(int(layer.kernel.shape[-1]))
            spaces[sid].producers.append(layer)
            if _activation_name(layer) not in ZERO_PRESERVING_ACTIVATIONS:
                freeze(sid, f"{layer.name} activation "
                       f"{_activation_name(layer)} maps 0 to non-zero")
            tensor_space[layer.name] = sid
        elif isinstance(layer, FOLLOWERS):
            if isinstance(layer, L.DepthwiseConv2D) and \
                    layer.depth_multiplier != 1:
                freeze(src, f"{layer.name} has depth_multiplier != 1")
            if src is not None:
                spaces[find(src)].followers.append(layer)
                spaces[find(src)].follower_offsets.append(0)
                if _activation_name(layer) not in \
                        ZERO_PRESERVING_ACTIVATIONS:
                    freeze(src, f"{layer.name} activation maps 0 to non-zero")
            tensor_space[layer.name] = src
        elif isinstance(layer, PASS_THROUGH):
            tensor_space[layer.name] = src
        elif isinstance(layer, L.Activation):
            if _activation_name(layer) not in ZERO_PRESERVING_ACTIVATIONS:
                freeze(src, f"{layer.name} activation maps 0 to non-zero")
            tensor_space[layer.name] = src
        elif isinstance(layer, L.Add):
            known = [s for s in ins if s is not None]
            if len(known) != len(ins):
                for s in known:
                    freeze(s, f"{layer.name} adds a tensor of unknown "
                           "channels")
                tensor_space[layer.name] = None
                continue
            root = find(known[0])
            for s in known[1:]:
                r = find(s)
                if r != root:
                    parent[r] = root
                    a, b = spaces[root], spaces[r]
                    a.producers += b.producers
                    a.followers += b.followers
                    a.follower_offsets += b.follower_offsets
                    a.consumers += b.consumers
                    a.frozen = a.frozen or b.frozen
            tensor_space[layer.name] = root
        elif isinstance(layer, L.Concatenate):
            rank = len(layer.output.shape)
            if layer.axis not in (-1, rank - 1):
                for sid in ins:
                    freeze(sid, f"{layer.name} concatenates along axis "
                           f"{layer.axis}, not channels")
                tensor_space[layer.name] = None
                continue
            segments[layer.name] = [
                seg for p in parents
                for seg in segments_of(p, by_name[p].output
                                       if p in by_name else layer.output)]
            tensor_space[layer.name] = None
        elif isinstance(layer, L.Flatten):
            tensor_space[layer.name] = None
            flattened[layer.name] = src
            if flat_ins[0] is not None:
                freeze(flat_ins[0], f"{layer.name} flattens twice")
        else:
            for s in ins + flat_ins:
                freeze(s, f"{layer.name} ({type(layer).__name__}) cannot be "
                       "rewired")
            tensor_space[layer.name] = None
            continue
        # a Flatten's output used by something other than Dense
        if not isinstance(layer, (L.Dense, L.Flatten)):
            for s in flat_ins:
                freeze(s, f"{layer.name} consumes a flattened tensor")
    for name in output_names:
        freeze(tensor_space.get(name), f"{name} is a model output")
        freeze(flattened.get(name), f"{name} is a model output")
        freeze_segments([name], f"{name} is a model output")
    roots = sorted({find(i) for i in range(len(spaces))})
    return [spaces[r] for r in roots]
