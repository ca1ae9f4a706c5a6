"""Keeping named Keras layers float in a post-training int8 model.

``convert(model, "int8", representative_data=x, float_layers=["fc1"])``
calibrates the whole model, then quantizes every op but those of the
named layers; TFLite puts DEQUANTIZE/QUANTIZE around the float ops. This
is what TensorFlow's ``tf.lite.experimental.QuantizationDebugger`` does
with ``QuantizationDebugOptions(denylisted_nodes=[...])``: the nodes are
the output tensor names of the ops in the calibrated flatbuffer, which
this module finds from the Keras layer names. Keras 3 writes a layer
``fc1`` as the path component ``fc1`` or ``fc1_<n>`` (TensorFlow's name
scopes count up), so with layers ``fc`` and ``fc_1`` the component
``fc_1`` is layer ``fc``'s and ``fc_1_2`` layer ``fc_1``'s:
:func:`layer_components` resolves such overlaps.

>>> names = ["functional_1/fc_1/MatMul;functional_1/fc_1/Relu",
...          "functional_1/fc_1_2/MatMul", "StatefulPartitionedCall_1:0"]
>>> parts = layer_components(names, ["fc", "fc_1"])
>>> parts == {"fc_1": "fc", "fc_1_2": "fc_1"}
True
>>> layers_in_name(names[0], parts), layers_in_name(names[2], parts)
(['fc'], [])
"""

from __future__ import annotations

import difflib
import re

from tfcompress.errors import InputError


def check_float_layers(float_layers, layer_names, mode, qat, nested=None):
    """The requested layer names as a list (empty when none), checked:
    post-training ``int8`` only, every name a layer of the model (not one
    of the ``nested`` models, ``{name: [its layer names]}``)."""
    if float_layers is None:
        return []
    if isinstance(float_layers, str):
        float_layers = [n for n in float_layers.split(",") if n.strip()]
    if not isinstance(float_layers, (list, tuple, set, frozenset)) or \
            not all(isinstance(n, str) for n in float_layers):
        raise InputError(f"float_layers takes layer names (a list, or one "
                         f"string of comma-separated names), got "
                         f"{float_layers!r:.80}")
    names = [n.strip() for n in float_layers]
    if not names:
        return []
    if mode != "int8":
        raise InputError(f"float_layers keeps layers float in a "
                         f"post-training int8 model; mode is {mode}: use "
                         "mode int8 or drop float_layers")
    if qat:
        raise InputError("float_layers applies to post-training int8; this "
                         "model has QAT fake-quant layers: annotate only the "
                         "layers to quantize (quantize_annotate_layer) and "
                         "call quantize_apply instead, or drop float_layers")
    for n in names:
        if n in (nested or {}) and n not in layer_names:
            inner = nested[n]
            raise InputError(
                f"float_layers: {n!r} is a nested model, not a layer with "
                f"ops of its own: name the layers inside it to keep float "
                f"({', '.join(inner[:5])}{', ...' if len(inner) > 5 else ''}"
                f"), or convert with mode float16 or dynamic to keep all of "
                "it float")
    unknown = [n for n in names if n not in layer_names]
    if unknown:
        raise InputError(f"float_layers: no layer named "
                         f"{', '.join(map(repr, unknown))}; "
                         f"{_names_hint(unknown, layer_names)}")
    return list(dict.fromkeys(names))


def _names_hint(unknown, layer_names, listed=12):
    """The model's layer names when they are few, else the ones closest to
    ``unknown`` (an application model has hundreds).

    >>> _names_hint(["fc3"], ["fc1", "fc2"])
    "the model's layers are fc1, fc2"
    >>> _names_hint(["conv_1"], [f"conv{i}" for i in range(20)])
    'did you mean conv1, conv19, conv18? (model.summary() lists all 20 layers)'
    """
    if len(layer_names) <= listed:
        return f"the model's layers are {', '.join(layer_names)}"
    close = list(dict.fromkeys(m for n in unknown for m in
                               difflib.get_close_matches(n, layer_names)))
    return ((f"did you mean {', '.join(close)}? " if close else "")
            + f"(model.summary() lists all {len(layer_names)} layers)")


def _components(tensor_name):
    return [p for piece in tensor_name.split(";") for p in piece.split("/")
            if p]


def layer_components(tensor_names, layer_names):
    """``{path component: layer}`` for the components of ``tensor_names``
    that name a layer of ``layer_names`` (``name`` or ``name_<n>``).

    A component two layers could claim (``fc_1``: layer ``fc_1``, or
    layer ``fc`` counted up) goes to the layer no other component names:
    components only one layer claims are settled first, and a settled
    layer leaves the others' claims; what stays ambiguous goes to the layer
    of exactly that name, else to the longest name."""
    claims, names = {}, set(layer_names)
    for part in {p for n in tensor_names for p in _components(n)}:
        hits = {part, re.sub(r"_\d+$", "", part)} & names
        if hits:
            claims[part] = hits
    settled = {}
    changed = True
    while changed:
        changed = False
        for part, hits in claims.items():
            if part not in settled and len(hits) == 1:
                settled[part] = next(iter(hits))
                changed = True
        taken = set(settled.values())
        for part, hits in claims.items():
            if part not in settled and hits & taken and hits - taken:
                claims[part] = hits - taken
                changed = True
    for part, hits in claims.items():
        if part not in settled:
            settled[part] = part if part in hits else max(hits, key=len)
    return settled


