"""Reads a TFLite flatbuffer into plain Python structures (no TensorFlow).

Field slots follow TFLite's ``schema.fbs``.
"""

from __future__ import annotations

import numpy as np

from tfcompress.inspect.flatbuffer import FlatbufferError, Table
from tfcompress.inspect.schema_enums import BUILTIN_OPS, TENSOR_TYPES

NUMPY_TYPES = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "INT32": np.int32,
    "UINT8": np.uint8, "INT64": np.int64, "BOOL": np.bool_,
    "INT16": np.int16, "INT8": np.int8, "FLOAT64": np.float64,
    "UINT64": np.uint64, "UINT32": np.uint32, "UINT16": np.uint16,
}
# Sub-byte integer types, stored packed: (bits, signed). Values fill each
# byte from its least significant bits up (for 4 bits: low nibble first).
PACKED_TYPES = {"INT4": (4, True), "UINT4": (4, False), "INT2": (2, True)}
# No real model has more tensors, operators, buffers or operator inputs
# than this: a larger declared count means corruption, refused before any
# item is read.
MAX_ITEMS = 1_000_000


def _quantization(t):
    q = t.table(4, "quantization") if t else None
    if q is None:
        return None
    scale = q.vector_scalars(2, "f")
    zero_point = q.vector_scalars(3, "q")
    if not scale and not zero_point:
        return None
    return {"scale": scale, "zero_point": zero_point,
            "axis": q.scalar(6, "i", 0)}


def read_model(data: bytes) -> dict:
    """Parses the parts of a TFLite model the inspector reports on."""
    model = Table.root(data, identifier=b"TFL3", name="model")
    opcodes = []
    for oc in model.vector_tables(1, "operator_code",
                                    MAX_ITEMS):
        deprecated = oc.scalar(0, "b", 0)
        builtin = oc.scalar(3, "i", 0)
        code = max(int(deprecated), int(builtin))
        custom = oc.string(1)
        name = (f"CUSTOM:{custom}" if custom else
                BUILTIN_OPS.get(code, f"UNKNOWN_{code}"))
        opcodes.append({"name": name, "version": oc.scalar(2, "i", 1)})
    buffers = []
    for b in model.vector_tables(4, "buffer", MAX_ITEMS):
        offset, size = b.scalar(1, "Q", 0), b.scalar(2, "Q", 0)
        if offset > 1:
            b.buf.check(offset, size, "external buffer")
            buffers.append(bytes(b.buf.data[offset:offset + size]))
        else:
            buffers.append(bytes(b.vector_bytes(0)))
    subgraphs = []
    for sg in model.vector_tables(2, "subgraph", MAX_ITEMS):
        tensors = []
        for t in sg.vector_tables(0, "tensor", MAX_ITEMS):
            type_code = t.scalar(1, "b", 0)
            tensors.append({
                "name": t.string(3) or "",
                "shape": t.vector_scalars(0, "i"),
                "dtype": TENSOR_TYPES.get(type_code, f"TYPE_{type_code}"),
                "buffer": t.scalar(2, "I", 0),
                "quantization": _quantization(t),
                "sparse": t.table(6, "sparsity") is not None,
                "is_variable": bool(t.scalar(5, "B", 0)),
            })
        operators = []
        for k, op in enumerate(sg.vector_tables(3, "operator", MAX_ITEMS)):
            idx = op.scalar(0, "I", 0)
            if idx >= len(opcodes):
                raise FlatbufferError(f"operator uses opcode {idx} but the "
                                      f"model has {len(opcodes)}")
            operators.append({
                "opcode": idx,
                "inputs": op.vector_scalars(1, "i", MAX_ITEMS,
                                            f"operator[{k}] inputs"),
                "outputs": op.vector_scalars(2, "i", MAX_ITEMS,
                                             f"operator[{k}] outputs")})
        n = len(tensors)
        for op in operators:
            for i in op["inputs"] + op["outputs"]:
                if i >= n or i < -1:
                    raise FlatbufferError(f"operator refers to tensor {i} "
                                          f"but the subgraph has {n}")
        io = {"inputs": sg.vector_scalars(1, "i", MAX_ITEMS,
                                          "subgraph inputs"),
              "outputs": sg.vector_scalars(2, "i", MAX_ITEMS,
                                           "subgraph outputs")}
        for key, ids in io.items():
            for i in ids:
                if not 0 <= i < n:
                    raise FlatbufferError(f"subgraph {key} refer to tensor "
                                          f"{i} but it has {n}")
        for t in tensors:
            if t["buffer"] >= max(len(buffers), 1) and t["buffer"] != 0:
                raise FlatbufferError(f"tensor {t['name']!r} uses buffer "
                                      f"{t['buffer']} of {len(buffers)}")
        subgraphs.append({"name": sg.string(4) or "", "tensors": tensors,
                          "operators": operators, **io})
    if not subgraphs:
        raise FlatbufferError("the model has no subgraph")
    return {"version": model.scalar(0, "I", 0),
            "description": model.string(3) or "",
            "opcodes": opcodes, "buffers": buffers, "subgraphs": subgraphs}


def unpack_bits(raw: bytes, bits: int, signed: bool, count: int):
    """``count`` integers of ``bits`` bits packed into ``raw``, least
    significant bits first, as int8.

    >>> unpack_bits(bytes([0x21, 0xF7]), 4, True, 4).tolist()
    [1, 2, 7, -1]
    >>> unpack_bits(bytes([0b11100100]), 2, True, 4).tolist()
    [0, 1, -2, -1]
    """
    per_byte = 8 // bits
    need = -(-count // per_byte)
    if len(raw) < need:
        raise FlatbufferError(f"{len(raw)} bytes hold fewer than the {count} "
                              f"packed {bits}-bit values ({need} bytes) the "
                              "shape needs")
    packed = np.frombuffer(raw, np.uint8, count=need)
    shifts = (np.arange(per_byte) * bits).astype(np.uint8)
    values = ((packed[:, None] >> shifts) & ((1 << bits) - 1)).ravel()[:count]
    values = values.astype(np.int8)
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits),
                          values).astype(np.int8)
    return values


def tensor_values(tensor, buffers):
    """The constant data of ``tensor`` as a numpy array, or None. Packed
    sub-byte types (INT4, UINT4, INT2) come back unpacked, as int8."""
    if not tensor["buffer"] or tensor["buffer"] >= len(buffers):
        return None
    raw = buffers[tensor["buffer"]]
    if not raw:
        return None
    if tensor["dtype"] in PACKED_TYPES and not tensor["sparse"]:
        bits, signed = PACKED_TYPES[tensor["dtype"]]
        shape = tensor["shape"]
        if any(d < 0 for d in shape):
            return None
        try:
            values = unpack_bits(raw, bits, signed, int(np.prod(shape)))
        except FlatbufferError as e:
            raise FlatbufferError(f"tensor {tensor['name']!r} "
                                  f"({tensor['dtype']}{shape}): {e}") from None
        return values.reshape(shape)
    dtype = NUMPY_TYPES.get(tensor["dtype"])
    if dtype is None or tensor["sparse"]:
        return None
    itemsize = np.dtype(dtype).itemsize
    if len(raw) % itemsize:
        raise FlatbufferError(f"tensor {tensor['name']!r}: buffer of "
                              f"{len(raw)} bytes is not a whole number of "
                              f"{tensor['dtype']} values")
    values = np.frombuffer(raw, dtype=dtype)
    shape = tensor["shape"]
    if shape and int(np.prod(shape)) == values.size:
        values = values.reshape(shape)
    return values
