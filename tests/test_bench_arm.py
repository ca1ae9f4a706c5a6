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
def test_runner_on_emulated_arm64_matches_x86(root, tmp_path):
    import keras
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu")(i)
    h = keras.layers.MaxPooling2D()(h)
    o = keras.layers.Dense(5)(keras.layers.Flatten()(h))
    model = keras.Model(i, o)
    x = np.random.default_rng(0).random((40, 12, 12, 1), dtype=np.float32)
    path = tmp_path / "m_int8.tflite"
    r = convert(model, "int8", representative_data=x, input_type="int8",
                output_type="int8", output_path=path)
    scale = r.report["outputs"][0]["scale"]
    np.savez(tmp_path / "eval.npz", x=x,
             y=model.predict(x, verbose=0).argmax(1))
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
                                                                  tmp_path):
    """TF 2.21 writes FULLY_CONNECTED v12 for dynamic-range models, which
    tflite-runtime 2.14 cannot load: the runner says so in one line."""
    import keras
    from tfcompress.convert import convert
    from tfcompress.inspect import inspect
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    path = tmp_path / "dyn.tflite"
    convert(m, "dynamic", output_path=path)
    report = inspect(path)
    assert report["op_versions"]["FULLY_CONNECTED"] >= 12
    assert report["runtime_compatibility"]
    r = arm_root.run_runner(root, [str(path), "--runtime", "tflite_runtime",
                                   "--runs", "1"])
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.startswith("runner:")]
    assert len(lines) == 1
    assert "FULLY_CONNECTED" in lines[0] and "12" in lines[0]
    assert "LiteRT" in lines[0]