def layers_in_name(tensor_name, components):
    """The layers ``tensor_name``'s components name (``components`` from
    :func:`layer_components`), in order: one, or several for an op the
    converter fused (``.../r1_1/Relu;.../conv1_1/convolution``)."""
    return list(dict.fromkeys(components[p] for p in _components(tensor_name)
                              if p in components))


def float_nodes(calibrated, float_layers, layer_names, output_layers=(),
                every_layer_has_ops=True):
    """``{layer: [node, ...]}``: the output tensor names of the ops of each
    of ``float_layers`` in the calibrated flatbuffer ``calibrated``.

    An op belongs to the layers its output tensor names (a fused
    convolution + ReLU op to both); an output tensor without a layer name
    (the model's output is called ``StatefulPartitionedCall...``) goes by
    the op's first named constant input (its weights), else by
    ``output_layers`` (the layers making the model's outputs). Raises
    InputError for a layer with no op of its own (a folded
    BatchNormalization has none) if ``every_layer_has_ops``, else leaves
    it out."""
    from tfcompress.inspect.model_reader import read_model, tensor_values
    model = read_model(calibrated)
    graph = model["subgraphs"][0]
    tensors, outputs = graph["tensors"], set(graph["outputs"])
    found = {name: [] for name in float_layers}
    parts = layer_components([t["name"] for t in tensors], layer_names)
    for op in graph["operators"]:
        outs = [i for i in op["outputs"] if i >= 0]
        if not outs:
            continue
        node = tensors[outs[0]]["name"]
        layers = layers_in_name(node, parts)
        if not layers:
            weights = [tensors[i]["name"] for i in op["inputs"] if i >= 0
                       and tensor_values(tensors[i], model["buffers"])
                       is not None]
            layers = next((l[:1] for l in (layers_in_name(w, parts)
                                           for w in weights) if l), [])
        if not layers and outs[0] in outputs:
            layers = output_layer(node, output_layers)
        for layer in layers:
            if layer in found:
                found[layer].append(node)
    empty = [n for n, nodes in found.items() if not nodes]
    if not every_layer_has_ops:
        return {n: nodes for n, nodes in found.items() if nodes}
    if empty:
        raise InputError(f"float_layers: {', '.join(map(repr, empty))} has "
                         "no op of its own in the flatbuffer (it computes "
                         "nothing, or the converter fused it into another "
                         "layer's op): name a layer with weights or "
                         "arithmetic instead")
    return found


def output_layer(node, output_layers):
    """``[layer]`` making the model output whose flatbuffer tensor is
    ``node``: the only output layer, or for ``Identity_<k>`` (the frozen
    function's k-th output) the k-th; else ``[]``."""
    if len(output_layers) == 1:
        return list(output_layers)
    match = re.fullmatch(r"Identity(?:_(\d+))?", node)
    k = int(match.group(1) or 0) if match else None
    return [output_layers[k]] if k is not None and k < len(output_layers) \
        else []


def output_twin(node, model_outputs):
    """The model output whose integer twin ``node`` is, or None: the
    converter names the tensor an output DEQUANTIZE reads after it
    (``Identity1``, ``Identity_int16``; ``Identity_11`` for ``Identity_1``).

    >>> output_twin("Identity1", {"Identity"})
    'Identity'
    >>> output_twin("Identity_int16", {"Identity", "Identity_1"})
    'Identity'
    >>> output_twin("Identity_11", {"Identity", "Identity_1"})
    'Identity_1'
    >>> output_twin("dense/MatMul1", {"Identity"}) is None
    True
    """
    for twin in (re.sub(r"_int(?:8|16)$", "", node), node[:-1]):
        if twin != node and twin in model_outputs:
            return twin
    return None


def mark_requested(report, nodes, by="request"):
    """Moves the float ops of the requested layers (``{layer: [node,
    ...]}``) from ``report["float_ops"]`` (what strict mode refuses) to
    ``report["float_by_request"]``; ``report["float_layers"]`` lists the
    layers; ``by`` says who asked (in the note). An op the converter fused
    from several of the layers (a convolution and the add after it) is
    listed under all of them, joined by ", "."""
    by_node = {}
    for layer, names in nodes.items():
        for n in names:
            by_node.setdefault(n, []).append(layer)
    outputs = {o["index"]: o.get("output", "") for o in report["ops"]}
    requested, others, layers = [], [], []
    for row in report["float_ops"]:
        owners = by_node.get(outputs.get(row["index"]))
        if owners is None:
            others.append(row)
        else:
            requested.append({**row, "layer": ", ".join(owners)})
            layers += [n for n in owners if n not in layers]
    report["float_ops"] = others
    report["float_by_request"] = requested
    # the layers with a float op (the converter still quantizes an op
    # whose input and output scales come from QAT fake-quant), in the
    # order they were asked for
    layers = [n for n in nodes if n in layers]
    report["float_layers"] = layers
    if not requested:   # every op of them was quantized after all
        return report
    report["fully_integer"] = False
    report["notes"].append(
        f"float_layers: {len(requested)} op(s) of "
        f"{', '.join(layers)} compute in float32 by {by} "
        "(QUANTIZE/DEQUANTIZE around them); strict mode accepts them")
    return report
