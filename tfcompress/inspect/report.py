"""``inspect``: what a .tflite flatbuffer really contains.

Reads the flatbuffer itself (no TensorFlow, no interpreter): ops and their
versions, tensor types, quantization scales, weight sparsity and distinct
values, sizes, and every op that computes in float.

>>> report = inspect("model.tflite")                    # doctest: +SKIP
>>> report["fully_integer"], report["float_ops"]        # doctest: +SKIP
(True, [])
"""

from __future__ import annotations

import collections
import gzip
import os

import numpy as np

from tfcompress.bench.delegation import INT8_SPLITTING_OPS, SHAPE_OPS
from tfcompress.errors import InputError, MissingFileError
from tfcompress.inspect.bias_scales import (BIAS_SCALE_NOTE,
                                            bias_scale_mismatches)
from tfcompress.inspect.flatbuffer import FlatbufferError
from tfcompress.inspect.model_reader import read_model, tensor_values

SCHEMA = "tfcompress.inspect/1"
FLOAT_TYPES = {"FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16"}
BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}
INTEGER_ACTIVATIONS = {"INT8", "UINT8"}

# Op versions that tflite-runtime 2.14 (the last tflite-runtime release)
# cannot load although TF 2.21 emits them.
NEWER_THAN_TFLITE_RUNTIME_2_14 = {
    "FULLY_CONNECTED": 12,
}
# Tensor types added to the TFLite schema after tflite-runtime 2.14.
# (Packed INT4 weights load there: FULLY_CONNECTED v10, CONV_2D v7 and
# DEPTHWISE_CONV_2D v7 with INT4 filters run on tflite-runtime 2.14 arm64,
# measured with benchmarks/int4_runtime.py --arm.)
TYPES_NEWER_THAN_TFLITE_RUNTIME_2_14 = ("INT2", "UINT4", "FLOAT8_E4M3FN",
                                        "FLOAT8_E5M2")
# Bits one element of each tensor type takes as stored (sub-byte types
# packed).
TYPE_BITS = {"FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8,
             "INT64": 64, "BOOL": 8, "INT16": 16, "COMPLEX64": 64,
             "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128, "UINT64": 64,
             "UINT32": 32, "UINT16": 16, "INT4": 4, "BFLOAT16": 16,
             "INT2": 2, "UINT4": 4, "FLOAT8_E4M3FN": 8, "FLOAT8_E5M2": 8}


def layer_of(tensor_name: str) -> str:
    """Best guess of the Keras layer a TFLite tensor came from.

    >>> layer_of("sequential/conv1/convolution;sequential/conv1/Relu")
    'conv1'
    >>> layer_of("serving_default_image:0")  # not inside a layer
    'serving_default_image:0'
    """
    first = tensor_name.split(";")[0]
    parts = [p for p in first.split("/") if p]
    if len(parts) >= 3:
        return parts[1]
    return parts[0] if parts else tensor_name


# a .keras file is a zip archive, a legacy .h5 file an HDF5 one
_KERAS_FILE_HEADS = (b"PK\x03\x04", b"\x89HDF\r\n\x1a\n")


def _load(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), None
    path = os.fspath(path_or_bytes)
    if not os.path.exists(path):
        raise MissingFileError(f"{path} does not exist; give the path of a "
                               ".tflite file")
    if os.path.isdir(path):
        raise InputError(f"{path} is a folder; give a .tflite file")
    with open(path, "rb") as f:
        return f.read(), path


def _weight_row(t, values, nbytes):
    flat = values.ravel()
    params = int(np.prod(t["shape"])) if t["shape"] else flat.size
    nonzero = int(np.count_nonzero(flat))
    q = t["quantization"]
    distinct = int(np.unique(flat).size)
    row = {"name": t["name"], "layer": layer_of(t["name"]),
           "dtype": t["dtype"], "shape": t["shape"], "params": params,
           "bytes": nbytes, "bits": TYPE_BITS.get(t["dtype"]),
           # bits the distinct values need (a 6-bit kernel stored as INT8)
           "value_bits": int(np.ceil(np.log2(distinct))) if distinct > 1
           else 0,
           "bits_per_weight": round(8 * nbytes / params, 3) if params else
           None,
           "nonzero": nonzero,
           "sparsity": round(1 - nonzero / params, 4) if params else 0.0,
           "distinct_values": distinct,
           "sparse_format": t["sparse"]}
    if q:
        row["quantization"] = {
            "per_channel": len(q["scale"]) > 1, "axis": q["axis"],
            "scales": len(q["scale"]),
            "scale_min": float(min(q["scale"])) if q["scale"] else None,
            "scale_max": float(max(q["scale"])) if q["scale"] else None,
            "zero_points": sorted(set(int(z) for z in q["zero_point"]))[:8]}
    return row


