"""Keeping named Keras layers float in a post-training int8 model.

``convert(model, "int8", representative_data=x, float_layers=["fc1"])``
calibrates the whole model, then quantizes every op but those of the
named layers; TFLite puts DEQUANTIZE/QUANTIZE around the float ops. This
is what TensorFlow's ``tf.lite.experimental.QuantizationDebugger`` does
with ``QuantizationDebugOptions(denylisted_nodes=[...])``: the nodes are
the output tensor names of the ops in the calibrated flatbuffer, which
this module finds from the Keras layer names (Keras 3 writes a layer
``fc1`` as the path component ``fc1`` or ``fc1_<n>``).

>>> layer_in_name("functional_1/fc1_1/MatMul;functional_1/fc1_1/Relu",
...               ["fc1", "fc2"])
'fc1'
>>> layer_in_name("StatefulPartitionedCall_1:0", ["fc1"]) is None
True
"""

from __future__ import annotations

import re

from tfcompress import compat
from tfcompress.errors import InputError


def check_float_layers(float_layers, layer_names, mode, qat):
    """The requested layer names as a list (empty when none), checked:
    post-training ``int8`` only, every name a layer of the model."""
    if float_layers is None:
        return []
    if isinstance(float_layers, str):
        float_layers = [n for n in float_layers.split(",") if n.strip()]
    names = [str(n).strip() for n in float_layers]
    if not names:
        return []
    if mode != "int8":
        raise InputError(f"float_layers keeps layers float in a "
                         f"post-training int8 model; mode is {mode}: use "
                         "mode int8 or drop float_layers")
    if qat:
        raise InputError("float_layers applies to post-training int8; this "
                         "model has QAT fake-quant layers: leave the layers "
                         "to keep float out of quantize annotation instead")
    unknown = [n for n in names if n not in layer_names]
    if unknown:
        raise InputError(f"float_layers: no layer named "
                         f"{', '.join(map(repr, unknown))}; the model's "
                         f"layers are {', '.join(layer_names)}")
    return list(dict.fromkeys(names))


def layer_in_name(tensor_name, layer_names):
    """The layer of ``layer_names`` a TFLite tensor name mentions as a path
    component (``fc1`` or ``fc1_<n>``), the longest name first; None if
    none does."""
    parts = [p for piece in tensor_name.split(";") for p in piece.split("/")]
    for name in sorted(layer_names, key=len, reverse=True):
        pattern = re.compile(re.escape(name) + r"(_\d+)?")
        if any(pattern.fullmatch(p) for p in parts):
            return name
    return None


def float_nodes(calibrated, float_layers, layer_names, output_layers=()):
    """``{layer: [node, ...]}``: the output tensor names of the ops of each
    of ``float_layers`` in the calibrated flatbuffer ``calibrated``.

    An op belongs to the layer its output tensor names; an output tensor
    without a layer name (the model's output is called
    ``StatefulPartitionedCall...``) goes by the op's constant inputs (its
    weights), else by ``output_layers`` (the layers making the model's
    outputs). Raises InputError for a layer with no op of its own."""
    from tfcompress.inspect.model_reader import read_model, tensor_values
    model = read_model(calibrated)
    graph = model["subgraphs"][0]
    tensors, outputs = graph["tensors"], set(graph["outputs"])
    found = {name: [] for name in float_layers}
    for op in graph["operators"]:
        outs = [i for i in op["outputs"] if i >= 0]
        if not outs:
            continue
        node = tensors[outs[0]]["name"]
        layer = layer_in_name(node, layer_names)
        if layer is None:
            weights = [tensors[i]["name"] for i in op["inputs"] if i >= 0
                       and tensor_values(tensors[i], model["buffers"])
                       is not None]
            layer = next((l for l in (layer_in_name(w, layer_names)
                                      for w in weights) if l), None)
        if layer is None and outs[0] in outputs and len(output_layers) == 1:
            layer = output_layers[0]
        if layer in found:
            found[layer].append(node)
    empty = [n for n, nodes in found.items() if not nodes]
    if empty:
        raise InputError(f"float_layers: {', '.join(map(repr, empty))} has "
                         "no op of its own in the flatbuffer (it computes "
                         "nothing, or the converter fused it into another "
                         "layer's op): name a layer with weights or "
                         "arithmetic instead")
    return found


def convert_keeping_float(converter, calib, float_layers, layer_names,
                          output_layers, calibration, percentile,
                          input_type, output_type, per_channel):
    """Calibrates with ``converter`` (set up for post-training int8), then
    quantizes every op but those of ``float_layers``. Returns
    ``(tflite_bytes, calibration ranges or None, {layer: [node, ...]})``."""
    from tfcompress.convert.converter import _tf_type
    calibrated = compat.calibrate_only(converter)
    ranges = None
    if calibration != "minmax":
        from tfcompress.convert.calibration import recalibrate
        calibrated, ranges = recalibrate(calibrated, calib, calibration,
                                         percentile)
    nodes = float_nodes(calibrated, float_layers, layer_names, output_layers)
    tflite_bytes = compat.mlir_quantize(
        calibrated, input_data_type=_tf_type(input_type),
        output_data_type=_tf_type(output_type),
        denylisted_nodes=[n for layer in nodes.values() for n in layer],
        disable_per_channel=not per_channel)
    return tflite_bytes, ranges, nodes


def mark_requested(report, nodes):
    """Moves the float ops of the requested layers (``{layer: [node,
    ...]}``) from ``report["float_ops"]`` (what strict mode refuses) to
    ``report["float_by_request"]``; ``report["float_layers"]`` lists the
    layers."""
    by_node = {n: layer for layer, names in nodes.items() for n in names}
    outputs = {o["index"]: o.get("output", "") for o in report["ops"]}
    requested, others = [], []
    for row in report["float_ops"]:
        layer = by_node.get(outputs.get(row["index"]))
        if layer is None:
            others.append(row)
        else:
            requested.append({**row, "layer": layer})
    report["float_ops"] = others
    report["float_by_request"] = requested
    report["float_layers"] = list(nodes)
    report["fully_integer"] = False
    report["notes"].append(
        f"float_layers: {len(requested)} op(s) of "
        f"{', '.join(nodes)} compute in float32 by request "
        "(QUANTIZE/DEQUANTIZE around them); strict mode accepts them")
    return report
