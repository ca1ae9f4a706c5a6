import os
import subprocess
import sys

import pytest

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=300)


def test_help_lists_commands():
    r = _cli("--help")
    assert r.returncode == 0
    assert "tfcompress run" in r.stdout and "--set" in r.stdout


def test_unknown_command_is_one_line_exit_2():
    r = _cli("rnu")
    assert r.returncode == 2
    assert "did you mean 'run'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_unknown_flag_exit_2():
    r = _cli("run", "--no-such-flag")
    assert r.returncode == 2 and "no-such-flag" in r.stderr


def test_missing_recipe_exit_2(tmp_path):
    r = _cli("run", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_recipe_typo_suggests_key(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model: seed_cnn\ntrian:\n  epochs: 1\n")
    r = _cli("run", str(p))
    assert r.returncode == 2
    assert "did you mean 'train'" in r.stderr


def test_python_m_and_console_script_agree():
    import shutil
    exe = shutil.which("tfcompress", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("console script not installed in this environment")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True,
                       env=ENV, timeout=120)
    assert r.returncode == 0 and "tfcompress run" in r.stdout


def _row(name, mode, acc, size, gz):
    return {"variant": name, "mode": mode, "tflite_accuracy": acc,
            "size_bytes": size, "gzip_bytes": gz}


def test_run_headline_picks_smallest_variant_that_keeps_accuracy():
    from tfcompress.commands.run import headline
    report = {"baseline": {"keras_accuracy": 0.83}, "variants": [
        _row("float", "float32", 0.830, 8000, 7000),
        _row("int8", "int8", 0.826, 2000, 1800),
        _row("pruned_int8", "int8", 0.800, 2000, 700),   # lost 3 points
        _row("qat_int8", "int8", 0.829, 2000, 1000)]}
    line = headline(report)
    assert line == ("best: qat_int8, 8.0x smaller than the float32 "
                    "flatbuffer gzipped (4.0x raw), accuracy 0.8290 "
                    "(float32 0.8300)")


def test_run_headline_falls_back_to_most_accurate():
    from tfcompress.commands.run import headline
    report = {"baseline": {"keras_accuracy": 0.9}, "variants": [
        _row("a", "int8", 0.70, 100, 90), _row("b", "int8", 0.75, 200, 150)]}
    assert headline(report) == ("best: b, accuracy 0.7500 "
                                "(Keras float 0.9000)")


def test_run_headline_divides_the_baseline_float32_flatbuffer():
    from tfcompress.commands.run import headline
    report = {"baseline": {"keras_accuracy": 0.9,
                           "keras_file_bytes_with_optimizer_state": 30000,
                           "float32_tflite": {"size_bytes": 10000}},
              "variants": [_row("int4", "int8", 0.9, 2000, 250)]}
    assert headline(report).startswith(
        "best: int4, 40.0x smaller than the float32 flatbuffer gzipped "
        "(5.0x raw)")


def test_starting_the_cli_imports_no_tensorflow():
    # TensorFlow prints C++ log lines when it loads, before tfcompress can
    # capture them: the CLI loads it only for commands that need it
    code = ("import sys, tfcompress.cli, tfcompress.convert\n"
            "print(sorted(m for m in ('keras', 'tensorflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_read_only_or_full_disk_is_a_one_line_error(monkeypatch, capsys):
    import errno
    from tfcompress import cli
    from tfcompress.commands import COMMANDS

    def writes(args):
        raise OSError(errno.EROFS, "Read-only file system", "runs/x")
    monkeypatch.setitem(COMMANDS, "writes", (writes, "test"))
    assert cli.main(["tfcompress", "writes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfcompress: error: ") and "Read-only" in err
    assert "unexpected" not in err


@pytest.mark.parametrize("command, usage, own, other", [
    ("convert", "tfcompress convert", "--mode", "--only"),
    ("run", "tfcompress run", "--only", "--mode"),
])
def test_command_help_shows_that_commands_usage_and_flags(command, usage,
                                                          own, other):
    r = _cli(command, "--help")
    assert r.returncode == 0, r.stderr
    assert usage in r.stdout and own in r.stdout
    assert other not in r.stdout


@pytest.mark.parametrize("args, flag", [
    (["bench", "m.tflite", "--runs", "0"], "--runs=0"),
    (["bench", "m.tflite", "--threads", "0"], "--threads=0"),
    (["bench", "m.tflite", "--warmup_runs=-1"], "--warmup_runs=-1"),
    (["bench", "m.tflite", "--runtime", "litert"], "--runtime=litert"),
    (["convert", "m.keras", "--samples=-5"], "--samples=-5"),
])
def test_out_of_range_flag_values_are_one_line_exit_2(tmp_path, args, flag):
    # --runs 0 or -3 timed one run and reported it, --samples=-5 dropped
    # the last 5 samples, --runtime gave the device runner's usage error
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("tfcompress")]
    assert lines == [lines[0]] and f"flag {flag}" in lines[0], r.stderr
