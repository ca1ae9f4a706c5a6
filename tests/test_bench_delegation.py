"""Delegation report: XNNPACK partitions, ops left outside, MAC share."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfcompress.bench import delegation
from tfcompress.bench.delegation import delegation_report

RUNNER = os.path.join(os.path.dirname(__file__), "..", "tfcompress", "bench",
                      "runner.py")


def _two_convs(activation, folder):
    """Conv -> activation -> Conv -> mean -> Dense, converted to int8 by
    tfcompress.convert."""
    import keras
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_a")(i)
    x = keras.layers.Activation(activation, name="act")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(4, name="fc")(x)
    model = keras.Model(i, x)
    data = np.random.default_rng(0).random((8, 12, 12, 3), np.float32)
    path = str(folder / f"{activation}_int8.tflite")
    # the converter's own graph: tfcompress's hard-swish rewrite would keep
    # it inside the delegate (tests/test_xnnpack_rewrites.py)
    convert(model, "int8", representative_data=data, output_path=path,
            xnnpack_rewrites=False)
    return path


@pytest.fixture(scope="module")
def flatbuffers(tmp_path_factory):
    d = tmp_path_factory.mktemp("delegation")
    return {"hard_swish": _two_convs("hard_swish", d),
            "relu": _two_convs("relu", d)}


# conv_a: 12*12*8 outputs x 3*3*3, conv_b: 12*12*8 x 3*3*8, fc: 4 x 8
MACS = 1152 * 27 + 1152 * 72 + 32


def test_int8_hard_swish_splits_the_graph_into_two_partitions(flatbuffers):
    r = delegation_report(flatbuffers["hard_swish"],
                          runtime="ai_edge_litert")
    assert r["partitions"] == 2
    assert [(o["op"], o["layer"]) for o in r["ops_outside"]] == \
        [("HARD_SWISH", "act")]
    assert r["outside_op_types"] == ["HARD_SWISH"]
    assert r["total_ops"] == r["delegated_ops"] + 1
    assert sum(r["ops_per_partition"]) == r["delegated_ops"]
    assert r["total_macs"] == MACS
    assert r["delegated_mac_share"] == 1.0      # HARD_SWISH has no MACs


def test_relu_model_runs_in_one_partition(flatbuffers):
    r = delegation_report(flatbuffers["relu"], runtime="ai_edge_litert")
    assert r["partitions"] == 1
    assert r["ops_outside"] == []
    assert r["delegated_mac_share"] == 1.0
    assert r["ops_per_partition"] == [r["total_ops"]]
    assert r["total_macs"] == MACS


def test_xnnpack_off_has_no_partition_and_every_op_outside(flatbuffers):
    r = delegation_report(flatbuffers["relu"], runtime="ai_edge_litert",
                          xnnpack=False)
    assert r["partitions"] == 0 and r["xnnpack"] is False
    assert [o["index"] for o in r["ops_outside"]] == \
        list(range(r["total_ops"]))
    assert r["delegated_mac_share"] == 0.0
    by_op = {o["op"]: o for o in r["ops_outside"]}
    assert by_op["FULLY_CONNECTED"]["layer"] == "fc"
    assert by_op["FULLY_CONNECTED"]["macs"] == 32


def test_known_layers_name_the_layer_exactly(flatbuffers):
    r = delegation_report(flatbuffers["hard_swish"],
                          runtime="ai_edge_litert",
                          known_layers=["conv_a", "act", "act_1"])
    assert r["ops_outside"][0]["layer"] == "act"
    assert r["ops_outside"][0]["tensor"].split("/")[1].startswith("act")


def test_benchmark_result_carries_the_delegation(flatbuffers):
    from tfcompress.bench import benchmark
    r = benchmark(flatbuffers["hard_swish"], runtime="ai_edge_litert",
                  runs=2, warmup_runs=0)
    assert r["delegation"]["partitions"] == 2
    assert r["delegation"]["outside_op_types"] == ["HARD_SWISH"]


def test_runner_script_reports_delegation_without_tensorflow(flatbuffers):
    code = ("import sys, runpy\nsys.modules['tensorflow'] = None\n"
            "sys.modules['keras'] = None\nsys.modules['tfcompress'] = None\n"
            f"sys.argv = ['runner.py', {flatbuffers['hard_swish']!r}, "
            "'--delegation-only', '--runtime', 'ai_edge_litert']\n"
            f"runpy.run_path({RUNNER!r}, run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    result = json.loads(r.stdout)
    assert result["partitions"] == 2
    assert result["ops_outside"][0]["op"] == "HARD_SWISH"


def test_litert_interpreter_still_exposes_its_nodes():
    # delegation.interpreter_nodes reads the nodes through this
    # experimental method; if a LiteRT release drops it, this fails first.
    from ai_edge_litert.interpreter import Interpreter
    assert callable(getattr(Interpreter, "_get_ops_details", None)), (
        "ai_edge_litert's Interpreter no longer has _get_ops_details(): "
        "update tfcompress.bench.delegation.interpreter_nodes")


def test_runtime_without_node_access_raises_a_clear_error():
    class NoNodes:
        pass
    with pytest.raises(delegation.DelegationError,
                       match="no _get_ops_details.*partitions cannot be"):
        delegation.interpreter_nodes(NoNodes())


def test_partition_ownership_walks_back_to_the_delegate_inputs():
    # op0 -> t1 -> op1 -> t2 -> op2 -> t3; op1 stays outside
    nodes = [{"index": 0, "op_name": "CONV_2D", "inputs": [0, 10],
              "outputs": [1]},
             {"index": 1, "op_name": "HARD_SWISH", "inputs": [1],
              "outputs": [2]},
             {"index": 2, "op_name": "CONV_2D", "inputs": [2, 11],
              "outputs": [3]},
             {"index": 3, "op_name": "DELEGATE", "inputs": [0, 10],
              "outputs": [1]},
             {"index": 4, "op_name": "DELEGATE", "inputs": [2, 11],
              "outputs": [3]}]
    assert delegation.delegated_ops(nodes) == {0: 0, 2: 1}


def test_macs_from_shapes():
    shapes = {0: [1, 8, 8, 4], 1: [16, 3, 3, 4], 2: [1, 8, 8, 16],
              3: [1, 3, 3, 4], 4: [1, 8, 8, 4], 5: [1, 2, 5, 6],
              6: [1, 6, 7], 7: [1, 5, 7]}
    assert delegation._macs("CONV_2D", [0, 1], [2], shapes) == \
        8 * 8 * 16 * 36
    assert delegation._macs("DEPTHWISE_CONV_2D", [0, 3], [4], shapes) == \
        8 * 8 * 4 * 9
    assert delegation._macs("BATCH_MATMUL", [5, 6], [7], shapes) == \
        5 * 7 * 6
    assert delegation._macs("ADD", [0, 0], [0], shapes) == 0


@pytest.fixture(scope="module")
def bench_results(flatbuffers):
    from tfcompress.bench import benchmark
    return [benchmark(flatbuffers[k], runtime="ai_edge_litert", runs=2,
                      warmup_runs=0) for k in ("relu", "hard_swish")]


def test_bench_markdown_and_csv_show_partitions_and_ops_outside(
        bench_results, tmp_path):
    from tfcompress.bench import markdown, write_reports
    text = markdown(bench_results)
    assert "XNNPACK partitions | ops outside |" in text
    relu_row, hs_row = [l for l in text.splitlines()
                        if l.startswith("| relu_int8") or
                        l.startswith("| hard_swish_int8")]
    assert relu_row.endswith("| 1 | 0 |")
    assert hs_row.endswith("| 2 | 1 |")
    assert "- hard_swish_int8.tflite: 2 XNNPACK partition(s), 100.0% of " \
        "MACs delegated; outside: #2 HARD_SWISH (act)" in text
    paths = write_reports(bench_results, str(tmp_path))
    header, relu_csv, hs_csv = open(paths["csv"]).read().splitlines()
    assert header.endswith("partitions,ops_outside,delegated_mac_share,"
                           "outside")
    assert hs_csv.endswith(",2,1,1.0,HARD_SWISH x1")
    saved = json.load(open(paths["json"]))["results"][1]["delegation"]
    assert saved["ops_outside"][0]["op"] == "HARD_SWISH"


def test_recipe_report_shows_partitions_and_ops_outside(bench_results,
                                                        tmp_path):
    from tfcompress.recipes.report import write_report
    results = {"baseline": {"keras_accuracy": 0.5, "size_bytes": 10000}}
    for name, bench in zip(("relu", "hs"), bench_results):
        results[name] = {"stages": ["convert"], "keras_accuracy": 0.5,
                         "conversion": {"mode": "int8",
                                        "size_bytes": bench["size_bytes"],
                                        "gzip_bytes": bench["gzip_bytes"]},
                         "bench": bench}
    paths = write_report(str(tmp_path), {"name": "t", "model": "m",
                                         "data": {"name": "d"}}, results)
    rows = {v["variant"]: v for v in
            json.load(open(paths["report_json"]))["variants"]}
    assert rows["relu"]["xnnpack_partitions"] == 1
    assert rows["hs"]["xnnpack_partitions"] == 2
    assert rows["hs"]["ops_outside_xnnpack"] == "HARD_SWISH x1"
    text = open(paths["report_md"]).read()
    assert "- hs: HARD_SWISH x1 (100.0% of MACs delegated)" in text
    assert "- relu:" not in text


def test_inspect_warns_about_int8_hard_swish(flatbuffers):
    from tfcompress.inspect import format_report, inspect
    report = inspect(flatbuffers["hard_swish"])
    (warning,) = report["xnnpack_warnings"]
    assert warning["op"] == "HARD_SWISH" and warning["count"] == 1
    assert warning["indices"] == [2]
    text = format_report(report)
    assert "XNNPACK WARNING: 1 int8 HARD_SWISH op(s) (#2; layers act" in text
    relu = inspect(flatbuffers["relu"])
    assert relu["xnnpack_warnings"] == []
    assert "XNNPACK WARNING" not in format_report(relu)


def test_inspect_command_prints_the_warning(flatbuffers):
    r = subprocess.run([sys.executable, "-m", "tfcompress", "inspect",
                        flatbuffers["hard_swish"]], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__)))))
    assert r.returncode == 0, r.stderr[-1500:]
    assert "XNNPACK WARNING: 1 int8 HARD_SWISH" in r.stdout


def test_no_partition_is_said_plainly():
    text = delegation.format_delegation(
        {"partitions": 0, "total_ops": 7, "ops_outside": [{}] * 7,
         "delegated_mac_share": 0.0, "xnnpack": True})
    assert text.startswith("XNNPACK: no partition: the runtime delegated "
                           "none of the 7 ops")


def test_inspect_warning_names_each_known_splitting_op_once():
    from tfcompress.inspect.report import xnnpack_warnings
    ops = [{"index": 0, "op": "QUANTIZE", "layer": "", "inputs": ["FLOAT32"]},
           {"index": 1, "op": "HARD_SWISH", "layer": "a", "inputs": ["INT8"]},
           {"index": 2, "op": "HARD_SWISH", "layer": "b", "inputs": ["INT8"]},
           {"index": 3, "op": "HARD_SWISH", "layer": "c",
            "inputs": ["FLOAT32"]},
           {"index": 4, "op": "SOFTMAX", "layer": "pred", "inputs": ["INT8"]},
           {"index": 5, "op": "SHAPE", "layer": "se", "inputs": ["INT8"]},
           {"index": 6, "op": "STRIDED_SLICE", "layer": "se",
            "inputs": ["INT32"]},
           {"index": 7, "op": "MEAN", "layer": "gap", "inputs": ["INT8"]}]
    got = {w["op"]: w for w in xnnpack_warnings(ops)}
    assert set(got) == {"HARD_SWISH", "SOFTMAX", "SHAPE"}
    assert "shape at run time" in got["SHAPE"]["note"]
    assert got["HARD_SWISH"]["indices"] == [1, 2]     # the float one is not
    assert got["SOFTMAX"]["layers"] == ["pred"]
