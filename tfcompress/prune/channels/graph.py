"""Channel dependency analysis for structured (channel) pruning.

Removing output channel ``c`` of a Conv/Dense layer is exact only if every
layer that carries channel ``c`` onward agrees: BatchNormalization and
depthwise convolutions on the path keep it at zero, an ``Add`` removes the
same channel from all its inputs, a channel-axis ``Concatenate`` places it
at an offset of its output (later layers drop it there), and each consumer
(the next Conv/Dense/SeparableConv, or a Flatten followed by Dense) drops
the matching input weights. A depthwise convolution with
``depth_multiplier = M`` turns channel ``c`` into its outputs ``c * M``
to ``c * M + M - 1``: the layers after it see the space's channels
*repeated* ``M`` times and drop all ``M`` together.

A ``Multiply`` by a gate (squeeze-excitation: ``x * sigmoid(conv(...))``)
keeps a dead channel of ``x`` at zero whatever the gate says, so the gate's
producers lose the same channel without being ranked or zeroed: they are
the space's *passengers*.

``channel_spaces(model)`` groups the model's tensors into channel spaces:
all tensors whose channels must be pruned together. Each space knows its
producers (layers creating the channels), followers (per-channel layers
on the path) and consumers (layers mixing the channels away); a space that
cannot be pruned says why in ``frozen``.

>>> from tfcompress.models import seed_cnn
>>> [s.producers[0].name for s in channel_spaces(seed_cnn()) if s.prunable]
['conv1', 'conv2', 'fc1']
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import layers as L

from tfcompress.errors import InputError
from tfcompress.utils import graph as graph_lib
from tfcompress.utils.channels import repeated_positions
from tfcompress.utils.layer_map import is_container

PRODUCERS = (L.Conv1D, L.Conv2D, L.Dense, L.SeparableConv1D,
             L.SeparableConv2D)
FOLLOWERS = (L.BatchNormalization, L.DepthwiseConv2D, L.DepthwiseConv1D)
ZERO_PRESERVING_ACTIVATIONS = {"relu", "relu6", "linear", "tanh", "swish",
                               "silu", "hard_swish", "hard_silu", "elu",
                               "selu", "leaky_relu", "gelu", "mish",
                               "softsign", None}
PASS_THROUGH = (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D,
                L.AveragePooling2D, L.GlobalAveragePooling1D,
                L.GlobalAveragePooling2D, L.GlobalMaxPooling1D,
                L.GlobalMaxPooling2D, L.Dropout, L.SpatialDropout1D,
                L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout,
                L.AlphaDropout, L.ReLU, L.LeakyReLU, L.ELU, L.ZeroPadding1D,
                L.ZeroPadding2D, L.Cropping1D, L.Cropping2D, L.UpSampling1D,
                L.UpSampling2D, L.Identity, L.ActivityRegularization)
# layers that normalise across channels: a removed channel changes the rest
ACROSS_CHANNELS = (L.LayerNormalization, L.GroupNormalization,
                   L.UnitNormalization, L.Softmax)
# activations computed across the channels of a position
ACROSS_CHANNEL_ACTIVATIONS = {"softmax", "log_softmax"}
# keras.ops calls applied element-wise (with constants) in functional graphs
ELEMENTWISE_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide",
                   "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu",
                   "HardSilu", "Gelu", "Tanh", "Elu", "Selu", "LeakyRelu",
                   "Softplus", "Abs", "Square", "Sqrt", "Negative", "Exp",
                   "Power", "Maximum", "Minimum", "Clip", "Cast", "Mish"}


def output_kernel(layer):
    """The kernel whose last axis holds ``layer``'s output channels."""
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return layer.pointwise_kernel
    return layer.kernel


def depth_multiplier(layer) -> int:
    """How many outputs each input channel of ``layer`` feeds (a depthwise
    convolution's ``depth_multiplier``; 1 for other per-channel layers)."""
    return int(getattr(layer, "depth_multiplier", 1))


def _output_positions(layer, inputs):
    """Positions of a per-channel layer's outputs (its per-channel weights)
    for the input positions ``inputs`` (one row per channel)."""
    multiplier = depth_multiplier(layer)
    if multiplier == 1:
        return inputs
    return repeated_positions(inputs.ravel(), multiplier).reshape(
        len(inputs), -1)


