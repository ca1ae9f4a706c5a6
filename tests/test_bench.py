import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfcompress.bench import (BenchError, benchmark_model, benchmark_models,
                              write_reports)

RUNNER = os.path.join(os.path.dirname(__file__), "..", "tfcompress", "bench",
                      "runner.py")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A float and an int8 model of a tiny classifier, plus eval data."""
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    d = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    m = keras.Sequential([keras.Input((8, 8, 1)),
                          keras.layers.Conv2D(4, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
    ref = m.predict(x, verbose=0)
    y = ref.argmax(1)
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    (d / "float.tflite").write_bytes(conv.convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(40))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (d / "int8.tflite").write_bytes(conv.convert())
    np.savez(d / "eval.npz", x=x, y=y, reference=ref)
    return d


def test_runner_needs_no_tensorflow(models):
    code = ("import sys, runpy\nsys.modules['tensorflow'] = None\n"
            "sys.modules['keras'] = None\n"
            f"sys.argv = ['runner.py', {str(models / 'int8.tflite')!r}, "
            f"'--data', {str(models / 'eval.npz')!r}, '--runs', '5']\n"
            f"runpy.run_path({RUNNER!r}, run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    result = json.loads(r.stdout)
    assert result["environment"]["runtime"] == "ai_edge_litert"
    assert result["accuracy"]["reference_top1_agreement"] >= 0.9


def test_measurements_and_accuracy(models):
    r = benchmark_model(str(models / "float.tflite"),
                        data=str(models / "eval.npz"), runs=20)
    lat = r["latency"]
    assert lat["count"] >= 20
    assert lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= \
        lat["p99_ms"] <= lat["max_ms"]
    assert r["accuracy"]["top1_accuracy"] == 1.0     # labels = its argmax
    assert r["accuracy"]["reference_max_abs_error"] < 1e-4
    assert r["size_bytes"] == os.path.getsize(models / "float.tflite")
    assert r["peak_rss_mb"] > 0 and r["threads"] == 1
    assert r["environment"]["machine"]


def test_int8_input_is_quantized_with_model_scale(models):
    r = benchmark_model(str(models / "int8.tflite"),
                        data=str(models / "eval.npz"), runs=5,
                        xnnpack=False)
    assert r["input"]["dtype"] == "int8" and r["xnnpack"] is False
    assert r["accuracy"]["reference_top1_agreement"] >= 0.9


def test_bad_inputs(models, tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        benchmark_model(str(tmp_path / "missing.tflite"))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(BenchError, match="not a TFLite flatbuffer"):
        benchmark_model(str(bad))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 5, 5, 1), np.float32))
    with pytest.raises(BenchError, match="expects"):
        benchmark_model(str(models / "float.tflite"), data=str(wrong))
    with pytest.raises(BenchError, match="no array 'x'"):
        nox = tmp_path / "nox.npz"
        np.savez(nox, y=np.zeros(3))
        benchmark_model(str(models / "float.tflite"), data=str(nox))


@pytest.mark.parametrize("setting, message", [
    ({"runs": 0}, "runs must be an integer of at least 1, got 0"),
    ({"runs": "5"}, "runs must be an integer of at least 1, got '5'"),
    ({"threads": 1.5}, "threads must be an integer of at least 1"),
    ({"warmup_runs": -1}, "warmup_runs must be an integer of at least 0"),
    ({"warmup_seconds": -1.0}, r"warmup_seconds must be a number of seconds \(>= 0\)"),
    ({"min_seconds": "1"}, r"min_seconds must be a number of seconds \(>= 0\)"),
    ({"max_seconds": 0}, r"max_seconds must be a number of seconds \(> 0\)"),
    ({"xnnpack": "no"}, "xnnpack must be True or False, got 'no'"),
])
def test_device_side_benchmark_refuses_timing_settings_of_the_wrong_kind(
        models, setting, message):
    # in this process, as on a device: runs=0 used to time one run and
    # xnnpack="no" to read as on
    from tfcompress.bench import benchmark
    with pytest.raises(BenchError, match=message):
        benchmark(str(models / "float.tflite"), **setting)


def test_device_side_runner_cli_refuses_zero_runs(models):
    r = subprocess.run([sys.executable, RUNNER, str(models / "float.tflite"),
                        "--runs", "0"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == \
        "runner: error: runs must be an integer of at least 1, got 0"


def test_reports(models, tmp_path):
    results = benchmark_models([str(models / "float.tflite"),
                                str(models / "int8.tflite")],
                               data=str(models / "eval.npz"), runs=5,
                               progress=False)
    paths = write_reports(results, tmp_path)
    md = open(paths["md"]).read()
    assert "float.tflite" in md and "1.00x" in md
    assert open(paths["png"], "rb").read(4) == b"\x89PNG"
    assert len(open(paths["csv"]).read().splitlines()) == 3
    assert json.load(open(paths["json"]))["results"][1]["model"] == \
        "int8.tflite"


def test_report_ratios_divide_the_float32_model_even_when_not_first(
        models):
    from tfcompress.bench import markdown
    results = benchmark_models([str(models / "int8.tflite"),
                                str(models / "float.tflite")], runs=3,
                               progress=False)
    md = markdown(results)
    header = next(l for l in md.splitlines() if l.startswith("| model"))
    assert header.split("|")[2:4] == [" vs float32 (gzip) ",
                                      " vs float32 (raw) "]
    int8_row = next(l for l in md.splitlines()
                    if l.startswith("| int8.tflite"))
    float_bytes = results[1]["size_bytes"]
    assert int8_row.split("|")[2].strip() == \
        f"{float_bytes / results[0]['gzip_bytes']:.1f}x"
    assert int8_row.split("|")[3].strip() == \
        f"{float_bytes / results[0]['size_bytes']:.1f}x"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_cli_bench_and_errors(models, tmp_path):
    r = _cli("bench", str(models / "float.tflite"), str(models /
             "int8.tflite"), "--eval_data", str(models / "eval.npz"),
             "--runs", "5", "--report_dir", str(tmp_path))
    assert r.returncode == 0, r.stderr[-1000:]
    assert "| int8.tflite |" in r.stdout
    r = _cli("bench", str(tmp_path / "none.tflite"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    # the ssh client itself ran and its connection error is what is shown
    r = _cli("bench", str(models / "float.tflite"), "--host",
             "nobody@127.0.0.1", "--port", "1")
    assert r.returncode == 2, r.stderr[-1000:]
    assert "ssh nobody@127.0.0.1 failed: ssh: connect to host 127.0.0.1 " \
        "port 1: Connection refused" in r.stderr
    assert "Traceback" not in r.stderr
    # an option-like host is refused as bad input, never handed to ssh
    r = _cli("bench", str(models / "float.tflite"),
             "--host=-oProxyCommand=touch " + str(tmp_path / "ran"))
    assert r.returncode == 2
    assert "starts with '-'" in r.stderr and "[user@]host[:port]" in r.stderr
    assert not (tmp_path / "ran").exists()
    assert "Traceback" not in r.stderr


def test_a_model_xnnpack_refuses_says_to_turn_it_off(tmp_path):
    # an int8 model stored sparse: "the runtime cannot load this model:
    # failed to delegate FULLY_CONNECTED ..." with no way out
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32)])
    kernel, bias = model.layers[0].get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.9)] = 0.0
    model.layers[0].set_weights([kernel, bias])
    x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    path = str(tmp_path / "sparse.tflite")
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT,
                               tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    converter.representative_dataset = lambda: ([x[i:i + 1]]
                                                for i in range(len(x)))
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with open(path, "wb") as f:
        f.write(converter.convert())
    from tfcompress.bench import benchmark
    with pytest.raises(BenchError, match=r"XNNPACK.*--noxnnpack"):
        benchmark(path, runs=2)
    assert benchmark(path, runs=2, xnnpack=False)["latency"]
