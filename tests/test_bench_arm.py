"""The device-side runner on arm64 for real: Debian bookworm arm64 (as on
Raspberry Pi OS) under qemu user-mode emulation with tflite-runtime 2.14
and numpy<2; its int8 outputs must match the x86 LiteRT outputs."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tfcompress.bench import arm_root


def _unreachable(hosts):
    """The (host, port) pairs that refuse a TCP connection within 5 s."""
    out = []
    for host, port in hosts:
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError:
            out.append(f"{host}:{port}")
    return out


@pytest.fixture(scope="module")
def root():
    """The cached arm64 root, or one built now. Skips only when a
    prerequisite is missing (host tools, or the network for a first
    build); a build that fails for any other reason fails the tests."""
    if os.path.exists(os.path.join(arm_root.DEFAULT_ROOT,
                                   ".tfcompress-ready")):
        return arm_root.build_root()
    missing = arm_root.tools_missing()
    if missing:
        pytest.skip(f"host tools {missing} not installed (make test "
                    "installs debootstrap and qemu-user-static as root)")
    offline = _unreachable([("deb.debian.org", 80), ("pypi.org", 443)])
    if offline:
        pytest.skip(f"no cached arm64 root and {offline} unreachable: the "
                    "first build downloads Debian packages and wheels")
    return arm_root.build_root()


@pytest.mark.slow
def test_runner_on_emulated_arm64_matches_x86(root, conv_int8, tmp_path):
    path, x, labels = conv_int8
    from tfcompress.inspect import inspect
    scale = inspect(path)["outputs"][0]["scale"]
    np.savez(tmp_path / "eval.npz", x=x, y=labels)
    common = [str(path), "--data", str(tmp_path / "eval.npz"), "--runs",
              "3", "--warmup-runs", "1"]
    x86 = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(arm_root.__file__),
                                      "runner.py"), *common,
         "--runtime", "ai_edge_litert", "--outputs",
         str(tmp_path / "x86.npy"), "--json", str(tmp_path / "x86.json")],
        capture_output=True, text=True, timeout=300)
    assert x86.returncode == 0, x86.stderr[-1500:]
    arm = arm_root.run_runner(root, [*common, "--runtime", "tflite_runtime",
                                     "--outputs", str(tmp_path / "arm.npy"),
                                     "--json", str(tmp_path / "arm.json")])
    assert arm.returncode == 0, arm.stderr[-1500:]
    result = json.loads((tmp_path / "arm.json").read_text())
    env = result["environment"]
    assert env["machine"] == "aarch64" and env["emulated"] is True
    assert env["runtime"] == "tflite_runtime"
    assert env["runtime_version"] == "2.14.0"
    a = np.load(tmp_path / "arm.npy")
    b = np.load(tmp_path / "x86.npy")
    steps = np.abs(a - b) / scale
    differing = int(np.sum(steps > 1e-6))
    print(f"arm64 vs x86: {differing} of {a.size} outputs differ; max "
          f"{steps.max():.2f} quantization steps")
    assert steps.max() <= 1.0 + 1e-6


@pytest.mark.slow
def test_op_version_too_new_for_tflite_runtime_is_one_clear_error(root,
                                                                  dyn_fc):
    """TF 2.21 writes FULLY_CONNECTED v12 for dynamic-range models, which
    tflite-runtime 2.14 cannot load: the runner says so in one line."""
    from tfcompress.inspect import inspect
    report = inspect(dyn_fc)
    assert report["op_versions"]["FULLY_CONNECTED"] >= 12
    assert report["runtime_compatibility"]
    r = arm_root.run_runner(root, [str(dyn_fc), "--runtime",
                                   "tflite_runtime", "--runs", "1"])
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("runner:")]
    assert len(lines) == 1
    assert "FULLY_CONNECTED" in lines[0] and "12" in lines[0]
    assert "LiteRT" in lines[0]


def _tiny_int8_conv(tmp_path, n=40):
    import keras
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(i)
    h = keras.layers.MaxPooling2D()(h)
    o = keras.layers.Dense(5)(keras.layers.Flatten()(h))
    x = np.random.default_rng(0).random((n, 12, 12, 1), dtype=np.float32)
    model = keras.Model(i, o)
    path = tmp_path / "conv_int8.tflite"
    convert(model, "int8", representative_data=x, input_type="int8",
            output_type="int8", output_path=path)
    return path, x, model


@pytest.fixture(scope="module")
def conv_int8(tmp_path_factory):
    """The tiny int8 conv flatbuffer (integer input and output) on 40
    samples, the samples, and the Keras model's labels for them: converted
    once for every arm64 test of this file."""
    path, x, model = _tiny_int8_conv(tmp_path_factory.mktemp("conv"))
    return path, x, model.predict(x, verbose=0).argmax(1)


@pytest.fixture(scope="module")
def dyn_fc(tmp_path_factory):
    """A dynamic-range Dense model: TF 2.21 writes FULLY_CONNECTED v12,
    which tflite-runtime 2.14 refuses to load."""
    import keras
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                          keras.layers.Dense(64)])
    path = tmp_path_factory.mktemp("dyn") / "dyn.tflite"
    convert(m, "dynamic", output_path=path)
    return path


@pytest.fixture(scope="module")
def tflite_runtime_rows(root, conv_int8, dyn_fc):
    """One cross_check of the conv model and the refused dynamic-range
    model on tflite-runtime 2.14 in the root: ``{model: row}``."""
    from tfcompress.bench.cross_check import cross_check
    path, x, _ = conv_int8
    rows = cross_check({"dyn": dyn_fc, "conv": path}, x, root=root,
                       runtimes=("tflite_runtime",))
    assert len(rows) == 2
    return {r["model"]: r for r in rows}


def test_count_steps_sorts_outputs_by_quantization_steps():
    from tfcompress.bench.cross_check import count_steps
    step = 0.25
    a = np.array([1.0, 1.25, 0.0, -0.5, 2.0])
    b = np.array([1.0, 1.0, 0.25, 0.5, 2.0])
    assert count_steps(a, b, step) == {"equal": 2, "off_by_one": 2,
                                       "worse": 1, "total": 5,
                                       "max_steps": 4}


def test_output_step_reads_the_int8_output_scale(tmp_path):
    from tfcompress.bench.cross_check import output_step
    from tfcompress.inspect import inspect
    path, _, _ = _tiny_int8_conv(tmp_path, n=8)
    scale = inspect(path)["outputs"][0]["scale"]
    assert scale and output_step(path) == pytest.approx(scale)


def test_cross_check_table_labels_runtimes_with_their_version():
    from tfcompress.bench.cross_check import _row, format_table
    counts = {"equal": 9, "off_by_one": 1, "worse": 0, "total": 10,
              "max_steps": 1, "within_one": 1.0}
    rows = [_row("cnn", "tflite_runtime", runtime_version="2.14.0",
                 vs_x86_builtin={"within_one": 0.9, "max_steps": 2},
                 **counts),
            _row("cnn", "ai_edge_litert", error="no wheel | for aarch64")]
    lines = format_table(rows).splitlines()
    assert lines[2] == ("| cnn | tflite_runtime 2.14.0 | 9 | 1 | 0 | 10 | "
                        "100.00% | 90.00% | max 1 step(s) (vs built-in: "
                        "2) |")
    assert lines[3] == ("| cnn | ai_edge_litert | - | - | - | - | - | - "
                        "| no wheel / for aarch64 |")


@pytest.mark.slow
def test_cross_check_counts_int8_outputs_of_tiny_conv_on_arm64(
        tflite_runtime_rows):
    r = tflite_runtime_rows["conv"]
    assert r["error"] is None, r["error"]
    assert r["runtime"] == "tflite_runtime"
    assert r["runtime_version"] == "2.14.0"
    assert r["x86_runtime"].startswith("ai_edge_litert")
    assert r["total"] == 40 * 5
    assert r["equal"] + r["off_by_one"] + r["worse"] == r["total"]
    assert r["within_one"] >= 0.99
    assert r["refused_ops"] == []
    builtin = r["vs_x86_builtin"]
    assert builtin["equal"] + builtin["off_by_one"] + builtin["worse"] == \
        builtin["total"] == 40 * 5
    assert builtin["within_one"] >= 0.99


@pytest.mark.slow
def test_cross_check_gives_one_line_row_for_a_refused_op_version(
        tflite_runtime_rows):
    """A model tflite-runtime 2.14 cannot load is a row with one error line
    naming the refused op version, and the other models of the same call
    still run (the conv row of the fixture's one call is checked in full
    above)."""
    by = tflite_runtime_rows
    assert by["dyn"]["error"] and "\n" not in by["dyn"]["error"]
    assert "FULLY_CONNECTED" in by["dyn"]["error"]
    assert by["dyn"]["refused_ops"] == ["FULLY_CONNECTED v12"]
    assert by["dyn"]["total"] is None
    assert by["conv"]["error"] is None and by["conv"]["total"] == 40 * 5


@pytest.mark.slow
def test_cross_check_on_litert_aarch64_in_the_root(root, conv_int8):
    """LiteRT's aarch64 wheel (numpy 2) runs in its own site folder of the
    root and agrees with x86 LiteRT within one quantization step."""
    from tfcompress.bench.cross_check import cross_check
    try:
        arm_root.build_litert_site(root)
    except arm_root.ArmRootError as e:
        if "pip download" not in str(e):
            raise
        pytest.skip(f"LiteRT's aarch64 wheel could not be downloaded: {e}")
    path, x, _ = conv_int8
    [r] = cross_check({"conv": path}, x, root=root,
                      runtimes=("ai_edge_litert",))
    assert r["error"] is None, r["error"]
    assert r["runtime"] == "ai_edge_litert"
    assert r["machine"] == "aarch64 (qemu cortex-a72)"
    assert r["total"] == 40 * 5
    assert r["within_one"] >= 0.99


def test_concurrent_build_waits_for_the_other_and_reuses_its_root(
        tmp_path, monkeypatch):
    import threading
    root = str(tmp_path / "root")
    builds = []
    monkeypatch.setattr(arm_root, "_build_root",
                        lambda r, suite: builds.append(r) or r)
    result = []
    with arm_root._build_lock(root):      # another process is building
        t = threading.Thread(target=lambda: result.append(
            arm_root.build_root(root)))
        t.start()
        t.join(0.5)
        assert t.is_alive(), "build_root did not wait for the other build"
        os.makedirs(root)
        open(os.path.join(root, ".tfcompress-ready"), "w").close()
    t.join(10)
    assert result == [root] and builds == []


@pytest.mark.slow
def test_tflite_runtime_2_14_loads_packed_int4_weights_inspect_does_not_warn(
        root, tmp_path):
    """4-bit fake-quant Conv2D, DepthwiseConv2D and Dense convert to INT4
    filters (CONV_2D v7, DEPTHWISE_CONV_2D v7, FULLY_CONNECTED v10), which
    tflite-runtime 2.14 runs: inspect has nothing to warn about."""
    import keras
    from tfcompress import quantize
    from tfcompress.convert import convert
    from tfcompress.inspect import inspect
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 2)),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.DepthwiseConv2D(3),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
    qat = quantize.quantize_model(m, quantize.NBitScheme(4, 8))
    x = np.random.default_rng(0).random((16, 8, 8, 2), dtype=np.float32)
    qat(x, training=True)
    path = tmp_path / "int4.tflite"
    convert(qat, "int8", representative_data=x, output_path=path)
    report = inspect(path)
    assert {w["dtype"] for w in report["weights"]
            if len(w["shape"]) >= 2} == {"INT4"}
    assert report["runtime_compatibility"] == []
    r = arm_root.run_runner(root, [str(path), "--runtime", "tflite_runtime",
                                   "--runs", "1", "--warmup-runs", "0"])
    assert r.returncode == 0, r.stderr[-500:]


@pytest.fixture(scope="module")
def x86_tflite_runtime_python():
    """The Python of the x86_64 tflite-runtime 2.14 venv; skips when it
    has not been created (it is built from PyPI, which tests do not
    reach)."""
    from tfcompress.bench import x86_tflite_runtime
    python = x86_tflite_runtime.venv_python()
    if python is None:
        pytest.skip(f"no x86_64 tflite-runtime 2.14 venv in "
                    f"{x86_tflite_runtime.DEFAULT_VENV} (benchmarks/"
                    "zoo_arm.py --x86-tflite-runtime creates it from PyPI)")
    return python


def test_same_runtime_table_compares_arm64_with_x86_tflite_runtime():
    from tfcompress.bench.cross_check import (_row,
                                              format_same_runtime_table)

    def counts(equal, off, worse):
        total = equal + off + worse
        return {"equal": equal, "off_by_one": off, "worse": worse,
                "total": total, "max_steps": 2,
                "within_one": (equal + off) / total}
    same = {"runtime": "tflite_runtime", "runtime_version": "2.14.0",
            "machine": "x86_64", "partitions": 0, "error": None}
    rows = [_row("cnn", "tflite_runtime", runtime_version="2.14.0",
                 x86_same_runtime=same,
                 vs_x86_same_runtime={"xnnpack": counts(10, 0, 0),
                                      "builtin": counts(9, 1, 0)},
                 x86_same_runtime_vs_litert={"xnnpack": counts(6, 2, 2),
                                             "builtin": counts(7, 3, 0)}),
            _row("cnn", "ai_edge_litert", runtime_version="2.3.0"),
            _row("mlp", "tflite_runtime", runtime_version="2.14.0",
                 x86_same_runtime={"error": "x86 tflite_runtime: no | op"})]
    lines = format_same_runtime_table(rows).splitlines()
    assert len(lines) == 4
    assert lines[2] == (
        "| cnn | tflite_runtime 2.14.0 | tflite_runtime 2.14.0 (x86_64, 0 "
        "XNNPACK partitions) | 10 | 0 | 0 | 10 | 100.00% | 9/10 equal, "
        "100.00% within one step | 6/10 equal, 80.00% within one step | "
        "7/10 equal, 100.00% within one step |")
    assert lines[3] == ("| mlp | tflite_runtime 2.14.0 | - | - | - | - | - "
                        "| - | - | - | x86 tflite_runtime: no / op |")


def test_x86_tflite_runtime_venv_without_a_python_says_which(tmp_path):
    from tfcompress.bench import x86_tflite_runtime
    with pytest.raises(x86_tflite_runtime.VenvError, match="-m venv"):
        x86_tflite_runtime.build_venv(str(tmp_path / "venv"),
                                      python=str(tmp_path / "no-python"))
    assert x86_tflite_runtime.venv_python(str(tmp_path / "venv")) is None


def test_x86_tflite_runtime_2_14_runs_tiny_conv_within_a_step_of_litert(
        x86_tflite_runtime_python, conv_int8, tmp_path):
    from tfcompress.bench import runner, x86_tflite_runtime
    from tfcompress.bench.cross_check import count_steps, output_step
    path, x, _ = conv_int8
    np.savez(tmp_path / "x.npz", x=x)
    r = x86_tflite_runtime.run_runner(
        x86_tflite_runtime_python,
        [str(path), "--data", str(tmp_path / "x.npz"), "--runtime",
         "tflite_runtime", "--runs", "1", "--warmup-runs", "0",
         "--outputs", str(tmp_path / "y.npy"), "--json",
         str(tmp_path / "y.json")])
    assert r.returncode == 0, r.stderr[-1500:]
    env = json.loads((tmp_path / "y.json").read_text())["environment"]
    assert (env["runtime"], env["runtime_version"], env["machine"],
            env["emulated"]) == ("tflite_runtime", "2.14.0", "x86_64", False)
    assert env["numpy"].startswith("1.")
    litert = runner.benchmark(str(path), str(tmp_path / "x.npz"),
                              runtime="ai_edge_litert", warmup_runs=0,
                              runs=1, return_outputs=True)["_outputs"]
    c = count_steps(np.load(tmp_path / "y.npy"), litert, output_step(path))
    assert c["total"] == 40 * 5
    assert c["equal"] + c["off_by_one"] == c["total"]


@pytest.mark.slow
def test_cross_check_compares_arm64_tflite_runtime_with_it_on_x86(
        root, conv_int8, x86_tflite_runtime_python):
    from tfcompress.bench.cross_check import cross_check
    path, x, _ = conv_int8
    [r] = cross_check({"conv": path}, x, root=root,
                      runtimes=("tflite_runtime",),
                      x86_python=x86_tflite_runtime_python)
    assert r["error"] is None, r["error"]
    same = r["x86_same_runtime"]
    assert same["error"] is None
    assert (same["runtime"], same["runtime_version"], same["machine"]) == \
        ("tflite_runtime", "2.14.0", "x86_64")
    for counts in (*r["vs_x86_same_runtime"].values(),
                   *r["x86_same_runtime_vs_litert"].values()):
        assert counts["total"] == 40 * 5
        assert counts["equal"] + counts["off_by_one"] + counts["worse"] == \
            counts["total"]
        assert counts["within_one"] >= 0.99


def _dump(path, x, xnnpack=True):
    from tfcompress.bench import runner
    return runner.every_output(str(path), {"x": x}, "ai_edge_litert",
                               xnnpack)


def test_every_output_copy_outputs_each_op_result_and_the_same_final(
        tmp_path):
    from tfcompress.bench import runner
    from tfcompress.bench.cross_check import _same_final
    from tfcompress.bench.first_difference import with_every_output
    from tfcompress.inspect.model_reader import read_model
    path, x, _ = _tiny_int8_conv(tmp_path, n=6)
    raw = path.read_bytes()
    graph = read_model(raw)["subgraphs"][0]
    copy = tmp_path / "every.tflite"
    copy.write_bytes(with_every_output(raw))
    dump = _dump(copy, x)
    produced = {t for op in graph["operators"] for t in op["outputs"]}
    assert set(dump) == {f"t{t}" for t in produced}
    assert len(produced) > 3
    outputs = runner.benchmark(str(path), {"x": x}, "ai_edge_litert",
                               runs=1, warmup_runs=0,
                               return_outputs=True)["_outputs"]
    assert _same_final(dump, outputs, graph)
    assert not _same_final(dump, outputs + 1.0, graph)


def test_every_output_copy_is_written_and_run_once_per_model(tmp_path):
    """Each arm64 runtime's trace of a model compares with the same x86
    dump: the copy is written once and run once per x86 runtime."""
    from tfcompress.bench import runner
    from tfcompress.bench.first_difference import EveryOutputCopy
    path, x, _ = _tiny_int8_conv(tmp_path, n=3)
    data = tmp_path / "x.npz"
    np.savez(data, x=x)
    every = EveryOutputCopy(str(path), str(data), str(tmp_path))
    assert os.path.isfile(every.path) and every.path != str(path)
    written = os.stat(every.path).st_mtime_ns
    first = every.dump("ai_edge_litert")
    assert every.dump("ai_edge_litert") is first
    assert os.stat(every.path).st_mtime_ns == written
    want = runner.every_output(every.path, str(data), "ai_edge_litert")
    assert sorted(first) == sorted(want)
    for key in want:
        np.testing.assert_array_equal(first[key], want[key])
    from tfcompress.inspect.model_reader import read_model
    assert every.model["subgraphs"][0]["outputs"] == read_model(
        path.read_bytes())["subgraphs"][0]["outputs"]


def test_fresh_differences_name_the_op_a_difference_starts_at_only(
        tmp_path):
    """One element of one op's output changed, and every later op's output
    changed on that input too (passed on): only the first op is named."""
    from tfcompress.bench.first_difference import (fresh_differences,
                                                   with_every_output)
    from tfcompress.inspect.model_reader import read_model
    path, x, _ = _tiny_int8_conv(tmp_path, n=4)
    model = read_model(path.read_bytes())
    graph, names = model["subgraphs"][0], [o["name"] for o in
                                           model["opcodes"]]
    copy = tmp_path / "every.tflite"
    copy.write_bytes(with_every_output(path.read_bytes()))
    a = _dump(copy, x)
    b = {k: v.copy() for k, v in a.items()}
    conv = next(i for i, op in enumerate(graph["operators"])
                if names[op["opcode"]] == "CONV_2D")
    for op in graph["operators"][conv:]:
        key = f"t{op['outputs'][0]}"
        b[key][2].flat[0] += 1          # input 2 only
    assert fresh_differences(graph, names, a, a) == []
    [row] = fresh_differences(graph, names, a, b)
    assert (row["op_index"], row["op"]) == (conv, "CONV_2D")
    assert (row["images"], row["elements"], row["max_steps"]) == (1, 1, 1)


def test_cross_check_table_says_where_a_traced_difference_starts():
    from tfcompress.bench.cross_check import _row, format_table
    counts = {"equal": 7, "off_by_one": 1, "worse": 2, "total": 10,
              "max_steps": 3, "within_one": 0.8}
    first = {"fresh_ops": 2, "ops": [
        {"op_index": 122, "op": "MUL", "tensor": "se/Mul;fused",
         "images": 9, "elements": 9, "max_steps": 1}]}
    row = _row("effnet", "ai_edge_litert", runtime_version="2.3.0",
               vs_x86_builtin={"within_one": 0.5, "max_steps": 9},
               first_difference=first, **counts)
    assert format_table([row]).splitlines()[2].endswith(
        "max 3 step(s) (vs built-in: 9); starts at op 122 MUL (se/Mul): 9 "
        "element(s) in 9 input(s), at most 1 step(s), and 1 more op(s) |")


@pytest.mark.slow
def test_first_difference_runs_the_every_output_copy_on_arm64(
        root, conv_int8, tmp_path):
    """The traced run itself: the copy runs in the root, computes the
    model's own final outputs there (else an error is returned), and its
    dump is compared op by op with x86 LiteRT's."""
    from tfcompress.bench.cross_check import _ArmRun
    path, x, _ = conv_int8
    data, outputs = tmp_path / "x.npz", tmp_path / "arm.npy"
    np.savez(data, x=x)
    r = arm_root.run_runner(root, [str(path), "--data", str(data),
                                   "--runtime", "tflite_runtime", "--runs",
                                   "1", "--outputs", str(outputs)])
    assert r.returncode == 0, r.stderr[-500:]
    arm = np.load(outputs)
    from tfcompress.bench.first_difference import EveryOutputCopy
    run = _ArmRun(root=root, site=None, cpu=arm_root.DEFAULT_CPU,
                  timeout=600, tmp=str(tmp_path), log=print)
    every = EveryOutputCopy(str(path), str(data), str(tmp_path))
    first = run.first_difference("tflite_runtime", every, arm)
    assert "error" not in first, first
    from tfcompress.inspect.model_reader import read_model
    model = read_model(path.read_bytes())
    ops = model["subgraphs"][0]["operators"]
    assert first["fresh_ops"] == len(first["ops"])
    for op in first["ops"]:
        assert op["op"] == model["opcodes"][ops[op["op_index"]][
            "opcode"]]["name"]
        assert op["images"] >= 1 and op["elements"] >= 1
