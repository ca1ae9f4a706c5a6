"""How a TFLite runtime executes a model: which ops its XNNPACK delegate runs.

A delegate takes over runs of consecutive ops it supports and replaces each
run with one ``DELEGATE`` node (a *partition*). An op it does not take (for
example int8 ``HARD_SWISH`` in LiteRT 2.3) stays on the runtime's reference
kernel, and the tensor leaves the delegate before it and comes back after
it; every such op splits the graph into one more partition. A fully
delegated model has one partition.

:func:`delegation_report` loads the model with the runtime (XNNPACK on, as
the runtime runs it by default, or off), reads the nodes the interpreter
holds after ``allocate_tensors`` and tells:

- ``partitions``: how many ``DELEGATE`` nodes the runtime made;
- ``ops_outside``: every op of the model no delegate took (index, builtin
  name, Keras layer guessed from the tensor names);
- ``delegated_mac_share``: the share of the model's multiply-accumulates
  (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``,
  ``BATCH_MATMUL``, ``TRANSPOSE_CONV``, from tensor shapes) that the
  delegate runs.

This file imports only numpy and a TFLite runtime (``ai_edge_litert``,
``tflite_runtime`` or ``tensorflow``), like ``runner.py`` next to it: copy
both to a device to run them there.

>>> report = delegation_report("model_int8.tflite")         # doctest: +SKIP
>>> report["partitions"], report["ops_outside"][:1]         # doctest: +SKIP
(2, [{'index': 2, 'op': 'HARD_SWISH', 'layer': 'act'}])
>>> print(format_delegation(report))                        # doctest: +SKIP
XNNPACK: 2 partitions, 1 of 7 ops outside, 100.0% of MACs delegated
  outside: #2 HARD_SWISH (layer act)
"""

from __future__ import annotations

import os
import re

import numpy as np

DELEGATE_OP = "DELEGATE"
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
           "TRANSPOSE_CONV")
# Int8 ops that LiteRT 2.3's XNNPACK delegate leaves outside, measured with
# delegation_report on Conv -> op -> Conv models and keras.applications
# flatbuffers (benchmarks/xnnpack_op_probe.py, xnnpack_partitions.py); the
# float versions of these ops are delegated.
_FLOAT_ONLY = ("LiteRT 2.3's XNNPACK delegate takes {op} in float only: "
               "the int8 op runs on the reference kernel between two "
               "delegate partitions")
INT8_SPLITTING_OPS = {
    "HARD_SWISH": _FLOAT_ONLY.format(op="HARD_SWISH") + "; each one moves "
                  "the tensor out of XNNPACK and back, and the int8 model "
                  "can run slower than the float one (MobileNetV3)",
    "SOFTMAX": _FLOAT_ONLY.format(op="SOFTMAX") + "; a classifier's final "
               "softmax costs one more partition and little time",
    "AVERAGE_POOL_2D": _FLOAT_ONLY.format(op="AVERAGE_POOL_2D") + " (a "
                       "global average is delegated as MEAN)",
    "GELU": _FLOAT_ONLY.format(op="GELU"),
    "PRELU": _FLOAT_ONLY.format(op="PRELU") + " (LeakyReLU is delegated)",
}
# Ops that split a delegated graph whatever their type: shapes computed at
# run time (e.g. a Reshape or UpSampling2D traced with an unknown batch
# size) run as SHAPE, STRIDED_SLICE, PACK, GATHER, ... on int32 tensors,
# which XNNPACK does not take.
SHAPE_OPS = {
    "SHAPE": "the graph computes a tensor shape at run time (a Reshape or "
             "UpSampling2D with an unknown batch size); the int32 shape "
             "arithmetic that follows (STRIDED_SLICE, PACK, GATHER, ...) "
             "and the RESHAPE it feeds run outside XNNPACK (tfcompress "
             "convert writes Keras Flatten and Reshape as one RESHAPE)",
}


class DelegationError(RuntimeError):
    """The runtime does not expose what delegation_report needs."""


def interpreter_nodes(interp):
    """The nodes of the interpreter's main subgraph after
    ``allocate_tensors``: the model's ops first, in flatbuffer order, then
    one ``DELEGATE`` node per delegate partition. Each is a dict with
    ``index``, ``op_name``, ``inputs`` and ``outputs``.

    TFLite's Python interpreters (LiteRT, tflite-runtime, tf.lite) expose
    the nodes only through the experimental ``_get_ops_details`` method;
    this is the one place it is called.
    """
    get = getattr(interp, "_get_ops_details", None)
    if get is None:
        raise DelegationError(
            f"{type(interp).__module__}.{type(interp).__name__} has no "
            "_get_ops_details(): this TFLite runtime does not expose its "
            "nodes, so partitions cannot be counted; use ai-edge-litert 2.x "
            "or tflite-runtime 2.14")
    nodes = []
    for d in get():
        nodes.append({"index": int(d["index"]), "op_name": str(d["op_name"]),
                      "inputs": [int(i) for i in d["inputs"]],
                      "outputs": [int(i) for i in d["outputs"]]})
    return nodes


_SCOPE_SUFFIX = re.compile(r"_\d+$")


