"""The CLI keeps TensorFlow's and the converter's log noise out of the
terminal, and still respects a user's own log level."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What TensorFlow, the MLIR converter and LiteRT print on their own.
NOISE = [
    r"cuInit",
    r"cuda drivers",
    r"cpu_feature_guard|This TensorFlow binary is optimized",
    r"absl::InitializeLog",
    r"fully_quantize: \d",
    r"inference_type: \d",
    r"Ignored output_format",
    r"Reading SavedModel",
    r"SavedModel load for tags",
    r"MLIR V1 optimization pass",
    r"Skipping runtime version metadata",
    r"Created TensorFlow Lite XNNPACK delegate",
    r"triggered tf\.function retracing",
    r"^[IWE]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]",
]


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL")}
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                  if p])
    env.update(extra)
    return env


def _noise_in(text):
    return [line for line in text.splitlines()
            if any(re.search(p, line) for p in NOISE)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import keras
    d = tmp_path_factory.mktemp("quiet")
    model = keras.Sequential([keras.Input((6, 6, 1)),
                              keras.layers.Conv2D(2, 3),
                              keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    model.save(d / "tiny.keras")
    np.savez(d / "data.npz",
             x=np.random.default_rng(0).random((8, 6, 6, 1), np.float32))
    return d


def test_convert_prints_no_tensorflow_noise(tiny_model):
    d = tiny_model
    r = subprocess.run(
        [sys.executable, "-m", "tfcompress", "convert", str(d / "tiny.keras"),
         "--mode", "int8", "--data", str(d / "data.npz"), "--samples", "8",
         "--output", str(d / "tiny.tflite")],
        capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (d / "tiny.tflite").exists()
    assert _noise_in(r.stdout + r.stderr) == []
    assert "wrote" in r.stdout


def test_python_convert_prints_no_converter_chatter(tiny_model):
    # TensorFlow's start-up lines come at import, before tfcompress runs;
    # what convert() itself causes (converter, LiteRT) stays out
    code = ("import sys, keras, numpy as np\n"
            "from tfcompress.convert import convert\n"
            f"m = keras.models.load_model({str(tiny_model / 'tiny.keras')!r})\n"
            f"x = np.load({str(tiny_model / 'data.npz')!r})['x']\n"
            "sys.stderr.write('MARK\\n'); sys.stderr.flush()\n"
            "r = convert(m, 'int8', representative_data=x)\n"
            "print(r.report['fully_integer'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "True"
    after = r.stderr.split("MARK", 1)[1]
    assert _noise_in(after) == [], after


def test_cli_keeps_a_users_own_log_level():
    code = ("import os; import tfcompress.cli; "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=_env(TF_CPP_MIN_LOG_LEVEL="0"),
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "0"


def test_cli_sets_a_quiet_log_level_by_default():
    code = ("import os; import tfcompress.cli; "
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "2"


CONVERTER_LINES = (b"W0000 00:00:1795942543.480030    8555 "
                   b"tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.\n"
                   b"fully_quantize: 0, inference_type: 6\n"
                   b"loc(\"conv\"): error: an explanation\n"
                   b"W1129 09:10:47.162105 140635594292096 module.py:157] "
                   b"a Python warning\n")


def test_successful_block_hides_converter_chatter(capfd):
    from tfcompress.quiet import native_stderr_filtered
    with native_stderr_filtered():
        os.write(2, CONVERTER_LINES)
    err = capfd.readouterr().err
    assert "fully_quantize" not in err and "Ignored output_format" not in err
    assert "an explanation" in err and "a Python warning" in err


def test_failed_block_shows_converter_chatter(capfd):
    from tfcompress.quiet import native_stderr_filtered
    with pytest.raises(RuntimeError):
        with native_stderr_filtered():
            os.write(2, CONVERTER_LINES)
            raise RuntimeError("conversion failed")
    err = capfd.readouterr().err
    assert "fully_quantize: 0" in err and "Ignored output_format" in err
    assert "an explanation" in err


def test_python_stderr_stays_live_during_capture(capfd):
    from tfcompress.quiet import native_stderr_filtered
    with native_stderr_filtered():
        os.write(2, b"a native line\n")
        print("progress 1/3", file=sys.stderr)
    err = capfd.readouterr().err
    # live: shown before the captured native line is replayed at the end
    assert err.index("progress 1/3") < err.index("a native line")


def test_log_handler_made_during_capture_keeps_working_after_it(capfd):
    # TensorFlow makes its logger's handler on first use, with the
    # sys.stderr of that moment: one made inside the block must not be left
    # writing to a closed stream ("--- Logging error ---") afterwards
    import logging
    from tfcompress.quiet import native_stderr_filtered
    logger = logging.getLogger("tfcompress_test_late_handler")
    logger.propagate = False
    with native_stderr_filtered():
        handler = logging.StreamHandler()
        logger.addHandler(handler)
    try:
        logger.warning("a warning after the block")
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert "Logging error" not in err, err
    assert "a warning after the block" in err


def test_quiet_and_run_headline_docstring_examples_run():
    import doctest

    import tfcompress.quiet
    import tfcompress.recipes.report   # the line `tfcompress run` prints
    for module in (tfcompress.quiet, tfcompress.recipes.report):
        result = doctest.testmod(module)
        assert result.attempted >= 1 and result.failed == 0, module


def test_live_filter_drops_noise_and_keeps_other_lines_in_order():
    # For long scripts: descriptor 2 filtered for the whole process, live.
    # TensorFlow's start-up lines vanish, other lines stay, in order, and
    # an uncaught exception's traceback still reaches the terminal.
    script = (
        "import os, sys\n"
        "from tfcompress.quiet import filter_native_stderr_live\n"
        "filter_native_stderr_live()\n"
        "import tensorflow as tf\n"
        "tf.config.list_physical_devices()\n"
        "os.write(2, b'fully_quantize: 0, inference_type: 6\\n')\n"
        "os.write(2, b'a native line\\n')\n"
        "print('progress 1/3', file=sys.stderr, flush=True)\n"
        "os.write(2, b'another native line\\n')\n"
        "raise RuntimeError('a failure')\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                         env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1, out.stderr
    assert _noise_in(out.stderr) == []
    lines = out.stderr.splitlines()
    assert lines[:3] == ["a native line", "progress 1/3",
                         "another native line"], out.stderr
    assert lines[3] == "Traceback (most recent call last):", out.stderr
    assert lines[-1] == "RuntimeError: a failure", out.stderr


def test_every_benchmark_script_filters_native_logs_when_run():
    import glob
    scripts = [p for p in glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))
               if os.path.basename(p) != "common.py"]
    missing = []
    for path in scripts:
        with open(path) as f:
            text = f.read()
        main_block = text.split('if __name__ == "__main__":', 1)[-1]
        if "filter_native_stderr_live()" not in main_block:
            missing.append(os.path.basename(path))
    assert scripts and missing == []


def test_converter_output_silenced_hides_prints_and_warnings_not_errors(
        capsys):
    import warnings
    from tfcompress.quiet import converter_output_silenced
    with converter_output_silenced():
        print("Saved artifact at '/tmp/x'. The following endpoints ...")
        warnings.warn("Statistics for quantized inputs were expected")
    out = capsys.readouterr()
    assert out.out == "" and "Statistics" not in out.err
    with pytest.raises(ValueError, match="bad model"):
        with converter_output_silenced():
            raise ValueError("bad model")


def _convert_cli(d, *flags):
    return subprocess.run(
        [sys.executable, "-m", "tfcompress", "convert", str(d / "tiny.keras"),
         "--output", str(d / "err.tflite"), *flags],
        capture_output=True, text=True, env=_env(), timeout=300)


@pytest.mark.parametrize("flags, names, not_names", [
    # no calibration data: the flag to give, not the Python argument
    ((), ["--data"], ["representative_data"]),
    # a float op left by a layer name that does not exist
    (("--float_layers", "nope"), ["--float_layers"], ["error: float_layers"]),
])
def test_a_convert_input_error_is_one_line_naming_cli_flags(
        tiny_model, flags, names, not_names):
    r = _convert_cli(tiny_model, *flags)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [l for l in r.stderr.splitlines()
             if not l.startswith("convert: ")]   # progress lines
    assert len(lines) == 1 and lines[0].startswith("tfcompress: error:"), \
        r.stderr
    for name in names:
        assert name in lines[0]
    for name in not_names:
        assert name not in lines[0]


def test_a_strict_failure_names_the_nostrict_flag(tmp_path):
    import keras
    # TFLite has no int8 kernel for the NEG op LayerNormalization makes
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.LayerNormalization()])
    model.save(tmp_path / "neg.keras")
    np.savez(tmp_path / "x.npz",
             x=np.random.default_rng(0).random((8, 4), np.float32))
    r = subprocess.run(
        [sys.executable, "-m", "tfcompress", "convert",
         str(tmp_path / "neg.keras"), "--data", str(tmp_path / "x.npz")],
        capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--nostrict" in r.stderr and "strict=False" not in r.stderr
    assert _noise_in(r.stderr) == [], r.stderr


def test_pruning_many_models_briefly_adds_no_retracing_warning(caplog):
    # a sweep, a tuner or a notebook prunes one model after another with
    # short fits; each model needs its own step and mask functions, which
    # is no reason to warn (Keras' own train function, traced for each
    # model too, warns as it does without tfcompress)
    import keras
    from tfcompress import prune
    x = np.ones((4, 6), np.float32)
    y = np.zeros((4, 2), np.float32)
    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(7):
            model = prune.prune_low_magnitude(
                keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]),
                prune.ConstantSparsity(0.5, 0, frequency=1))
            model.compile("sgd", "mse")
            model.fit(x, y, batch_size=4, verbose=0,
                      callbacks=[prune.UpdatePruningStep()])
    ours = [r.getMessage() for r in caplog.records
            if "retracing" in r.getMessage() and "Trainer" not in
            r.getMessage()]
    assert not ours
