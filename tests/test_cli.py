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