def inspect(path_or_bytes) -> dict:
    """Structural report of a .tflite model (path or bytes).

    Raises:
      FlatbufferError: for empty, truncated, corrupt or non-TFLite input.
      FileNotFoundError: if the path does not exist.

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...                           keras.layers.Conv2D(4, 3),
    ...                           keras.layers.Flatten(),
    ...                           keras.layers.Dense(3)])
    >>> x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "model_int8.tflite")
    ...     _ = convert(model, "int8", representative_data=x,
    ...                 output_path=path)
    ...     report = inspect(path)
    >>> report["fully_integer"], report["float_ops"]
    (True, [])
    >>> sorted(report["op_counts"])
    ['CONV_2D', 'DEQUANTIZE', 'FULLY_CONNECTED', 'QUANTIZE', 'RESHAPE']
    >>> sorted({w["dtype"] for w in report["weights"]})  # kernels, biases
    ['INT32', 'INT8']
    >>> inspect(b"not a flatbuffer")
    Traceback (most recent call last):
    ...
    tfcompress.inspect.flatbuffer.FlatbufferError: ...
    """
    data, path = _load(path_or_bytes)
    if not data:
        raise FlatbufferError(f"{path or 'input'} is empty (0 bytes)")
    if data.startswith(_KERAS_FILE_HEADS):
        raise FlatbufferError(
            f"{path or 'input'} is a Keras model file, not a TFLite "
            f"flatbuffer: convert it first (tfcompress convert "
            f"{path or 'MODEL.keras'} --output model.tflite)")
    try:
        model = read_model(data)
    except FlatbufferError as e:
        raise FlatbufferError(f"{path or 'input'}: {e}") from None
    except (RecursionError, MemoryError, OverflowError, ValueError) as e:
        raise FlatbufferError(f"{path or 'input'}: malformed flatbuffer "
                              f"({type(e).__name__})") from None
    main = model["subgraphs"][0]
    tensors = main["tensors"]
    buffers = model["buffers"]

    def io(ids):
        out = []
        for i in ids:
            t = tensors[i]
            q = t["quantization"] or {}
            out.append({"name": t["name"], "dtype": t["dtype"],
                        "shape": t["shape"],
                        "scale": q.get("scale", [None])[0] if q else None,
                        "zero_point": (q.get("zero_point", [None])[0]
                                       if q else None)})
        return out

    ops, float_ops = [], []
    const = {i for i, t in enumerate(tensors)
             if tensor_values(t, buffers) is not None or t["sparse"]}
    for k, op in enumerate(main["operators"]):
        code = model["opcodes"][op["opcode"]]
        # -1 marks an optional tensor that is absent: never an index
        in_ids = [i for i in op["inputs"] if i >= 0]
        out_ids = [i for i in op["outputs"] if i >= 0]
        ins = [tensors[i]["dtype"] for i in in_ids]
        outs = [tensors[i]["dtype"] for i in out_ids]
        out_name = tensors[out_ids[0]]["name"] if out_ids else ""
        row = {"index": k, "op": code["name"], "version": code["version"],
               "inputs": ins, "outputs": outs, "layer": layer_of(out_name),
               "output": out_name}
        ops.append(row)
        if code["name"] in BOUNDARY_OPS:
            continue
        floats = [tensors[i]["name"] for i in in_ids + out_ids
                  if tensors[i]["dtype"] in FLOAT_TYPES]
        if floats:
            float_ops.append({"index": k, "op": code["name"],
                              "layer": row["layer"], "tensors": floats[:4]})
    weights = []
    # the weights of every subgraph (a WHILE loop's body holds a recurrent
    # layer's), each buffer once
    seen = {tensors[i]["buffer"] for i in const}
    consts = [tensors[i] for i in sorted(const)]
    for graph in model["subgraphs"][1:]:
        for t in graph["tensors"]:
            if t["buffer"] not in seen and (
                    t["sparse"] or tensor_values(t, buffers) is not None):
                seen.add(t["buffer"])
                consts.append(t)
    for t in consts:
        values = tensor_values(t, buffers)
        if values is None:
            if t["sparse"]:
                params = int(np.prod(t["shape"]))
                nbytes = len(buffers[t["buffer"]]) if t["buffer"] else 0
                weights.append({"name": t["name"], "layer": layer_of(
                    t["name"]), "dtype": t["dtype"], "shape": t["shape"],
                    "params": params, "bytes": nbytes,
                    "bits": TYPE_BITS.get(t["dtype"]), "value_bits": None,
                    "bits_per_weight": round(8 * nbytes / params, 3)
                    if params > 0 else None, "nonzero": None,
                    "sparsity": None, "distinct_values": None,
                    "sparse_format": True})
            continue
        if values.size < 2 and t["dtype"] == "INT32":
            continue   # shape/axis constants
        weights.append(_weight_row(t, values, len(buffers[t["buffer"]])))
    params = sum(w["params"] for w in weights)
    nonzero = sum(w["nonzero"] for w in weights if w["nonzero"] is not None)
    counts = collections.Counter(o["op"] for o in ops)
    versions = {}
    for o in ops:
        versions[o["op"]] = max(versions.get(o["op"], 0), o["version"])
    compat = []
    for name, v in sorted(versions.items()):
        limit = NEWER_THAN_TFLITE_RUNTIME_2_14.get(name)
        if limit is not None and v >= limit:
            compat.append({"op": name, "version": v,
                           "note": "tflite-runtime 2.14 cannot load this op "
                                   "version; use LiteRT (ai-edge-litert)"})
    xnnpack = xnnpack_warnings(ops)
    for dtype in sorted({t["dtype"] for t in tensors}
                        & set(TYPES_NEWER_THAN_TFLITE_RUNTIME_2_14)):
        compat.append({"tensor_type": dtype,
                       "note": f"{dtype} tensors are newer than "
                               "tflite-runtime 2.14's schema; use LiteRT "
                               "(ai-edge-litert)"})
    input_is_float = any(t["dtype"] in FLOAT_TYPES
                         for t in io(main["inputs"]))
    return {
        "schema": SCHEMA,
        "path": path,
        "size_bytes": len(data),
        "gzip_bytes": len(gzip.compress(data, compresslevel=9)),
        "tflite_schema_version": model["version"],
        "description": model["description"],
        "subgraphs": len(model["subgraphs"]),
        "inputs": io(main["inputs"]),
        "outputs": io(main["outputs"]),
        "op_counts": dict(sorted(counts.items())),
        "op_versions": dict(sorted(versions.items())),
        "ops": ops,
        "weights": weights,
        "params": params,
        "nonzero_params": nonzero,
        "sparsity": round(1 - nonzero / params, 4) if params else 0.0,
        "float_ops": float_ops,
        "fully_integer": not float_ops,
        "float_io": input_is_float,
        "runtime_compatibility": compat,
        "xnnpack_warnings": xnnpack,
        "bias_scale_mismatches": [
            {"index": m["op"], "op": m["name"], "ratio": m["ratio"],
             "layer": layer_of(m["weights"]), "weights": m["weights"]}
            for m in bias_scale_mismatches(model)],
    }


