"""The inspector must reject any malformed flatbuffer with a clear error,
never crash the process or hang."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfcompress.inspect import FlatbufferError, inspect


@pytest.fixture(scope="module")
def good_model(tmp_path_factory):
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4),
                          keras.layers.ReLU(), keras.layers.Dense(3)])
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    data = conv.convert()
    path = tmp_path_factory.mktemp("m") / "m.tflite"
    path.write_bytes(data)
    return data, path


def _mutations(data):
    n = len(data)
    out = [("empty", b""), ("one byte", data[:1]), ("seven bytes", data[:7]),
           ("header only", data[:8]), ("wrong identifier",
                                       data[:4] + b"XXXX" + data[8:]),
           ("random bytes", np.random.default_rng(0).integers(
               0, 256, n, dtype=np.uint8).tobytes()),
           ("zeros", bytes(n)), ("ones", b"\xff" * n)]
    for frac in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99):
        out.append((f"truncated at {frac:.0%}", data[:int(n * frac)]))
    # huge root offset / vtable offsets
    out.append(("huge root offset", b"\xff\xff\xff\x7f" + data[4:]))
    rng = np.random.default_rng(1)
    for i in range(12):
        b = bytearray(data)
        for pos in rng.integers(0, min(n, 400), 6):
            b[pos] ^= 0xFF
        out.append((f"flipped header bytes #{i}", bytes(b)))
    # a vector length field set huge: find 4-byte ints equal to small counts
    b = bytearray(data)
    root = int.from_bytes(b[0:4], "little")
    b[root:root + 4] = (2 ** 31 - 1).to_bytes(4, "little")
    out.append(("huge vtable offset", bytes(b)))
    for k in range(8, min(n - 4, 200), 24):
        b = bytearray(data)
        b[k:k + 4] = (0x7FFFFFF0).to_bytes(4, "little")
        out.append((f"huge value at {k}", bytes(b)))
    return out


def test_at_least_20_malformed_buffers_rejected_cleanly(good_model):
    data, _ = good_model
    cases = _mutations(data)
    assert len(cases) >= 20
    rejected = 0
    for name, bad in cases:
        try:
            report = inspect(bad)
        except FlatbufferError as e:
            lines = str(e).strip().splitlines()
            assert len(lines) == 1 and len(lines[0]) > 20, (name, str(e))
            rejected += 1
        else:
            # Some flips hit padding or names: then the report must still
            # be internally consistent.
            _assert_consistent(report, name)
    assert rejected >= 20


def _assert_consistent(report, name):
    """Cross-checks of an inspect() report that hold for any model."""
    from tfcompress.inspect import format_report
    assert report["op_counts"] and sum(report["op_counts"].values()) == len(
        report["ops"]), name
    assert set(report["op_versions"]) == set(report["op_counts"]), name
    for op in report["ops"]:
        assert report["op_versions"][op["op"]] >= op["version"] >= 1, name
    for w in report["weights"]:
        assert w["params"] == int(np.prod(w["shape"])), (name, w)
        if w["nonzero"] is not None:
            assert 0 <= w["nonzero"] <= w["params"], (name, w)
            assert 1 <= w["distinct_values"] <= w["params"], (name, w)
    assert report["params"] == sum(w["params"] for w in report["weights"])
    assert report["nonzero_params"] <= report["params"], name
    assert report["fully_integer"] == (not report["float_ops"]), name
    assert report["inputs"] and report["outputs"], name
    assert format_report(report).count("\n") >= 6 + len(report["weights"])


def test_consistency_check_accepts_the_good_model(good_model):
    data, _ = good_model
    _assert_consistent(inspect(data), "good model")


def test_malformed_files_do_not_hang_or_crash(good_model, tmp_path):
    """Runs the inspector on every malformed file in a child process with a
    timeout: a segfault or a hang fails the test."""
    data, _ = good_model
    paths = []
    for i, (_, bad) in enumerate(_mutations(data)):
        p = tmp_path / f"bad{i}.tflite"
        p.write_bytes(bad)
        paths.append(str(p))
    code = ("import sys\nfrom tfcompress.inspect import inspect, "
            "FlatbufferError\nfor p in sys.argv[1:]:\n    try:\n"
            "        inspect(p)\n    except FlatbufferError:\n        pass\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code, *paths],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok"


def test_good_model_report(good_model):
    data, path = good_model
    r = inspect(path)
    assert r["size_bytes"] == os.path.getsize(path)
    assert r["op_counts"] == {"FULLY_CONNECTED": 2, "RELU": 1} or \
        r["op_counts"].get("FULLY_CONNECTED") == 2
    kernels = sorted(w["shape"] for w in r["weights"] if len(w["shape"]) == 2)
    assert kernels == [[3, 4], [4, 6]]      # TFLite stores (out, in)
    assert r["params"] >= 6 * 4 + 4 * 3
    assert not r["fully_integer"]       # a float model
    assert r["inputs"][0]["shape"] == [1, 6]


def test_inspect_imports_no_tensorflow(good_model):
    _, path = good_model
    code = ("import sys\nsys.modules['tensorflow'] = None\n"
            "sys.modules['keras'] = None\n"
            "from tfcompress.inspect import inspect\n"
            f"print(inspect({str(path)!r})['params'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-1500:]
    assert int(r.stdout.strip()) >= 36


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        inspect(tmp_path / "nope.tflite")
    with pytest.raises(ValueError, match="folder"):
        inspect(tmp_path)


@pytest.mark.parametrize("name,head", [("m.keras", b"PK\x03\x04"),
                                       ("m.h5", b"\x89HDF\r\n\x1a\n")])
def test_a_keras_model_file_says_to_convert_it_first(tmp_path, name, head):
    # it said only that the file identifier was not TFLite's
    path = tmp_path / name
    path.write_bytes(head + bytes(64))
    with pytest.raises(FlatbufferError, match=r"is a Keras model file, not "
                       r"a TFLite flatbuffer: convert it first \(tfcompress "
                       r"convert .*--output model.tflite\)"):
        inspect(str(path))
