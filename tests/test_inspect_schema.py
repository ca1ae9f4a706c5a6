"""The inspector's schema tables against the schema shipped with LiteRT (and
TensorFlow when installed), and its reader on crafted flatbuffers."""

import importlib.util
import os
import re

import numpy as np
import pytest

from tfcompress.inspect import FlatbufferError, inspect
from tfcompress.inspect import model_reader
from tfcompress.inspect.schema_enums import BUILTIN_OPS, TENSOR_TYPES


def _schema_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], *parts,
                        "schema_py_generated.py")
    return path if os.path.isfile(path) else None


def _load_schema(path, name):
    """Loads a generated schema module by path (its package, e.g.
    tensorflow, is not imported)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _members(cls):
    return {k: v for k, v in vars(cls).items()
            if not k.startswith("_") and isinstance(v, int)}


def _litert_schema():
    path = _schema_file("ai_edge_litert")
    assert path, "ai_edge_litert ships no schema_py_generated.py"
    return _load_schema(path, "litert_schema")


SCHEMAS = [("ai_edge_litert", ())]
if _schema_file("tensorflow", "lite", "python"):
    SCHEMAS.append(("tensorflow", ("lite", "python")))


@pytest.mark.parametrize("package,parts", SCHEMAS,
                         ids=[p for p, _ in SCHEMAS])
@pytest.mark.parametrize("enum,ours", [("TensorType", TENSOR_TYPES),
                                       ("BuiltinOperator", BUILTIN_OPS)])
def test_every_shipped_enum_value_is_named_the_same(package, parts, enum,
                                                    ours):
    path = _schema_file(package, *parts)
    schema = _load_schema(path, f"{package}_schema")
    shipped = _members(getattr(schema, enum))
    assert len(shipped) > 20
    missing = {name: value for name, value in shipped.items()
               if ours.get(value) != name}
    assert not missing, (f"{enum} values in {path} that schema_enums.py "
                         f"does not name the same: {missing}")
    # and ours names nothing at a value the shipped schema gives another name
    by_value = {v: k for k, v in shipped.items()}
    clash = {v: n for v, n in ours.items()
             if v in by_value and by_value[v] != n}
    assert not clash


def test_sub_byte_tensor_types_are_named():
    assert {TENSOR_TYPES[17], TENSOR_TYPES[19], TENSOR_TYPES[20]} == {
        "INT4", "INT2", "UINT4"}


# ---------------------------------------------------------------------------
# crafted flatbuffers (built with the shipped schema's object API)

def _model(tensors, operators, buffers=None, inputs=(0,), outputs=(1,),
           opcode=9):
    """A TFLite flatbuffer with one subgraph. ``tensors``: (name, type,
    shape, buffer index); ``operators``: (inputs, outputs)."""
    import flatbuffers
    s = _litert_schema()
    m = s.ModelT()
    m.version = 3
    oc = s.OperatorCodeT()
    oc.builtinCode = opcode
    oc.deprecatedBuiltinCode = min(opcode, 127)
    oc.version = 1
    m.operatorCodes = [oc]
    m.buffers = []
    for raw in [b""] + list(buffers or []):
        b = s.BufferT()
        b.data = np.frombuffer(raw, np.uint8) if raw else None
        m.buffers.append(b)
    sg = s.SubGraphT()
    sg.tensors = []
    for name, type_code, shape, buf in tensors:
        t = s.TensorT()
        t.name, t.type, t.shape, t.buffer = name, type_code, list(shape), buf
        sg.tensors.append(t)
    sg.operators = []
    for ins, outs in operators:
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, list(ins), list(outs)
        sg.operators.append(op)
    sg.inputs, sg.outputs = list(inputs), list(outputs)
    m.subgraphs = [sg]
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


FLOAT32, INT8 = 0, 9


def test_crafted_model_reads_back():
    data = _model([("x", INT8, [1, 4], 0), ("y", INT8, [1, 2], 0),
                   ("w", INT8, [2, 4], 1)],
                  [([0, 2], [1])], buffers=[bytes(range(8))])
    r = inspect(data)
    assert r["op_counts"] == {"FULLY_CONNECTED": 1}
    assert r["ops"][0]["outputs"] == ["INT8"]
    (w,) = r["weights"]
    assert w["params"] == 8 and w["distinct_values"] == 8


def test_optional_tensor_minus_one_does_not_index_the_tensor_list():
    # the last tensor is float: reading index -1 as a tensor would report a
    # float output and name it
    data = _model([("x", INT8, [1, 4], 0), ("y", INT8, [1, 4], 0),
                   ("float_last", FLOAT32, [1, 4], 0)],
                  [([0, -1], [-1, 1])])
    r = inspect(data)
    op = r["ops"][0]
    assert op["inputs"] == ["INT8"]
    assert op["outputs"] == ["INT8"]
    assert op["output"] == "y"
    assert r["fully_integer"] and not r["float_ops"]


def test_only_optional_outputs_give_an_empty_output_name():
    data = _model([("x", INT8, [1, 4], 0), ("float_last", FLOAT32, [1], 0)],
                  [([0], [-1])], outputs=(0,))
    op = inspect(data)["ops"][0]
    assert op["outputs"] == [] and op["output"] == ""


def _models_with_six(what):
    two = [("x", INT8, [1], 0), ("y", INT8, [1], 0)]
    if what == "tensor":
        return _model(two + [(f"t{i}", INT8, [1], 0) for i in range(4)],
                      [([0], [1])])
    if what == "operator":
        return _model(two, [([0], [1])] * 6)
    if what == "buffer":
        return _model(two, [([0], [1])], buffers=[b"\x01"] * 5)
    return _model(two, [([0] * 6, [1])])           # operator inputs


@pytest.mark.parametrize("what", ["tensor", "operator", "buffer",
                                  "operator[0] inputs"])
def test_item_counts_are_checked_against_the_limit(what, monkeypatch):
    data = _models_with_six(what)
    inspect(data)                                       # fine as built
    monkeypatch.setattr(model_reader, "MAX_ITEMS", 5)
    with pytest.raises(FlatbufferError,
                       match=re.escape(what) + ": 6 items.*limit of 5"):
        inspect(data)


def test_huge_declared_count_is_rejected_without_reading_items():
    data = bytearray(_model([("x", INT8, [1], 0), ("y", INT8, [1], 0)],
                            [([0], [1])]))
    # find the subgraph's tensor vector: its length field holds 2 and is
    # followed by offsets to the two tensor tables
    s = _litert_schema()
    sg = s.Model.GetRootAs(bytes(data), 0).Subgraphs(0)
    vec = sg._tab.Vector(sg._tab.Offset(4))
    assert int.from_bytes(data[vec - 4:vec], "little") == 2
    data[vec - 4:vec] = (0x7FFFFFFF).to_bytes(4, "little")
    with pytest.raises(FlatbufferError, match="tensor.*2147483647 items.*limit"):
        inspect(bytes(data))
