"""Rebuilds a model with QAT layers (see :mod:`tfcompress.quantize.layers`)."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers as L

from tfcompress import compat
from tfcompress.utils.graph import (SEQUENTIAL_INPUT as _SEQUENTIAL_INPUT,
                                    layer_graph)
from tfcompress.quantize import bit_widths, zoo_layers
from tfcompress.quantize.affine import (AFFINE_LAYERS,
                                        QuantizeChannelAffine, layer_affine)
from tfcompress.quantize.float_layers import no_int8_kernel
from tfcompress.quantize.graph import ConstantArithmetic, functional_graph
from tfcompress.quantize.layers import (KEEPS_SCALE, QuantizeAffine,
                                        QuantizeFused, QuantizeOutput)
from tfcompress.quantize.qat_base import wrapper_name
from tfcompress.quantize.pooling import (AVERAGE_POOLING,
                                         QuantizeAveragePooling,
                                         QuantizeResizing, rounds_average,
                                         rounds_resize)
from tfcompress.quantize.shared_ranges import (feeds_concat_only as
                                               _feeds_concat_only,
                                               shared_range_groups)
from tfcompress.utils.layer_map import (copy_layer, input_like,
                                         is_container, iter_layers)
from tfcompress.errors import InputError

FUSABLE = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.Conv2DTranspose,
           L.SeparableConv1D, L.SeparableConv2D, L.Dense)
OUTPUT_QUANTIZED = (L.Add, L.Subtract, L.Multiply, L.Concatenate,
                    L.Average, L.Maximum, L.Minimum,
                    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D,
                    L.ReLU, L.Activation, L.Softmax, L.LeakyReLU,
                    ConstantArithmetic)
# TFLite fuses a following ReLU/ReLU6 into these ops: one output range.
FUSES_ACTIVATION = (L.Add, L.Subtract, L.Multiply, ConstantArithmetic)
# TFLite's int8 AVERAGE_POOL_2D keeps its input scale: no own range.
PASS_THROUGH = KEEPS_SCALE
FUSABLE_ACTIVATIONS = ("relu", "relu6")
NOT_ANNOTATED = "not annotated: kept float (quantize_apply)"


def _passes_values_on(layer) -> bool:
    """Whether ``layer`` only moves, copies or drops its input's values
    (TFLite's PAD, RESHAPE, MAX_POOL_2D, ... keep their input's scale),
    so that left unannotated it follows a quantized tensor it reads. A
    pooling to a mean or a bilinear upsampling computes new values."""
    if not isinstance(layer, PASS_THROUGH) or isinstance(
            layer, (L.AveragePooling1D, L.AveragePooling2D)):
        return False
    return getattr(layer, "interpolation", "nearest") == "nearest"


class UnsupportedLayerError(InputError, RuntimeError):
    """A layer tfcompress does not know how to quantize: an
    :class:`InputError`, and the ``RuntimeError`` tfmot's ``quantize_model``
    raises for a layer it has no config for, so code catching either works.
    """


def _affine_channels(layer):
    """The channels of an affine layer's output: from its output, or for
    a layer standing for a keras.ops call (never called itself), from its
    per-channel constants."""
    if getattr(layer, "_tfcompress_from_op", False):
        return max(np.asarray(layer.scale).size,
                   np.asarray(layer.offset).size)
    return layer.output.shape[-1]


def _unsupported(layer):
    return UnsupportedLayerError(
        f"layer {layer.name!r} ({type(layer).__name__}) has no quantize "
        "config. Annotate it with tfcompress.quantize.quantize_annotate_"
        "layer(layer, config) using OutputQuantizeConfig() (quantize its "
        "output) or NoOpQuantizeConfig() (keep it float), or exclude it.")


def _fusable_activation(layer):
    if isinstance(layer, L.ReLU):
        if layer.negative_slope or layer.threshold:
            return None
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else None
    if isinstance(layer, L.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name if name in FUSABLE_ACTIVATIONS else None
    return None


def _folds_constant(layer):
    return isinstance(layer, ConstantArithmetic) and (
        layer.op in ("add", "multiply") or layer.tensor_first)


def _compose(layer, scale, shift):
    """``(scale, shift)`` of ``layer(y * scale + shift)``."""
    c = layer.constant
    if layer.op == "add":
        return scale, shift + c
    if layer.op == "subtract":
        return scale, shift - c
    if layer.op == "multiply":
        return scale * c, shift * c
    return scale / c, shift / c


def is_annotated(layer) -> bool:
    """True if ``layer`` carries a ``quantize_annotate_layer`` mark."""
    return getattr(layer, "_tfcompress_quantize_config", None) is not None


def quantize_graph(model, scheme, report, layer_bits=None,
                   annotated_only=False):
    """Returns the QAT version of ``model``; fills ``report`` per layer.

    ``layer_bits``: ``{layer name: weight bits}`` overriding
    ``scheme.weight_bits`` (names checked by the caller).
    ``annotated_only``: quantize only the annotated layers and keep the
    others float, as tfmot's ``quantize_apply`` does; a quantized layer
    fed by a float one gets a quantizer on that input. A keras.ops call
    (``x + 3.0``), which cannot carry an annotation, is quantized unless
    it reads a float layer's output. Otherwise a layer without an
    annotation gets the default rule (``quantize_model``).
    """
    if not is_container(model):
        raise InputError(f"{model.name} is a subclassed model; tfcompress "
                         "can quantize Sequential and Functional models")
    return _QatGraph(model, scheme, report, layer_bits or {},
                     annotated_only).build()


class _QatGraph:
    """One rebuild of a Sequential or Functional model with QAT layers.

    Walks the layer graph in order; each layer either joins a fused op
    (a convolution's BatchNormalization, constant arithmetic and ReLU),
    joins a pending input affine (Rescaling, Normalization, ZeroPadding2D
    before the first convolution), or is rebuilt by the rule for its
    kind. ``tensors`` maps a layer name to its rebuilt output.
    """

    def __init__(self, model, scheme, report, layer_bits, annotated_only):
        self.model, self.scheme, self.report = model, scheme, report
        self.layer_bits, self.annotated_only = layer_bits, annotated_only
        self.kw = dict(activation_bits=scheme.activation_bits,
                       ema_decay=scheme.ema_decay,
                       activation_percentile=scheme.activation_percentile)
        sequential = isinstance(model, keras.Sequential)
        self.graph = layer_graph(model) if sequential \
            else functional_graph(model)
        self.consumers, self.parents_of = {}, {}
        for layer, parents in self.graph:
            self.parents_of[layer.name] = parents
            for p in parents:
                self.consumers.setdefault(p, []).append(layer)
        self.is_quantized = self._which_quantized()
        self.outputs = ({model.layers[-1].name} if sequential else
                        {compat.keras_history(t).operation.name
                         for t in model.outputs})
        # tensors TFLite gives one scale (concatenation chains): one
        # range; not where some layers stay float (each quantized tensor
        # keeps its own)
        partly_float = not all(self.quantized(layer)
                               for layer, _ in self.graph
                               if not isinstance(layer, L.InputLayer))
        self.shared = ({} if sequential or not getattr(
            scheme, "share_concat_ranges", True) or partly_float
            else shared_range_groups(self.graph, self.outputs))
        self.shared_quantizers = {}
        self.tensors, self.consumed = {}, {}
        # producers whose kernel carries a scaled sum's scale
        self.prescaled = set()
        # Rescaling/Normalization outputs not computed yet: name ->
        # (source tensor name, scale, offset, passed through zero
        # padding, layer names)
        self.pending = {}
        # tensors left float (inputs of a partly quantized model, outputs
        # of float layers): name -> name of the quantizer a quantized
        # reader uses
        self.float_tensors, self.float_quantized = {}, {}
        self.new_inputs = []

    # -- which layers are quantized, and who reads what ------------------

    def _which_quantized(self):
        is_quantized = {}   # layer name -> True/False; inputs: None
        for layer, parents in self.graph:
            if isinstance(layer, L.InputLayer) or not parents:
                is_quantized[layer.name] = None
            elif not self.annotated_only or is_annotated(layer) or (
                    is_container(layer) and any(
                        is_annotated(inner) for inner in iter_layers(layer))):
                is_quantized[layer.name] = True
            elif _passes_values_on(layer):
                # unannotated padding, reshaping, max pooling, dropout: the
                # int8 values it reads, passed on at their scale
                is_quantized[layer.name] = all(
                    is_quantized.get(p, None) is True for p in parents)
            else:
                is_quantized[layer.name] = getattr(
                    layer, "_tfcompress_from_op", False) and all(
                    is_quantized.get(p, None) is not False for p in parents)
        return is_quantized

    def quantized(self, layer):
        return self.is_quantized.get(layer.name) is not False

    def sole_consumer(self, name):
        """The one layer reading tensor ``name``, if QAT quantizes it
        (only then can it fuse with the producer)."""
        cs = self.consumers.get(name, [])
        return cs[0] if len(cs) == 1 and name not in self.outputs and \
            self.quantized(cs[0]) else None

    def feeds_concat_only(self, name):
        """TFLite gives a Concatenate's inputs its own scale: their ranges
        come from the concatenation's quantizer, not their own."""
        return _feeds_concat_only(name, self.consumers, self.outputs) and \
            all(self.quantized(c) for c in self.consumers[name])

    def fused_by_activation(self, name):
        """True if TFLite fuses the ReLU/ReLU6 reading tensor ``name``
        into the op making it, which then rounds once, at the
        activation's range: the activation is the tensor's one reader,
        or every reader is the same activation (the converter merges
        them into one op)."""
        nxt = self.sole_consumer(name)
        if nxt is not None:
            return _fusable_activation(nxt) is not None
        return self.read_by_one_activation(name)

    def read_by_one_activation(self, name):
        """True if two or more layers read tensor ``name`` and all are the
        same ReLU or ReLU6, each with a range of its own (equal ranges:
        the same values move them). The converter merges them into one
        op and fuses it into the op making ``name`` (NASNet's stem
        convolution and its adjusting batch norms, read by the ReLU
        opening each branch): the tensor gets no range of its own."""
        cs = self.consumers.get(name, [])
        kinds = {_fusable_activation(c) for c in cs}
        return len(cs) > 1 and name not in self.outputs and \
            len(kinds) == 1 and None not in kinds and all(
                self.quantized(c) and c.name not in self.shared and
                getattr(c, "_tfcompress_quantize_config", None) in
                (None, "default") and not self.feeds_concat_only(c.name)
                for c in cs)

    # -- tensors ---------------------------------------------------------

    def tensor(self, name):
        return self.emit_affine(name) if name in self.pending \
            else self.tensors[name]

    def qtensor(self, name):
        """Tensor ``name`` as a quantized layer reads it."""
        if name not in self.float_tensors:
            return self.tensor(name)
        if name not in self.float_quantized:
            self.float_quantized[name] = QuantizeOutput(
                None, name=self.float_tensors[name],
                **self.kw)(self.tensors[name])
            self.report.append({
                "layer": name, "type": "float tensor",
                "quantized": "input range of the quantized layers reading "
                             "it", "wrapper": self.float_tensors[name]})
        return self.float_quantized[name]

    def emit_float(self, name, layer, parents):
        """``layer`` computed in float on its parents' tensors as they
        are; the quantized layers reading its output get a range for it."""
        x = [self.tensor(p) for p in parents]
        self.tensors[name] = layer(x[0] if len(x) == 1 else x)
        self.float_tensors[name] = f"quant_{name}_output"

    def add_input(self, name, inp, quantizer_name):
        self.new_inputs.append(inp)
        self.tensors[name] = inp
        if not keras.backend.is_float_dtype(inp.dtype):
            # integers (token ids) are read as they are: 256 levels would
            # merge ids, and the converter keeps an integer input as is
            self.report.append({"layer": name, "type": "Input",
                                "quantized": f"no ({inp.dtype} input)"})
            return
        if self.annotated_only:   # quantized where a quantized layer reads it
            self.float_tensors[name] = quantizer_name
            return
        self.tensors[name] = QuantizeOutput(None, name=quantizer_name,
                                            **self.kw)(inp)
        self.report.append({"layer": name, "type": "Input",
                            "quantized": "input range"})

    def share_range(self, member, out):
        root = self.shared[member]
        if root not in self.shared_quantizers:
            self.shared_quantizers[root] = QuantizeOutput(
                None, name=f"quant_range_{root}", **self.kw)
        # only the last concatenation, whose values hold all the others',
        # moves the range in training
        return self.shared_quantizers[root](out, update_range=member == root)

    def emit(self, name, quantizer, x, shares):
        """``name``'s output: ``quantizer`` on ``x``, then the range it
        shares with a concatenation, if any."""
        self.tensors[name] = quantizer(x)
        if shares:
            self.tensors[name] = self.share_range(name, self.tensors[name])

    def shared_note(self, member):
        return {"shared_range": f"quant_range_{self.shared[member]}"}

    # -- input affines (Rescaling, Normalization) -------------------------

    def emit_affine(self, name):
        src, scale, offset, _, names = self.pending.pop(name)
        if (scale == scale[0]).all() and (offset == offset[0]).all():
            return self.emit_scalar_affine(name, src, float(scale[0]),
                                           float(offset[0]), names)
        q = QuantizeChannelAffine(scale, offset, source=names,
                                  weight_bits=self.scheme.weight_bits,
                                  name=wrapper_name(name), **self.kw)
        self.tensors[name] = q(self.qtensor(src))
        self.report.append({"layer": ", ".join(names),
                            "type": "input affine",
                            "quantized": "int8 per-channel affine (1x1 "
                                         "depthwise)", "wrapper": q.name})
        return self.tensors[name]

    def emit_scalar_affine(self, name, src, scale, offset, names):
        # one scale and offset for every channel (Rescaling(1 / 127.5, -1)):
        # an int8 MUL and ADD by constants, as TFLite writes the float
        # layer, which XNNPACK runs faster than a 1x1 depthwise on 3
        # channels
        x, ops = self.qtensor(src), []
        for op, constant in (("multiply", scale), ("add", offset)):
            if constant != (1.0 if op == "multiply" else 0.0):
                suffix = "scale" if op == "multiply" else "offset"
                x = QuantizeOutput(ConstantArithmetic(
                    op, constant, name=f"{name}_{suffix}"), **self.kw)(x)
                ops.append("MUL" if op == "multiply" else "ADD")
        self.tensors[name] = x
        self.report.append({
            "layer": ", ".join(names), "type": "input affine",
            "quantized": f"int8 {' and '.join(ops) or 'identity'} by "
                         "constants"})
        return x

    def defer_affine(self, layer, parent):
        """True if ``layer`` (an affine or a zero padding) joins a pending
        input affine instead of being computed now."""
        name, pending = layer.name, self.pending
        if name in self.outputs:
            return False
        affine = layer_affine(layer, _affine_channels(layer)) \
            if isinstance(layer, AFFINE_LAYERS) else None
        if affine is not None:
            if parent in pending and self.sole_consumer(parent) is layer:
                src, s0, o0, padded, names = pending.pop(parent)
                pending[name] = (src, s0 * affine[0],
                                 o0 * affine[0] + affine[1], padded,
                                 names + [name])
            else:
                pending[name] = (parent, affine[0], affine[1], False, [name])
            return True
        if isinstance(layer, L.ZeroPadding2D) and parent in pending and \
                not pending[parent][2].any() and \
                self.sole_consumer(parent) is layer:
            # zero padding commutes with a pure scale only
            src, s0, o0, padded, names = pending.pop(parent)
            self.tensors[name + "/unscaled"] = copy_layer(layer)(
                self.qtensor(src))
            pending[name] = (name + "/unscaled", s0, o0, True,
                             names + [name])
            self.report.append({"layer": name, "type": "ZeroPadding2D",
                                "quantized": "pass-through (keeps scale)"})
            return True
        return False

    def foldable_affine(self, layer, parents):
        """A pending affine whose sole consumer is this Conv2D, popped; an
        offset is exact only without zero padding between (none, or
        'valid')."""
        if len(parents) != 1 or parents[0] not in self.pending or \
                type(layer) is not L.Conv2D or layer.groups != 1 or \
                layer.data_format != "channels_last" or \
                self.sole_consumer(parents[0]) is not layer:
            return None
        _, scale, offset, padded, _ = self.pending[parents[0]]
        if offset.any() and (padded or layer.padding != "valid"):
            return None
        return self.pending.pop(parents[0])

    # -- the walk ----------------------------------------------------------

    def build(self):
        for layer, parents in self.graph:
            self.visit(layer, parents)
        model, ins = self.model, self.new_inputs
        if isinstance(model, keras.Sequential):
            return keras.Model(ins[0], self.tensor(model.layers[-1].name),
                               name=f"{model.name}_qat")
        # the model's own input and output structure, in its order (a dict
        # keyed by output name stays a dict, so compile(loss={...}) still
        # fits); a list of one is one tensor
        by_name = {t.name: t for t in ins}

        def producer(t):
            return compat.keras_history(t).operation.name

        def same_structure(structure, tensor_of):
            if not isinstance(structure, dict):
                structure = keras.tree.flatten(structure)
                if len(structure) == 1:
                    return tensor_of(structure[0])
            return keras.tree.map_structure(tensor_of, structure)
        return keras.Model(
            same_structure(model.input, lambda t: by_name[producer(t)]),
            same_structure(model.output, lambda t: self.tensor(producer(t))),
            name=f"{model.name}_qat")

    def visit(self, layer, parents):
        name = layer.name
        if name in self.consumed:
            self.tensors[name] = self.tensors[self.consumed[name]]
            return
        if isinstance(layer, L.InputLayer) or not parents:
            source = (layer.output if isinstance(layer, L.InputLayer)
                      else self.model.inputs[0])
            self.add_input(name, input_like(source, name),
                           f"quant_input_{name}")
            return
        if parents == [_SEQUENTIAL_INPUT] and \
                _SEQUENTIAL_INPUT not in self.tensors:
            self.add_input(_SEQUENTIAL_INPUT,
                           input_like(self.model.inputs[0], "input"),
                           "quant_input")
        if not self.quantized(layer):
            kept = copy_layer(layer)
            kept._tfcompress_kept_float = NOT_ANNOTATED   # for summary()
            self.emit_float(name, kept, parents)
            self.report.append({"layer": name, "type": type(layer).__name__,
                                "quantized": "FLOAT (not annotated)"})
            return
        config = getattr(layer, "_tfcompress_quantize_config", None)
        bits = self.layer_bits.get(name, self.scheme.weight_bits)
        if getattr(config, "weight_bits", None) is not None and \
                isinstance(layer, FUSABLE):
            # QuantizeConfig(weight_bits=..): the default rule, other bits
            bits = self.layer_bits.get(name, config.weight_bits)
            config = "default"
        by_rule = config in (None, "default")
        if by_rule and len(parents) == 1 and \
                self.defer_affine(layer, parents[0]):
            return
        folded = self.foldable_affine(layer, parents) if by_rule else None
        args = ([self.qtensor(folded[0])] if folded is not None
                else [self.qtensor(p) for p in parents])
        x = args[0] if len(args) == 1 else args
        if not by_rule:
            self.annotated(layer, parents, config, x)
        elif is_container(layer):
            self.tensors[name] = quantize_graph(
                layer, self.scheme, self.report, self.layer_bits,
                self.annotated_only)(x)
        elif isinstance(layer, FUSABLE):
            self.fused(layer, x, bits, folded)
        else:
            self.by_kind(layer, parents, x)

    # -- the rules, one per kind of layer ----------------------------------

    def annotated(self, layer, parents, config, x):
        """A layer annotated with its own QuantizeConfig."""
        name = layer.name
        if config.quantize_output:
            self.tensors[name] = QuantizeOutput(copy_layer(layer),
                                                **self.kw)(x)
        else:
            self.emit_float(name, copy_layer(layer), parents)
        self.report.append({"layer": name, "type": type(layer).__name__,
                            "quantized": config.describe()})

    def fused(self, layer, x, requested_bits, folded_input):
        """A convolution or Dense with what TFLite fuses into its op: a
        BatchNormalization, constant arithmetic, a ReLU/ReLU6."""
        name, scheme = layer.name, self.scheme
        bn = act = None
        nxt = self.sole_consumer(name)
        fused = [name]
        act_inside = getattr(layer.activation, "__name__", "linear")
        if scheme.fold_batchnorm and act_inside == "linear" and \
                isinstance(nxt, L.BatchNormalization) and \
                nxt.axis in (-1, len(layer.output.shape) - 1):
            bn = nxt
            fused.append(bn.name)
            nxt = self.sole_consumer(bn.name)
        # x * c or x + c right after the op: TFLite folds the constant
        # into kernel and bias, so QAT does too
        output_scale, output_shift = 1.0, 0.0
        while act_inside == "linear" and _folds_constant(nxt):
            output_scale, output_shift = _compose(
                nxt, output_scale, output_shift)
            fused.append(nxt.name)
            nxt = self.sole_consumer(nxt.name)
        if act_inside == "linear" and nxt is not None and \
                _fusable_activation(nxt):
            act = _fusable_activation(nxt)
            fused.append(nxt.name)
        # TFLite fuses only ReLU/ReLU6 into the op; any other built-in
        # activation (softmax, sigmoid, tanh, ...) is an op of its own
        # with its own output scale, so it is split off here.
        split_act = act_inside not in ("linear",) + FUSABLE_ACTIVATIONS
        if act_inside == "linear" and act is None and nxt is not None and \
                zoo_layers.is_scaled_sum(nxt) and \
                self.parents_of[nxt.name][1:] == [fused[-1]] and \
                self.parents_of[nxt.name][0] != fused[-1]:
            # InceptionResNetV2: x + conv(..) * scale, with the scale in
            # the kernel (TFLite folds it so)
            output_scale *= float(nxt.scale)
            output_shift *= float(nxt.scale)
            self.prescaled.add(fused[-1])
        core = (copy_layer(layer, activation="linear") if split_act
                else copy_layer(layer))
        bits, bits_note = bit_widths.weight_bits_for(layer, requested_bits)
        shares = fused[-1] in self.shared and not split_act
        # read by several copies of one ReLU, which TFLite fuses into the
        # op: rounded once, by each copy's (equal) range
        merged_act = act_inside == "linear" and act is None and \
            not split_act and self.read_by_one_activation(fused[-1])
        q = QuantizeFused(core, copy_layer(bn) if bn is not None else None,
                          act, weight_bits=bits, weight_bits_note=bits_note,
                          per_channel=scheme.per_channel,
                          preserve_sparsity=scheme.preserve_sparsity,
                          preserve_clusters=getattr(
                              scheme, "preserve_clusters", False),
                          quantize_output=split_act or not (
                              shares or merged_act or
                              self.feeds_concat_only(fused[-1])),
                          input_scale=(None if folded_input is None
                                       else folded_input[1]),
                          input_offset=(None if folded_input is None
                                        else folded_input[2]),
                          output_scale=output_scale,
                          output_shift=output_shift,
                          freeze_bn_delay=getattr(
                              scheme, "freeze_bn_delay", None), **self.kw)
        out = q(x)
        if shares:
            out = self.share_range(fused[-1], out)
        if split_act:
            out = QuantizeOutput(
                L.Activation(act_inside, name=f"{name}_{act_inside}"),
                fixed_range=QuantizeOutput.fixed_range_for(
                    act_inside, scheme.activation_bits),
                quantize_output=not self.feeds_concat_only(name),
                **self.kw)(out)
        for n in fused:
            self.tensors[n] = out
            self.consumed[n] = name
        self.report.append({
            "layer": name, "type": type(layer).__name__,
            "quantized": f"weights int{bits} "
                         f"{'per-channel' if q.per_channel else 'per-tensor'}"
                         f", output int{scheme.activation_bits}"
                         + (f" ({bits_note})" if bits_note else "")
                         + (", activation fused by TFLite (range of the "
                            "activations reading it)" if merged_act else ""),
            "folded": ((folded_input[4] if folded_input else []) +
                       fused[1:]), "wrapper": q.name,
            **(self.shared_note(fused[-1]) if shares else {})})

    def by_kind(self, layer, parents, x):
        """Every other layer: the first rule that matches its kind."""
        for rule in (self.batchnorm, self.identity, self.scaled_sum,
                     self.output_quantized, self.rounded_to_input_scale,
                     self.pass_through, self.kept_float):
            if rule(layer, parents, x):
                return
        raise _unsupported(layer)

    def batchnorm(self, layer, parents, x):
        if not isinstance(layer, L.BatchNormalization):
            return False
        name = layer.name
        fuses = self.fused_by_activation(name)
        shares = name in self.shared and not fuses
        q = QuantizeAffine(copy_layer(layer),
                           weight_bits=self.scheme.weight_bits,
                           quantize_output=not (
                               fuses or shares or
                               self.feeds_concat_only(name)), **self.kw)
        self.emit(name, q, x, shares)
        self.report.append({
            "layer": name, "type": "BatchNormalization",
            "quantized": "int8 per-channel affine (1x1 depthwise)" + (
                ", activation fused by TFLite (range of the activation)"
                if fuses else ""), "wrapper": q.name,
            **(self.shared_note(name) if shares else {})})
        return True

    def identity(self, layer, parents, x):
        if not zoo_layers.is_identity(layer):
            return False
        self.tensors[layer.name] = x
        self.report.append({"layer": layer.name,
                            "type": type(layer).__name__,
                            "quantized": "identity at inference (removed)"})
        return True

    def scaled_sum(self, layer, parents, x):
        if not zoo_layers.is_scaled_sum(layer):
            return False
        name = layer.name
        folded = parents[1] in self.prescaled
        if not folded:   # the scale cannot fold: a MUL of its own
            x = [x[0], QuantizeOutput(ConstantArithmetic(
                "multiply", layer.scale, name=f"{name}_scale"),
                **self.kw)(x[1])]
        self.tensors[name] = QuantizeOutput(
            L.Add(name=name), quantize_output=not (
                self.fused_by_activation(name) or
                self.feeds_concat_only(name)), **self.kw)(x)
        self.report.append({"layer": name, "type": type(layer).__name__,
                            "quantized": f"ADD, scale folded into "
                                         f"{parents[1]}" if folded
                            else "MUL and ADD", "wrapper": wrapper_name(name)})
        return True

    def output_quantized(self, layer, parents, x):
        if not isinstance(layer, OUTPUT_QUANTIZED):
            return False
        name, bits = layer.name, self.scheme.activation_bits
        act = getattr(getattr(layer, "activation", None), "__name__", "")
        fixed = QuantizeOutput.fixed_range_for(
            "softmax" if isinstance(layer, L.Softmax) else act, bits)
        fuses = isinstance(layer, FUSES_ACTIVATION) and \
            self.fused_by_activation(name)
        shares = name in self.shared and fixed is None and not fuses
        q = QuantizeOutput(copy_layer(layer), fixed_range=fixed,
                           quantize_output=not (
                               fuses or shares or
                               self.feeds_concat_only(name)), **self.kw)
        self.emit(name, q, x, shares)
        self.report.append({
            "layer": name, "type": type(layer).__name__,
            "quantized": ("activation fused by TFLite (range of the "
                          "activation)" if fuses else f"output int{bits}"),
            "wrapper": q.name,
            **(self.shared_note(name) if shares else {})})
        return True

    def rounded_to_input_scale(self, layer, parents, x):
        """An average pooling or resizing whose int8 op keeps its input's
        scale and rounds its values to it."""
        if isinstance(layer, AVERAGE_POOLING):
            wrapper = QuantizeAveragePooling
            note = ("average rounded to it" if rounds_average(layer) else
                    "even window's average unrounded but in device_rounding")
        elif rounds_resize(layer):
            wrapper = QuantizeResizing
            note = f"{layer.interpolation} values rounded to it"
        else:
            return False
        self.tensors[layer.name] = wrapper(copy_layer(layer))(x)
        self.report.append({"layer": layer.name,
                            "type": type(layer).__name__,
                            "quantized": f"keeps scale, {note}"})
        return True

    def pass_through(self, layer, parents, x):
        if not isinstance(layer, PASS_THROUGH):
            return False
        self.tensors[layer.name] = copy_layer(layer)(x)
        self.report.append({"layer": layer.name,
                            "type": type(layer).__name__,
                            "quantized": "pass-through (keeps scale)"})
        return True

    def kept_float(self, layer, parents, x):
        if not no_int8_kernel(layer):
            return False
        kept = copy_layer(layer)
        kept._tfcompress_kept_float = True   # listed by summary()
        self.emit_float(layer.name, kept, parents)
        self.report.append({"layer": layer.name,
                            "type": type(layer).__name__,
                            "quantized": "FLOAT (no int8 TFLite kernel for "
                                         "LayerNormalization's NEG; the "
                                         "converter keeps its ops float)"})
        return True
