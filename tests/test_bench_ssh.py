"""The SSH path for real: an OpenSSH server started on 127.0.0.1 with a
throwaway host key and user key, the benchmark run through it."""

import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tfcompress.bench import BenchError, benchmark_remote

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (make test installs it "
                    "with apt when run as root)")
    d = tmp_path_factory.mktemp("ssh")
    for name in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(d / name)], check=True)
    auth = d / "authorized_keys"
    shutil.copy(d / "user.pub", auth)
    os.chmod(auth, 0o600)
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\n"
        f"AuthorizedKeysFile {auth}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
        f"PidFile {d / 'sshd.pid'}\n"
        "Subsystem sftp internal-sftp\n")
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip("sshd could not start: " +
                            proc.stderr.read().decode()[-300:])
            time.sleep(0.2)
    user = os.environ.get("USER") or "root"
    yield {"host": f"{user}@127.0.0.1", "port": port,
           "identity": str(d / "user"),
           "ssh_options": ["-o", f"UserKnownHostsFile={d / 'known_hosts'}"]}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import keras
    import tensorflow as tf
    d = tmp_path_factory.mktemp("remote")
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    (d / "m.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(m).convert())
    x = np.random.default_rng(0).random((10, 6), dtype=np.float32)
    np.savez(d / "eval.npz", x=x, y=m.predict(x, verbose=0).argmax(1))
    return d


def test_remote_benchmark_over_real_ssh(sshd, model):
    results = benchmark_remote(
        sshd["host"], [str(model / "m.tflite")], str(model / "eval.npz"),
        runs=5, python=sys.executable, port=sshd["port"],
        identity=sshd["identity"], ssh_options=sshd["ssh_options"],
        timeout=120)
    r = results[0]
    assert r["host"] == sshd["host"]
    assert r["accuracy"]["top1_accuracy"] == 1.0
    assert r["latency"]["count"] >= 5
    leftovers = [p for p in os.listdir("/tmp")
                 if p.startswith("tfcompress-bench.")]
    assert not leftovers      # the remote folder was removed


def test_remote_failure_is_one_clear_error(sshd, model):
    with pytest.raises(BenchError, match="ssh .* failed"):
        benchmark_remote(
            "nobody-here@127.0.0.1", [str(model / "m.tflite")], runs=1,
            port=sshd["port"], identity=sshd["identity"],
            ssh_options=sshd["ssh_options"], timeout=60)