@dataclasses.dataclass
class ChannelSpace:
    """Tensors whose channels are pruned together.

    ``followers`` and ``consumers`` see the space's channels at an offset
    (non-zero after a Concatenate), each repeated (more than once after a
    depthwise convolution with ``depth_multiplier`` above 1, see
    :meth:`positions`): ``follower_offsets[i]`` and
    ``follower_repeats[i]`` are those of ``followers[i]``; consumers are
    ``(layer, kind, offset, repeat)``.
    ``passengers`` (gate producers of a squeeze-excitation ``Multiply``)
    and ``passenger_followers`` lose the channels the space drops but do
    not decide which. ``reshapes`` are Reshape layers whose last
    dimension is this space's channels. ``gate`` says why a dead channel
    is not zero here (an activation mapping 0 to a non-zero value): such a
    space can only be dropped through a Multiply.

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
    >>> space = channel_spaces(model)[0]
    >>> space.channels, space.prunable, space.frozen
    (8, True, '')
    >>> [layer.name for layer in space.producers]
    ['conv1']
    >>> [(layer.name, offset) for layer, offset in space.iter_followers()]
    [('bn1', 0)]
    >>> [consumer[0].name for consumer in space.consumers]
    ['conv2']
    """
    channels: int
    producers: list = dataclasses.field(default_factory=list)
    followers: list = dataclasses.field(default_factory=list)
    consumers: list = dataclasses.field(default_factory=list)
    follower_offsets: list = dataclasses.field(default_factory=list)
    follower_repeats: list = dataclasses.field(default_factory=list)
    passengers: list = dataclasses.field(default_factory=list)
    passenger_followers: list = dataclasses.field(default_factory=list)
    reshapes: list = dataclasses.field(default_factory=list)
    frozen: str = ""   # why the space cannot be pruned ("" = it can)
    gate: str = ""

    def iter_followers(self):
        """``(layer, offset)`` of every per-channel layer on the path."""
        return zip(self.followers, self.follower_offsets)

    def positions(self, offset=0, repeat=1):
        """Where each channel of the space sits in a tensor carrying it at
        ``offset``, repeated ``repeat`` times: one row per channel.

        >>> ChannelSpace(3).positions(offset=4, repeat=2).tolist()
        [[4, 5], [6, 7], [8, 9]]
        """
        return offset + repeated_positions(np.arange(self.channels), repeat)

    def iter_follower_positions(self):
        """``(layer, inputs, outputs)`` of every per-channel layer on the
        path: each channel's positions in the layer's input and in its
        output and per-channel weights (a depthwise convolution's
        ``depth_multiplier`` repeats them)."""
        for layer, offset, repeat in zip(self.followers,
                                         self.follower_offsets,
                                         self.follower_repeats):
            inputs = self.positions(offset, repeat)
            yield layer, inputs, _output_positions(layer, inputs)

    @property
    def prunable(self) -> bool:
        return not self.frozen and bool(self.producers)

    def names(self):
        return [l.name for l in self.producers]

    def absorb(self, other, as_passengers=False):
        """Merges ``other`` into this space."""
        if as_passengers:
            self.passengers += other.producers + other.passengers
            self.passenger_followers += other.followers + \
                other.passenger_followers
        else:
            self.producers += other.producers
            self.followers += other.followers
            self.follower_offsets += other.follower_offsets
            self.follower_repeats += other.follower_repeats
            self.passengers += other.passengers
            self.passenger_followers += other.passenger_followers
            self.gate = self.gate or other.gate
        self.consumers += other.consumers
        self.reshapes += other.reshapes
        self.frozen = self.frozen or other.frozen


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", str(act))


def _channels_not_last(op, rank):
    """Why ``op`` (input of rank ``rank`` or None) does not keep channels on
    the last axis (or "")."""
    if getattr(op, "data_format", None) == "channels_first":
        return f"{op.name} is channels_first (channel pruning rewires " \
            "channels_last layers)"
    if isinstance(op, L.BatchNormalization):
        axes = op.axis if isinstance(op.axis, (list, tuple)) else [op.axis]
        last = {-1} | ({rank - 1} if rank else set())
        if len(axes) != 1 or axes[0] not in last:
            return f"{op.name} (BatchNormalization) normalises along axis " \
                f"{op.axis}, not the channel axis"
    return ""


