"""Rebuilds a model with QAT layers (see :mod:`tfcompress.quantize.layers`)."""

from __future__ import annotations

import keras
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
from tfcompress.quantize.pooling import (QuantizeAveragePooling,
                                         rounds_average)
from tfcompress.quantize.shared_ranges import (feeds_concat_only as
                                               _feeds_concat_only,
                                               shared_range_groups)
from tfcompress.utils.layer_map import copy_layer, is_container, iter_layers
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


class UnsupportedLayerError(InputError):
    """A layer tfcompress does not know how to quantize."""


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
    layer_bits = layer_bits or {}
    if not is_container(model):
        raise InputError(f"{model.name} is a subclassed model; tfcompress "
                         "can quantize Sequential and Functional models")
    graph = (layer_graph(model) if isinstance(model, keras.Sequential)
             else functional_graph(model))
    consumers, parents_of = {}, {}
    for layer, parents in graph:
        parents_of[layer.name] = parents
        for p in parents:
            consumers.setdefault(p, []).append(layer)
    is_quantized = {}   # layer name -> True/False; inputs: None
    for layer, parents in graph:
        if isinstance(layer, L.InputLayer) or not parents:
            is_quantized[layer.name] = None
        elif not annotated_only or is_annotated(layer) or (
                is_container(layer) and any(
                    is_annotated(inner) for inner in iter_layers(layer))):
            is_quantized[layer.name] = True
        else:
            is_quantized[layer.name] = getattr(
                layer, "_tfcompress_from_op", False) and all(
                is_quantized.get(p, None) is not False for p in parents)

    def quantized(layer):
        return is_quantized.get(layer.name) is not False
    outputs = set()
    if isinstance(model, keras.Sequential):
        outputs.add(model.layers[-1].name)
    else:
        for t in model.outputs:
            outputs.add(compat.keras_history(t).operation.name)

    def sole_consumer(name):
        # the one layer reading tensor ``name``, if QAT quantizes it (only
        # then can it fuse with the producer)
        cs = consumers.get(name, [])
        return cs[0] if len(cs) == 1 and name not in outputs and \
            quantized(cs[0]) else None

    def feeds_concat_only(name):
        # TFLite gives a Concatenate's inputs its own scale: their ranges
        # come from the concatenation's quantizer, not their own.
        return _feeds_concat_only(name, consumers, outputs) and all(
            quantized(c) for c in consumers[name])

    # tensors TFLite gives one scale (concatenation chains): one range;
    # not where some layers stay float (each quantized tensor keeps its own)
    partly_float = not all(quantized(layer) for layer, _ in graph
                           if not isinstance(layer, L.InputLayer))
    shared = ({} if isinstance(model, keras.Sequential) or not getattr(
        scheme, "share_concat_ranges", True) or partly_float
        else shared_range_groups(graph, outputs))
    shared_quantizers = {}

    def share_range(member, out):
        root = shared[member]
        if root not in shared_quantizers:
            shared_quantizers[root] = QuantizeOutput(
                None, name=f"quant_range_{root}", **kw)
        # only the last concatenation, whose values hold all the others',
        # moves the range in training
        return shared_quantizers[root](out, update_range=member == root)

    def shared_note(member):
        return {"shared_range": f"quant_range_{shared[member]}"}

    def fused_by_activation(name):
        nxt = sole_consumer(name)
        return nxt is not None and _fusable_activation(nxt) is not None

    tensors, consumed = {}, {}
    prescaled = set()   # producers whose kernel carries a scaled sum's scale
    # Rescaling/Normalization outputs not computed yet: name -> (source
    # tensor name, scale, offset, passed through zero padding, layer names)
    pending = {}

    def emit_affine(name):
        src, scale, offset, _, names = pending.pop(name)
        if (scale == scale[0]).all() and (offset == offset[0]).all():
            return emit_scalar_affine(name, src, float(scale[0]),
                                      float(offset[0]), names)
        q = QuantizeChannelAffine(scale, offset, source=names,
                                  weight_bits=scheme.weight_bits,
                                  name=f"quant_{name}", **kw)
        tensors[name] = q(qtensor(src))
        report.append({"layer": ", ".join(names), "type": "input affine",
                       "quantized": "int8 per-channel affine (1x1 "
                                    "depthwise)", "wrapper": q.name})
        return tensors[name]

    def emit_scalar_affine(name, src, scale, offset, names):
        # one scale and offset for every channel (Rescaling(1 / 127.5, -1)):
        # an int8 MUL and ADD by constants, as TFLite writes the float
        # layer, which XNNPACK runs faster than a 1x1 depthwise on 3
        # channels
        x, ops = qtensor(src), []
        for op, constant in (("multiply", scale), ("add", offset)):
            if constant != (1.0 if op == "multiply" else 0.0):
                suffix = "scale" if op == "multiply" else "offset"
                x = QuantizeOutput(ConstantArithmetic(
                    op, constant, name=f"{name}_{suffix}"), **kw)(x)
                ops.append("MUL" if op == "multiply" else "ADD")
        tensors[name] = x
        report.append({"layer": ", ".join(names), "type": "input affine",
                       "quantized": f"int8 {' and '.join(ops) or 'identity'}"
                                    " by constants"})
        return x

    def tensor(name):
        return emit_affine(name) if name in pending else tensors[name]

    # tensors left float (inputs of a partly quantized model, outputs of
    # float layers): name -> name of the quantizer a quantized reader uses
    float_tensors, float_quantized = {}, {}

    def qtensor(name):
        """Tensor ``name`` as a quantized layer reads it."""
        if name not in float_tensors:
            return tensor(name)
        if name not in float_quantized:
            float_quantized[name] = QuantizeOutput(
                None, name=float_tensors[name], **kw)(tensors[name])
            report.append({"layer": name, "type": "float tensor",
                           "quantized": "input range of the quantized "
                                        "layers reading it",
                           "wrapper": float_tensors[name]})
        return float_quantized[name]

    def emit_float(name, layer, parents):
        """``layer`` computed in float on its parents' tensors as they
        are; the quantized layers reading its output get a range for it."""
        x = [tensor(p) for p in parents]
        tensors[name] = layer(x[0] if len(x) == 1 else x)
        float_tensors[name] = f"quant_{name}_output"

    def foldable_affine(layer, parents):
        # a pending affine whose sole consumer is this Conv2D; an offset is
        # exact only without zero padding between (none, or 'valid')
        if len(parents) != 1 or parents[0] not in pending or \
                type(layer) is not L.Conv2D or layer.groups != 1 or \
                layer.data_format != "channels_last" or \
                sole_consumer(parents[0]) is not layer:
            return None
        _, scale, offset, padded, _ = pending[parents[0]]
        if offset.any() and (padded or layer.padding != "valid"):
            return None
        return pending.pop(parents[0])
    new_inputs = []

    def add_input(name, inp, quantizer_name):
        tensors[name] = inp
        if annotated_only:   # quantized where a quantized layer reads it
            float_tensors[name] = quantizer_name
            return
        tensors[name] = QuantizeOutput(None, name=quantizer_name, **kw)(inp)
        report.append({"layer": name, "type": "Input",
                       "quantized": "input range"})

    kw = dict(activation_bits=scheme.activation_bits,
              ema_decay=scheme.ema_decay)
    for layer, parents in graph:
        name = layer.name
        if name in consumed:
            tensors[name] = tensors[consumed[name]]
            continue
        if isinstance(layer, L.InputLayer) or not parents:
            shape = (layer.batch_shape[1:] if isinstance(layer, L.InputLayer)
                     else model.inputs[0].shape[1:])
            inp = keras.Input(shape=shape, name=name)
            new_inputs.append(inp)
            add_input(name, inp, f"quant_input_{name}")
            continue
        if parents == [_SEQUENTIAL_INPUT]:
            if _SEQUENTIAL_INPUT not in tensors:
                inp = keras.Input(shape=model.inputs[0].shape[1:],
                                  name="input")
                new_inputs.append(inp)
                add_input(_SEQUENTIAL_INPUT, inp, "quant_input")
        if not quantized(layer):
            kept = copy_layer(layer)
            kept._tfcompress_kept_float = NOT_ANNOTATED   # for summary()
            emit_float(name, kept, parents)
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": "FLOAT (not annotated)"})
            continue
        config = getattr(layer, "_tfcompress_quantize_config", None)
        requested_bits = layer_bits.get(name, scheme.weight_bits)
        if getattr(config, "weight_bits", None) is not None and \
                isinstance(layer, FUSABLE):
            # QuantizeConfig(weight_bits=..): the default rule, other bits
            requested_bits = layer_bits.get(name, config.weight_bits)
            config = "default"
        if config in (None, "default") and len(parents) == 1:
            p = parents[0]
            affine = layer_affine(layer, layer.output.shape[-1]) \
                if isinstance(layer, AFFINE_LAYERS) else None
            if affine is not None and name not in outputs:
                if p in pending and sole_consumer(p) is layer:
                    src, s0, o0, padded, names = pending.pop(p)
                    pending[name] = (src, s0 * affine[0],
                                     o0 * affine[0] + affine[1], padded,
                                     names + [name])
                else:
                    pending[name] = (p, affine[0], affine[1], False, [name])
                continue
            if isinstance(layer, L.ZeroPadding2D) and p in pending and \
                    not pending[p][2].any() and \
                    sole_consumer(p) is layer and name not in outputs:
                # zero padding commutes with a pure scale only
                src, s0, o0, padded, names = pending.pop(p)
                tensors[name + "/unscaled"] = copy_layer(layer)(qtensor(src))
                pending[name] = (name + "/unscaled", s0, o0, True,
                                 names + [name])
                report.append({"layer": name, "type": "ZeroPadding2D",
                               "quantized": "pass-through (keeps scale)"})
                continue
        folded_input = foldable_affine(layer, parents) \
            if config in (None, "default") else None
        if folded_input is not None:
            args = [qtensor(folded_input[0])]
        else:
            args = [qtensor(p) for p in parents]
        x = args[0] if len(args) == 1 else args
        if config is not None and config != "default":
            if config.quantize_output:
                tensors[name] = QuantizeOutput(copy_layer(layer), **kw)(x)
            else:
                emit_float(name, copy_layer(layer), parents)
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": config.describe()})
            continue
        if is_container(layer):
            inner = quantize_graph(layer, scheme, report, layer_bits,
                                   annotated_only)
            tensors[name] = inner(x)
            continue
        if isinstance(layer, FUSABLE):
            bn = act = None
            nxt = sole_consumer(name)
            fused = [name]
            act_inside = getattr(layer.activation, "__name__", "linear")
            if scheme.fold_batchnorm and act_inside == "linear" and \
                    isinstance(nxt, L.BatchNormalization) and \
                    nxt.axis in (-1, len(layer.output.shape) - 1):
                bn = nxt
                fused.append(bn.name)
                nxt = sole_consumer(bn.name)
            # x * c or x + c right after the op: TFLite folds the constant
            # into kernel and bias, so QAT does too
            output_scale, output_shift = 1.0, 0.0
            while act_inside == "linear" and _folds_constant(nxt):
                output_scale, output_shift = _compose(
                    nxt, output_scale, output_shift)
                fused.append(nxt.name)
                nxt = sole_consumer(nxt.name)
            if act_inside == "linear" and nxt is not None and \
                    _fusable_activation(nxt):
                act = _fusable_activation(nxt)
                fused.append(nxt.name)
            # TFLite fuses only ReLU/ReLU6 into the op; any other built-in
            # activation (softmax, sigmoid, tanh, ...) is an op of its own
            # with its own output scale, so it is split off here.
            split_act = act_inside not in ("linear",) + FUSABLE_ACTIVATIONS
            if act_inside == "linear" and act is None and \
                    nxt is not None and zoo_layers.is_scaled_sum(nxt) and \
                    parents_of[nxt.name][1:] == [fused[-1]] and \
                    parents_of[nxt.name][0] != fused[-1]:
                # InceptionResNetV2: x + conv(..) * scale, with the scale in
                # the kernel (TFLite folds it so)
                output_scale *= float(nxt.scale)
                output_shift *= float(nxt.scale)
                prescaled.add(fused[-1])
            core = (copy_layer(layer, activation="linear") if split_act
                    else copy_layer(layer))
            bits, bits_note = bit_widths.weight_bits_for(layer,
                                                         requested_bits)
            shares = fused[-1] in shared and not split_act
            q = QuantizeFused(core,
                              copy_layer(bn) if bn is not None else None,
                              act, weight_bits=bits,
                              weight_bits_note=bits_note,
                              per_channel=scheme.per_channel,
                              preserve_sparsity=scheme.preserve_sparsity,
                              preserve_clusters=getattr(
                                  scheme, "preserve_clusters", False),
                              quantize_output=split_act or not (
                                  shares or feeds_concat_only(fused[-1])),
                              input_scale=(None if folded_input is None
                                           else folded_input[1]),
                              input_offset=(None if folded_input is None
                                            else folded_input[2]),
                              output_scale=output_scale,
                              output_shift=output_shift,
                              freeze_bn_delay=getattr(
                                  scheme, "freeze_bn_delay", None), **kw)
            out = q(x)
            if shares:
                out = share_range(fused[-1], out)
            if split_act:
                out = QuantizeOutput(
                    L.Activation(act_inside, name=f"{name}_{act_inside}"),
                    fixed_range=QuantizeOutput.fixed_range_for(
                        act_inside, scheme.activation_bits),
                    quantize_output=not feeds_concat_only(name),
                    **kw)(out)
            for n in fused:
                tensors[n] = out
                consumed[n] = name
            report.append({
                "layer": name, "type": type(layer).__name__,
                "quantized": f"weights int{bits} "
                             f"{'per-channel' if q.per_channel else 'per-tensor'}"
                             f", output int{scheme.activation_bits}"
                             + (f" ({bits_note})" if bits_note else ""),
                "folded": ((folded_input[4] if folded_input else []) +
                           fused[1:]), "wrapper": q.name,
                **(shared_note(fused[-1]) if shares else {})})
            continue
        if isinstance(layer, L.BatchNormalization):
            fuses = fused_by_activation(name)
            shares = name in shared and not fuses
            q = QuantizeAffine(copy_layer(layer),
                               weight_bits=scheme.weight_bits,
                               quantize_output=not (
                                   fuses or shares or
                                   feeds_concat_only(name)), **kw)
            tensors[name] = q(x)
            if shares:
                tensors[name] = share_range(name, tensors[name])
            report.append({"layer": name, "type": "BatchNormalization",
                           "quantized": "int8 per-channel affine (1x1 "
                                        "depthwise)" + (
                                            ", activation fused by TFLite "
                                            "(range of the activation)"
                                            if fuses else ""),
                           "wrapper": q.name,
                           **(shared_note(name) if shares else {})})
            continue
        if zoo_layers.is_identity(layer):
            tensors[name] = x
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": "identity at inference (removed)"})
            continue
        if zoo_layers.is_scaled_sum(layer):
            if parents[1] in prescaled:
                summed = L.Add(name=name)
            else:   # the scale cannot fold: a MUL of its own
                x = [x[0], QuantizeOutput(ConstantArithmetic(
                    "multiply", layer.scale, name=f"{name}_scale"),
                    **kw)(x[1])]
                summed = L.Add(name=name)
            tensors[name] = QuantizeOutput(summed, quantize_output=not (
                fused_by_activation(name) or feeds_concat_only(name)),
                **kw)(x)
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": "ADD, scale folded into "
                                        f"{parents[1]}" if parents[1] in
                           prescaled else "MUL and ADD",
                           "wrapper": f"quant_{name}"})
            continue
        if isinstance(layer, OUTPUT_QUANTIZED):
            act = getattr(getattr(layer, "activation", None), "__name__", "")
            fixed = QuantizeOutput.fixed_range_for(
                "softmax" if isinstance(layer, L.Softmax) else act,
                scheme.activation_bits)
            fuses = isinstance(layer, FUSES_ACTIVATION) and \
                fused_by_activation(name)
            shares = name in shared and fixed is None and not fuses
            q = QuantizeOutput(copy_layer(layer), fixed_range=fixed,
                               quantize_output=not (
                                   fuses or shares or
                                   feeds_concat_only(name)), **kw)
            tensors[name] = q(x)
            if shares:
                tensors[name] = share_range(name, tensors[name])
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": (
                               "activation fused by TFLite (range of the "
                               "activation)" if fuses else
                               f"output int{scheme.activation_bits}"),
                           "wrapper": q.name,
                           **(shared_note(name) if shares else {})})
            continue
        if rounds_average(layer):
            tensors[name] = QuantizeAveragePooling(copy_layer(layer))(x)
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": "keeps scale, average rounded to "
                                        "it"})
            continue
        if isinstance(layer, PASS_THROUGH):
            tensors[name] = copy_layer(layer)(x)
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": "pass-through (keeps scale)"})
            continue
        if no_int8_kernel(layer):
            kept = copy_layer(layer)
            kept._tfcompress_kept_float = True   # listed by summary()
            emit_float(name, kept, parents)
            report.append({"layer": name, "type": type(layer).__name__,
                           "quantized": "FLOAT (no int8 TFLite kernel for "
                                        "LayerNormalization's NEG; the "
                                        "converter keeps its ops float)"})
            continue
        raise _unsupported(layer)
    if isinstance(model, keras.Sequential):
        outs = tensor(model.layers[-1].name)
    else:
        outs = [tensor(compat.keras_history(t).operation.name)
                for t in model.outputs]
        outs = outs[0] if len(outs) == 1 else outs
    return keras.Model(new_inputs[0] if len(new_inputs) == 1 else new_inputs,
                       outs, name=f"{model.name}_qat")
