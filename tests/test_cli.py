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


def test_run_tiny_recipe_end_to_end(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=rng.integers(0, 255, (64, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 64), x_test=rng.integers(
                 0, 255, (32, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 32))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: lenet_300_100\ndata: {npz}\n"
                      "train:\n  epochs: 1\n  batch_size: 32\n")
    out = tmp_path / "out"
    r = _cli("run", str(recipe), "--out", str(out), "--set", "train.seed=3")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "baseline.keras").exists()
    import json
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["train"]["seed"] == 3
    assert 0.0 <= report["baseline"]["test_accuracy"] <= 1.0