def _maps_zero_to_zero(node) -> bool:
    """True if the element-wise ``node`` maps an all-zero input to zero
    (``x * 0.5``, ``relu(x)``) and False for ``x + 3.0``, ``sigmoid``."""
    op = node.op
    if isinstance(op, L.Rescaling):
        return np.all(np.asarray(op.offset) == 0)
    if isinstance(op, L.Activation):
        return _activation_name(op) in ZERO_PRESERVING_ACTIVATIONS
    if isinstance(op, PASS_THROUGH):
        return True
    zero = np.zeros((1, 1), np.float32)
    args = [zero if a is graph_lib.TENSOR else a for a in node.call_args]
    try:
        value = op(*args)
        return bool(np.all(keras.ops.convert_to_numpy(value) == 0))
    except Exception:   # an op that needs other arguments: stay safe
        return False


class _Analysis:
    """One pass over the node graph, building channel spaces."""

    def __init__(self, model):
        self.model = model
        self.nodes = graph_lib.node_graph(model)
        self.fan_out = {k: len(v) for k, v in
                        graph_lib.consumers(self.nodes).items()}
        self.spaces = []
        self.parent = {}
        self.space_of = {}     # node key -> space id (or None)
        self.flattened = {}    # node key -> space id flattened into features
        # node key -> [(space id or None, channels)] for tensors built by a
        # channel-axis Concatenate (and the per-channel layers after it)
        self.segments = {}
        self.keys_of_space = {}   # space id -> node keys carrying it
        # node key -> how many times each channel of its space repeats
        # (depthwise convolutions with depth_multiplier above 1)
        self.repeats = {}

    # -- union-find ----------------------------------------------------
    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def new_space(self, channels):
        self.spaces.append(ChannelSpace(channels))
        sid = len(self.spaces) - 1
        self.parent[sid] = sid
        return sid

    def space(self, sid):
        return self.spaces[self.find(sid)]

    def merge(self, a, b, as_passengers=False):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        self.parent[rb] = ra
        self.spaces[ra].absorb(self.spaces[rb], as_passengers)
        return ra

    def freeze(self, sid, why):
        if sid is not None and not self.space(sid).frozen:
            self.space(sid).frozen = why

    def mark_gate(self, sid, why):
        if sid is not None and not self.space(sid).gate:
            self.space(sid).gate = why

    def freeze_segments(self, keys, why):
        for k in keys:
            for sid, _ in self.segments.get(k, ()):
                self.freeze(sid, why)

    def set_output(self, key, sid, repeat=1):
        self.space_of[key] = sid
        self.repeats[key] = repeat
        if sid is not None:
            self.keys_of_space.setdefault(sid, []).append(key)

    def repeat(self, key):
        """How many times the tensor ``key`` repeats its space's
        channels."""
        return self.repeats.get(key, 1)

    def segments_of(self, key, shape):
        if key in self.segments:
            return self.segments[key]
        sid = self.space_of.get(key)
        if sid is not None and self.repeat(key) == 1:
            return [(sid, self.space(sid).channels)]
        return [(None, int(shape[-1]))]

    def freeze_inputs(self, node, why):
        for p in node.parents:
            self.freeze(self.space_of.get(p), why)
            self.freeze(self.flattened.get(p), why)
        self.freeze_segments(node.parents, why)
        self.set_output(node.key, None)

    # -- the walk --------------------------------------------------------
    def run(self):
        for node in self.nodes:
            self.visit(node)
        for key in graph_lib.output_keys(self.model):
            why = f"{key.split('#')[0]} is a model output"
            self.freeze(self.space_of.get(key), why)
            self.freeze(self.flattened.get(key), why)
            self.freeze_segments([key], why)
        roots = sorted({self.find(i) for i in range(len(self.spaces))})
        spaces = [self.spaces[r] for r in roots]
        for s in spaces:
            if s.gate and not s.frozen:
                s.frozen = s.gate
        return spaces

    def visit(self, node):
        op, key = node.op, node.key
        name = getattr(op, "name", key)
        kind = type(op).__name__
        if isinstance(op, L.InputLayer) or not node.parents:
            self.set_output(key, None)
            return
        if node.calls > 1:
            self.freeze_inputs(node, f"{name} is shared (called "
                               f"{node.calls} times)")
            return
        if isinstance(op, keras.Model):
            self.freeze_inputs(node, f"nested model {name} is analysed as "
                               "one layer (flatten_nested(model) opens it)")
            return
        shapes = node.parent_shapes
        not_last = _channels_not_last(
            op, len(shapes[0]) if shapes and shapes[0] else None)
        if not_last:
            self.freeze_inputs(node, not_last)
            if isinstance(op, PRODUCERS):   # its own channels stay too
                sid = self.new_space(int(output_kernel(op).shape[-1]))
                self.space(sid).producers.append(op)
                self.freeze(sid, not_last)
                self.set_output(key, sid)
            return
        if _activation_name(op) in ACROSS_CHANNEL_ACTIVATIONS and \
                not isinstance(op, PRODUCERS):
            self.freeze_inputs(node, f"{name} ({kind}) mixes channels "
                               f"({_activation_name(op)} across them)")
            return
        ins = [self.space_of.get(p) for p in node.parents]
        flat_ins = [self.flattened.get(p) for p in node.parents]
        src = ins[0]
        repeat = self.repeat(node.parents[0])
        concat_in = [p for p in node.parents if p in self.segments]
        if concat_in and not isinstance(op, L.Concatenate):
            if self.concat_consumer(node, concat_in):
                return
        elif isinstance(op, PRODUCERS) and getattr(op, "groups", 1) == 1:
            if flat_ins[0] is not None and isinstance(op, L.Dense):
                self.space(flat_ins[0]).consumers.append(
                    (op, "flatten_dense", 0, repeat))
            elif src is not None:
                self.space(src).consumers.append((op, "input", 0, repeat))
        elif isinstance(op, PRODUCERS):
            self.freeze_inputs(node, f"{name} is a grouped convolution")
            return
        if isinstance(op, PRODUCERS):
            sid = self.new_space(int(output_kernel(op).shape[-1]))
            self.space(sid).producers.append(op)
            if _activation_name(op) in ACROSS_CHANNEL_ACTIVATIONS:
                self.freeze(sid, f"{name} activation {_activation_name(op)} "
                            "mixes its channels")
            elif _activation_name(op) not in ZERO_PRESERVING_ACTIVATIONS:
                self.mark_gate(sid, f"{name} activation "
                               f"{_activation_name(op)} maps 0 to non-zero")
            self.set_output(key, sid)
        elif concat_in and not isinstance(op, L.Concatenate):
            pass    # handled by concat_consumer
        elif isinstance(op, FOLLOWERS):
            if src is not None:
                self.space(src).followers.append(op)
                self.space(src).follower_offsets.append(0)
                self.space(src).follower_repeats.append(repeat)
                if _activation_name(op) not in ZERO_PRESERVING_ACTIVATIONS:
                    self.mark_gate(src, f"{name} activation maps 0 to "
                                   "non-zero")
            self.set_output(key, src, repeat * depth_multiplier(op))
        elif isinstance(op, (L.Add, L.Multiply, L.Average, L.Subtract,
                             L.Maximum, L.Minimum)) or (
                kind in ("Add", "Subtract", "Multiply")
                and len(node.parents) > 1 and not node.constants):
            self.merge_node(node, ins)
        elif isinstance(op, L.Concatenate):
            self.concatenate(node, ins)
        elif isinstance(op, L.Flatten):
            self.set_output(key, None, repeat)
            self.flattened[key] = src
            if flat_ins[0] is not None:
                self.freeze(flat_ins[0], f"{name} flattens twice")
        elif isinstance(op, L.Reshape):
            shapes = node.parent_shapes[0]
            same = (shapes is not None and src is not None and
                    op.target_shape[-1] == shapes[-1])
            if not same:
                self.freeze_inputs(node, f"{name} (Reshape) changes the "
                                   "channel axis")
                return
            if repeat > 1:
                self.freeze_inputs(node, f"{name} (Reshape) reads channels "
                                   "repeated by a depth_multiplier")
                return
            self.space(src).reshapes.append(op)
            self.set_output(key, src)
        elif isinstance(op, ACROSS_CHANNELS):
            self.freeze_inputs(node, f"{name} ({kind}) mixes channels "
                               "(normalises across them)")
            return
        elif (isinstance(op, PASS_THROUGH + (L.Activation, L.Rescaling))
              or (not isinstance(op, keras.layers.Layer)
                  and kind in ELEMENTWISE_OPS)) and len(node.parents) == 1:
            if not _maps_zero_to_zero(node):
                self.mark_gate(src, f"{name} ({kind}) maps 0 to non-zero")
                self.mark_gate(flat_ins[0], f"{name} ({kind}) maps 0 to "
                               "non-zero")
            self.set_output(key, src, repeat)
            if flat_ins[0] is not None:     # still the flattened features
                self.flattened[key] = flat_ins[0]
                return
        else:
            self.freeze_inputs(node, f"{name} ({kind}) cannot be rewired")
            return
        # a Flatten's output used by something other than Dense
        if not isinstance(op, (L.Dense, L.Flatten)):
            for s in flat_ins:
                self.freeze(s, f"{name} consumes a flattened tensor")

    def merge_node(self, node, ins):
        """Add/Multiply/...: inputs share channels."""
        name = getattr(node.op, "name", node.key)
        known = [s for s in ins if s is not None]
        widths = {int(s[-1]) for s in node.parent_shapes if s}
        repeats = {self.repeat(p) for p in node.parents}
        if len(known) != len(ins) or len(widths) > 1 or len(repeats) > 1:
            for s in known:
                self.freeze(s, f"{name} combines tensors of other channels")
            self.set_output(node.key, None)
            return
        repeat = repeats.pop()
        multiply = isinstance(node.op, L.Multiply) or \
            type(node.op).__name__ == "Multiply"
        if multiply:
            carriers = [s for s in known if not self.space(s).gate]
            gates = [s for s in known if self.space(s).gate]
            if carriers and gates:
                root = carriers[0]
                for s in carriers[1:]:
                    root = self.merge(root, s)
                for g in gates:
                    why = self.gate_blocker(g, node, repeat)
                    if why:
                        self.freeze(root, why)
                        root = self.merge(root, g)
                    else:
                        root = self.merge(root, g, as_passengers=True)
                self.set_output(node.key, root, repeat)
                return
        # Add, Subtract, Average, Maximum, Minimum, Multiply of carriers:
        # a channel that is zero in every input is zero in the output
        root = known[0]
        for s in known[1:]:
            root = self.merge(root, s)
        self.set_output(node.key, root, repeat)

    def gate_blocker(self, gate_sid, node, repeat):
        """Why the gate space cannot ride along (or "")."""
        space = self.space(gate_sid)
        if repeat > 1:
            return (f"{node.op.name} gates channels repeated by a "
                    "depth_multiplier")
        if space.consumers:
            return (f"gate of {node.op.name} also feeds "
                    f"{space.consumers[0][0].name}")
        root = self.find(gate_sid)
        for sid, keys in self.keys_of_space.items():
            if self.find(sid) != root:
                continue
            for k in keys:
                if self.fan_out.get(k, 0) > 1:
                    return (f"gate of {node.op.name} is read by several "
                            f"layers at {k}")
        return ""

    def concatenate(self, node, ins):
        op = node.op
        shapes = node.parent_shapes
        rank = len(shapes[0]) if shapes and shapes[0] else 0
        if op.axis not in (-1, rank - 1):
            for sid in ins:
                self.freeze(sid, f"{op.name} concatenates along axis "
                            f"{op.axis}, not channels")
            self.freeze_segments(node.parents, f"{op.name} concatenates "
                                 "along another axis")
            self.set_output(node.key, None)
            return
        for p in node.parents:
            if self.repeat(p) > 1:
                self.freeze(self.space_of.get(p), f"{op.name} concatenates "
                            "channels repeated by a depth_multiplier")
        self.segments[node.key] = [
            seg for p, shape in zip(node.parents, shapes)
            for seg in self.segments_of(p, shape)]
        for sid, _ in self.segments[node.key]:
            if sid is not None and self.space(sid).gate:
                self.freeze(sid, self.space(sid).gate)
        self.set_output(node.key, None)

    def concat_consumer(self, node, concat_in):
        """A node reading a concatenated tensor: consumers and per-channel
        followers see each segment at its offset; anything else freezes
        the segments. Returns True when the node is fully handled."""
        op, key = node.op, node.key
        name = getattr(op, "name", key)
        segs = self.segments[concat_in[0]]
        offsets, at = [], 0
        for _, channels in segs:
            offsets.append(at)
            at += channels
        self.set_output(key, None)
        if len(node.parents) > 1:
            # the concatenation and every other input line up channel by
            # channel: all of them keep their channels
            self.freeze_inputs(node, f"{name} ({type(op).__name__}) "
                               "combines a concatenation with other "
                               "tensors")
            return True
        if isinstance(op, PRODUCERS) and getattr(op, "groups", 1) == 1:
            for (sid, _), off in zip(segs, offsets):
                if sid is not None:
                    self.space(sid).consumers.append((op, "input", off, 1))
            return False        # the caller still creates its output space
        zero_safe = _activation_name(op) in ZERO_PRESERVING_ACTIVATIONS
        if isinstance(op, FOLLOWERS) and zero_safe and not (
                isinstance(op, (L.DepthwiseConv1D, L.DepthwiseConv2D))
                and op.depth_multiplier != 1):
            for (sid, _), off in zip(segs, offsets):
                if sid is not None:
                    self.space(sid).followers.append(op)
                    self.space(sid).follower_offsets.append(off)
                    self.space(sid).follower_repeats.append(1)
            self.segments[key] = segs
            return True
        elementwise = isinstance(op, PASS_THROUGH + (L.Activation,)) or (
            not isinstance(op, keras.layers.Layer)
            and type(op).__name__ in ELEMENTWISE_OPS)
        if elementwise and _maps_zero_to_zero(node):
            self.segments[key] = segs
            return True
        self.freeze_segments(concat_in, f"{name} ({type(op).__name__}) "
                             "cannot be rewired after a concatenation")
        return True