def layer_from_tensor(name, known_layers=None):
    """Best guess of the Keras layer a TFLite tensor name comes from.

    Converted Keras 3 models name tensors ``<model>/<layer>_<n>/<op>``
    (TensorFlow makes each name scope unique with ``_<n>``, usually
    ``_1``). With ``known_layers`` (the model's layer names), the scope
    without that suffix wins if it is a layer, then the scope itself, then
    the longest layer name the scope starts with.

    >>> layer_from_tensor("functional_1/conv_a_1/convolution1")
    'conv_a'
    >>> layer_from_tensor("functional/act_1/mul", ["act", "act_1"])
    'act'
    >>> layer_from_tensor("functional/act_1_1/mul", ["act", "act_1"])
    'act_1'
    >>> layer_from_tensor("tfl.quantize")
    ''
    """
    first = name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    if len(parts) < 3:
        return ""
    scope = parts[1]
    stripped = _SCOPE_SUFFIX.sub("", scope) or scope
    if known_layers:
        known = set(known_layers)
        if stripped in known:
            return stripped
        if scope in known:
            return scope
        for n in sorted(known, key=len, reverse=True):
            if scope.startswith(n + "_"):
                return n
    return stripped


def _macs(op, inputs, outputs, shapes):
    """Multiply-accumulates of one op from its tensor shapes (batch
    included), or 0 for ops that do not multiply weights."""
    def shape(i):
        return shapes.get(i) if i >= 0 else None
    out = shape(outputs[0]) if outputs else None
    if out is None or len(inputs) < 2:
        return 0
    n_out = int(np.prod(out)) if len(out) else 1
    if op == "CONV_2D":
        w = shape(inputs[1])            # [out_c, kh, kw, in_c / groups]
        return n_out * int(np.prod(w[1:])) if w is not None else 0
    if op == "DEPTHWISE_CONV_2D":
        w = shape(inputs[1])            # [1, kh, kw, out_c]
        return n_out * int(w[1] * w[2]) if w is not None and \
            len(w) == 4 else 0
    if op == "FULLY_CONNECTED":
        w = shape(inputs[1])            # [units, in]
        return n_out * int(w[-1]) if w is not None and len(w) else 0
    if op == "BATCH_MATMUL":
        a = shape(inputs[0])            # [..., m, k], or [..., k, m]
        if a is None or len(a) < 2 or len(out) < 2 or not out[-2]:
            return 0
        return n_out * int(a[-1] * a[-2] // out[-2])
    if op == "TRANSPOSE_CONV":
        w = shape(inputs[1])            # [out_c, kh, kw, in_c]
        x = shape(inputs[2]) if len(inputs) > 2 else None
        if w is None or x is None:
            return 0
        return int(np.prod(x)) * int(np.prod(w[:3]))
    return 0


def delegated_ops(nodes):
    """Maps each model op that a ``DELEGATE`` node replaced to the index of
    that partition (0, 1, ...), from the nodes of :func:`interpreter_nodes`.

    A partition's node reads the tensors its ops read from outside and
    writes the tensors read outside it; its ops are those met walking back
    from what it writes to what it reads.
    """
    model_ops = [n for n in nodes if n["op_name"] != DELEGATE_OP]
    producer = {}
    for n in model_ops:
        for t in n["outputs"]:
            if t >= 0:
                producer[t] = n["index"]
    by_index = {n["index"]: n for n in model_ops}
    owner = {}
    partitions = [n for n in nodes if n["op_name"] == DELEGATE_OP]
    for k, d in enumerate(partitions):
        boundary = set(d["inputs"])
        stack = [t for t in d["outputs"] if t >= 0]
        seen = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary:
                continue
            seen.add(t)
            op = producer.get(t)
            if op is None or op in owner:
                continue
            owner[op] = k
            stack.extend(i for i in by_index[op]["inputs"] if i >= 0)
    return owner


def _naming_tensor(node, names):
    """The name of the op's output if it names a layer scope, else of its
    first weight-like input that does (e.g. a final FULLY_CONNECTED's output
    is named after the model's signature, its kernel after the layer)."""
    outs = [names.get(t, "") for t in node["outputs"] if t >= 0]
    ins = [names.get(t, "") for t in node["inputs"][1:] if t >= 0]
    for name in outs + ins:
        if layer_from_tensor(name):
            return name
    return outs[0] if outs else ""


def summarize(nodes, tensor_names, tensor_shapes, known_layers=None):
    """The delegation report of :func:`delegation_report` from the
    interpreter's nodes, ``{tensor index: name}`` and ``{tensor index:
    shape}``."""
    model_ops = [n for n in nodes if n["op_name"] != DELEGATE_OP]
    partitions = sum(n["op_name"] == DELEGATE_OP for n in nodes)
    owner = delegated_ops(nodes)
    outside = []
    total_macs = delegated_macs = 0
    ops_per_partition = [0] * partitions
    for n in model_ops:
        macs = _macs(n["op_name"], n["inputs"], n["outputs"], tensor_shapes)
        total_macs += macs
        if n["index"] in owner:
            delegated_macs += macs
            ops_per_partition[owner[n["index"]]] += 1
            continue
        tensor = _naming_tensor(n, tensor_names)
        outside.append({
            "index": n["index"], "op": n["op_name"],
            "layer": layer_from_tensor(tensor, known_layers),
            "tensor": tensor.split(";")[0], "macs": macs})
    return {
        "partitions": partitions,
        "total_ops": len(model_ops),
        "delegated_ops": len(model_ops) - len(outside),
        "ops_outside": outside,
        "ops_per_partition": ops_per_partition,
        "total_macs": int(total_macs),
        "delegated_macs": int(delegated_macs),
        "delegated_mac_share": (delegated_macs / total_macs
                                if total_macs else
                                (1.0 if partitions and not outside else 0.0)),
        "outside_op_types": sorted({o["op"] for o in outside
                                 if o["op"] not in ("QUANTIZE",
                                                    "DEQUANTIZE")}),
    }


def report_for_interpreter(interp, known_layers=None):
    """:func:`summarize` for an interpreter whose tensors are allocated."""
    names, shapes = {}, {}
    for t in interp.get_tensor_details():
        names[int(t["index"])] = t["name"]
        shapes[int(t["index"])] = [int(d) for d in t["shape"]]
    return summarize(interpreter_nodes(interp), names, shapes, known_layers)


def delegation_report(model_path, runtime="auto", threads=1, xnnpack=True,
                      known_layers=None):
    """How ``runtime`` executes the .tflite at ``model_path``.

    Args:
      model_path: a ``.tflite`` file.
      runtime: ``ai_edge_litert``, ``tflite_runtime``, ``tensorflow`` or
        ``auto`` (the first that imports, in that order).
      threads: interpreter threads (XNNPACK is created with them).
      xnnpack: False loads the model with the built-in kernels only (no
        default delegate): 0 partitions, every op outside.
      known_layers: Keras layer names, to name the layer of each op outside
        exactly instead of guessing from the tensor names.

    Returns:
      A dict: ``partitions`` (DELEGATE nodes), ``total_ops`` (ops in the
      model), ``delegated_ops``, ``ops_outside`` (list of ``{index, op,
      layer, tensor, macs}``; ``layer`` is "" when the tensor names do not
      tell), ``ops_per_partition``, ``total_macs``,
      ``delegated_macs``, ``delegated_mac_share`` (0..1),
      ``outside_op_types`` (names of the ops outside, QUANTIZE/DEQUANTIZE
      excepted), ``xnnpack``, ``threads``, ``runtime``,
      ``runtime_version``.

    Raises:
      BenchError: the file is missing or the runtime cannot load it.
      DelegationError: the runtime does not expose its nodes.

    >>> r = delegation_report("mobilenet_v3_int8.tflite")   # doctest: +SKIP
    >>> r["partitions"], r["outside_op_types"]                 # doctest: +SKIP
    (21, ['HARD_SWISH'])
    """
    try:
        from . import runner
    except ImportError:     # copied to a device next to runner.py
        import runner
    r = runner.delegation_only(os.fspath(model_path), runtime, threads,
                               xnnpack)
    env = r.pop("environment")
    for key in ("schema", "model", "path"):
        r.pop(key)
    r.update({"runtime": env["runtime"],
              "runtime_version": env["runtime_version"]})
    if known_layers:
        for o in r["ops_outside"]:
            o["layer"] = layer_from_tensor(o["tensor"], known_layers)
    return r


def format_delegation(report):
    """A short text summary of a :func:`delegation_report`.

    >>> print(format_delegation({"partitions": 1, "total_ops": 6,
    ...     "ops_outside": [], "delegated_mac_share": 1.0, "xnnpack": True}))
    XNNPACK: 1 partition, 0 of 6 ops outside, 100.0% of MACs delegated
    """
    if not report.get("xnnpack", True):
        return (f"XNNPACK off: {report['total_ops']} ops on the built-in "
                "kernels")
    p = report["partitions"]
    if p == 0:
        return (f"XNNPACK: no partition: the runtime delegated none of the "
                f"{report['total_ops']} ops (e.g. tflite-runtime 2.14 "
                "applies XNNPACK to float graphs only)")
    lines = [f"XNNPACK: {p} partition{'s' if p != 1 else ''}, "
             f"{len(report['ops_outside'])} of {report['total_ops']} ops "
             f"outside, {100 * report['delegated_mac_share']:.1f}% of MACs "
             "delegated"]
    for o in report["ops_outside"]:
        layer = f" (layer {o['layer']})" if o.get("layer") else ""
        lines.append(f"  outside: #{o['index']} {o['op']}{layer}")
    return "\n".join(lines)


def outside_summary(ops_outside):
    """``"HARD_SWISH x19, QUANTIZE x1"`` from a list of ops outside.

    >>> outside_summary([{"op": "HARD_SWISH"}, {"op": "MUL"},
    ...                  {"op": "HARD_SWISH"}])
    'HARD_SWISH x2, MUL x1'
    """
    counts = {}
    for o in ops_outside:
        counts[o["op"]] = counts.get(o["op"], 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in
                     sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))\
        or "-"
