"""The inspector's schema tables against the schema shipped with LiteRT (and
TensorFlow when installed), and its reader on crafted flatbuffers."""

import importlib.util
import os
import re

import numpy as np
import pytest

from tfcompress.inspect import FlatbufferError, format_report, inspect
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


# ---------------------------------------------------------------------------
# packed sub-byte weights (two 4-bit or four 2-bit values per byte, least
# significant bits first)

INT4, INT2, UINT4 = 17, 19, 20


@pytest.mark.parametrize("type_code,shape,raw,expected", [
    (INT4, [2, 3], [0x21, 0xF7, 0x08], [1, 2, 7, -1, -8, 0]),
    (INT4, [3], [0x9F, 0x07], [-1, -7, 7]),
    (UINT4, [3], [0xF1, 0x08], [1, 15, 8]),
    (INT2, [5], [0b11100100, 0b01], [0, 1, -2, -1, 1]),
])
def test_packed_weights_are_unpacked(type_code, shape, raw, expected):
    data = _model([("x", INT8, [1, 3], 0), ("y", INT8, [1, 3], 0),
                   ("w", type_code, shape, 1)], [([0, 2], [1])],
                  buffers=[bytes(raw)])
    (w,) = inspect(data)["weights"]
    n = len(expected)
    assert w["params"] == n and w["bytes"] == len(raw)
    assert w["bits_per_weight"] == round(8 * len(raw) / n, 3)
    assert w["nonzero"] == sum(v != 0 for v in expected)
    assert w["distinct_values"] == len(set(expected))
    r = model_reader.read_model(data)
    t = r["subgraphs"][0]["tensors"][2]
    np.testing.assert_array_equal(
        model_reader.tensor_values(t, r["buffers"]),
        np.reshape(expected, shape))


def test_packed_buffer_shorter_than_its_shape_is_a_one_line_error():
    data = _model([("x", INT8, [1, 3], 0), ("y", INT8, [1, 3], 0),
                   ("kernel", INT4, [2, 3], 1)], [([0, 2], [1])],
                  buffers=[b"\x21\x43"])
    with pytest.raises(FlatbufferError) as e:
        inspect(data)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'kernel'" in msg and "6 packed 4-bit values (3 bytes)" in msg


def test_int4_weights_of_a_converted_model_match_the_interpreter():
    import keras
    from ai_edge_litert.interpreter import Interpreter
    from tfcompress import quantize
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    qat = quantize.quantize_model(model, quantize.NBitScheme(4, 8))
    x = np.random.default_rng(0).random((32, 16), dtype=np.float32)
    qat(x, training=True)
    flatbuffer = convert(qat, "int8", representative_data=x).tflite_bytes
    (w,) = [w for w in inspect(flatbuffer)["weights"] if w["dtype"] == "INT4"]
    assert w["params"] == 16 * 8 and w["shape"] == [8, 16]
    assert w["bytes"] == 64 and w["bits_per_weight"] == 4.0
    assert 2 <= w["distinct_values"] <= 16
    # the interpreter's own reading of the same tensor
    it = Interpreter(model_content=flatbuffer)
    (d,) = [d for d in it.get_tensor_details() if d["name"] == w["name"]]
    ref = it.get_tensor(d["index"])
    assert w["distinct_values"] == len(np.unique(ref))
    assert w["nonzero"] == np.count_nonzero(ref)
    r = model_reader.read_model(flatbuffer)
    (t,) = [t for t in r["subgraphs"][0]["tensors"] if t["name"] == w["name"]]
    np.testing.assert_array_equal(model_reader.tensor_values(t, r["buffers"]),
                                  ref)


# ---------------------------------------------------------------------------
# bits of every weight, and tensor types tflite-runtime 2.14 does not know

@pytest.mark.parametrize("type_code,shape,raw,bits,value_bits", [
    (INT4, [2, 3], [0x21, 0xF7, 0x08], 4, 3),      # 6 distinct values
    (INT8, [4], [1, 2, 3, 1], 8, 2),               # 3 distinct values
    (INT2, [5], [0b11100100, 0b01], 2, 2),
])
def test_weight_rows_give_stored_bits_and_bits_the_values_need(
        type_code, shape, raw, bits, value_bits):
    data = _model([("x", INT8, [1, 3], 0), ("y", INT8, [1, 3], 0),
                   ("w", type_code, shape, 1)], [([0, 2], [1])],
                  buffers=[bytes(raw)])
    report = inspect(data)
    (w,) = report["weights"]
    assert (w["bits"], w["value_bits"]) == (bits, value_bits)
    row = [line for line in format_report(report).splitlines()
           if line.startswith("w ")]
    assert row and row[0].split()[1:3] == [w["dtype"], str(bits)]


@pytest.mark.parametrize("type_code,warned", [(INT2, True), (UINT4, True),
                                              (INT4, False)])
def test_tensor_types_newer_than_tflite_runtime_2_14_are_warned(
        type_code, warned):
    data = _model([("x", INT8, [1, 3], 0), ("y", INT8, [1, 3], 0),
                   ("w", type_code, [2], 1)], [([0, 2], [1])],
                  buffers=[b"\x01"])
    report = inspect(data)
    name = {INT2: "INT2", UINT4: "UINT4", INT4: "INT4"}[type_code]
    hits = [c for c in report["runtime_compatibility"]
            if c.get("tensor_type") == name]
    assert bool(hits) == warned
    text = format_report(report)
    assert (f"WARNING compatibility: {name} tensors" in text) == warned