def channel_spaces(model):
    """Analyses a Sequential or Functional ``model``; returns its list of
    :class:`ChannelSpace`.

    Nested models and shared layers are kept whole: the channels entering
    them are frozen, with the reason in ``ChannelSpace.frozen``.

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
    >>> for space in channel_spaces(model):
    ...     print([layer.name for layer in space.producers], space.channels,
    ...           space.prunable, space.frozen or "-")
    ['conv1'] 8 True -
    ['conv2'] 4 True -
    ['logits'] 3 False logits is a model output
    """
    if not isinstance(model, keras.Model) or not is_container(model):
        raise InputError("channel pruning analyses Sequential and Functional "
                         f"models; {getattr(model, 'name', model)!r} is "
                         "subclassed (or not a model): rebuild it as "
                         "Functional first")
    require_built(model)
    return _Analysis(model).run()


def require_built(model):
    """An ``InputError`` for a Sequential model without an Input that
    nothing has built yet (``fit`` builds it only at its first step, after
    the callbacks' ``on_train_begin``)."""
    if not isinstance(model, keras.Sequential):
        return
    try:
        inputs = model.inputs if model.built else None
    except AttributeError:   # Keras: "has no defined inputs yet"
        inputs = None
    if not inputs:
        raise InputError(f"model {model.name} is not built; give it a "
                         "keras.Input(shape) or call it on data first")


def frozen_reasons(spaces) -> dict:
    """Reason -> number of spaces frozen for it (ignoring layer names
    after the first word), for reports.

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
    >>> frozen_reasons(channel_spaces(model))
    {'logits is a model output': 1}
    """
    counts = {}
    for s in spaces:
        if s.frozen:
            counts[s.frozen] = counts.get(s.frozen, 0) + 1
    return counts