def xnnpack_warnings(ops):
    """Ops known to stay outside XNNPACK (each splits the delegated graph
    into one more partition), grouped by op: ``{op, count, indices,
    layers, note}``: the int8 ops of
    ``tfcompress.bench.delegation.INT8_SPLITTING_OPS`` and run-time shape
    computations (``SHAPE_OPS``), both measured; what the runtime really
    does is in ``tfcompress bench``'s partitions column.

    >>> xnnpack_warnings([{"index": 3, "op": "HARD_SWISH", "layer": "act",
    ...                    "inputs": ["INT8"]}])[0]["count"]
    1
    """
    out = []
    known = [(n, note, True) for n, note in INT8_SPLITTING_OPS.items()] + \
        [(n, note, False) for n, note in SHAPE_OPS.items()]
    for name, note, int8_only in known:
        hits = [o for o in ops if o["op"] == name and
                (not int8_only or set(o["inputs"]) & INTEGER_ACTIVATIONS)]
        if hits:
            out.append({"op": name, "count": len(hits),
                        "indices": [o["index"] for o in hits],
                        "layers": [o["layer"] for o in hits],
                        "note": note})
    return out


def format_report(report: dict) -> str:
    """Renders an :func:`inspect` report as readable text tables.

    >>> import keras
    >>> from tfcompress.convert import convert
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    >>> text = format_report(inspect(convert(model, "float32").tflite_bytes))
    >>> for line in text.splitlines()[2:6]:
    ...     print(line)
    inputs:  ... FLOAT32[1, 8]
    outputs: ... FLOAT32[1, 3]
    ops: FULLY_CONNECTED x1 (v...)
    FLOAT OPS (1):
    """
    lines = [
        f"size {report['size_bytes']:,} bytes, gzip "
        f"{report['gzip_bytes']:,} bytes",
        f"params {report['params']:,}, non-zero "
        f"{report['nonzero_params']:,} (sparsity {report['sparsity']:.1%})",
        "inputs:  " + ", ".join(f"{t['name']} {t['dtype']}{t['shape']}"
                                for t in report["inputs"]),
        "outputs: " + ", ".join(f"{t['name']} {t['dtype']}{t['shape']}"
                                for t in report["outputs"]),
        "ops: " + ", ".join(f"{k} x{v} (v{report['op_versions'][k]})"
                            for k, v in report["op_counts"].items()),
    ]
    requested = report.get("float_by_request") or []
    if requested:
        lines.append(f"float by request ({len(requested)}, float_layers "
                     f"{', '.join(report.get('float_layers', []))}):")
        for f in requested:
            lines.append(f"  #{f['index']} {f['op']} (layer {f['layer']})")
    if report["float_ops"]:
        lines.append(f"FLOAT OPS ({len(report['float_ops'])}):")
        for f in report["float_ops"]:
            lines.append(f"  #{f['index']} {f['op']} (layer {f['layer']})")
    elif requested:
        lines.append("every other op computes in int8/int16/int32")
    else:
        lines.append("fully integer: every op computes in int8/int16/int32")
    for w in report.get("xnnpack_warnings", []):
        layers = ", ".join(dict.fromkeys(l for l in w["layers"] if l))
        lines.append(
            f"XNNPACK WARNING: {w['count']} "
            f"{'' if w['op'] in SHAPE_OPS else 'int8 '}{w['op']} op(s) "
            f"({', '.join(f'#{i}' for i in w['indices'][:6])}"
            f"{' ...' if w['count'] > 6 else ''}"
            f"{'; layers ' + layers[:120] if layers else ''}): {w['note']}. "
            "Check with `tfcompress bench` (partitions column).")
    for m in report.get("bias_scale_mismatches", []):
        lines.append(
            f"WARNING bias scale: #{m['index']} {m['op']} (layer "
            f"{m['layer']}): {BIAS_SCALE_NOTE.format(ratio=m['ratio'])}")
    for c in report["runtime_compatibility"]:
        what = (f"{c['op']} v{c['version']}" if "op" in c
                else f"{c['tensor_type']} tensors")
        lines.append(f"WARNING compatibility: {what}: {c['note']}")
    lines.append("")
    head = f"{'weight':<40} {'dtype':<8} {'bits':>4} {'params':>9} " \
           f"{'sparsity':>8} {'distinct':>8} quantization"
    lines += [head, "-" * len(head)]
    for w in report["weights"]:
        q = w.get("quantization")
        qs = ("-" if not q else
              f"per-channel({q['scales']}) axis {q['axis']}"
              if q["per_channel"] else f"per-tensor {q['scale_min']:.3g}")
        sp = "-" if w["sparsity"] is None else f"{w['sparsity']:.1%}"
        dv = "-" if w["distinct_values"] is None else w["distinct_values"]
        bits = w.get("bits") or "-"
        lines.append(f"{w['name'][:40]:<40} {w['dtype']:<8} {bits:>4} "
                     f"{w['params']:>9,} {sp:>8} {dv:>8} {qs}")
    return "\n".join(lines)
