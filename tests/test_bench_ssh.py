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
from tfcompress.errors import InputError

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
        f"Port {port}\nListenAddress 127.0.0.1\nListenAddress [::1]\n"
        f"HostKey {d / 'host'}\n"
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
    yield {"host": f"{user}@127.0.0.1", "port": port, "user": user,
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


def _tflite(path, outputs, seed):
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(outputs)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    return str(path)


def _remote(sshd, host, paths, data=None, **kw):
    kw.setdefault("python", sys.executable)
    return benchmark_remote(host, paths, data, runs=2, warmup_runs=0,
                            port=sshd["port"], identity=sshd["identity"],
                            ssh_options=sshd["ssh_options"], timeout=120,
                            **kw)


def test_same_file_name_from_two_folders_gives_two_results(sshd, tmp_path):
    a = _tflite(tmp_path / "a" / "m.tflite", 3, 0)
    b = _tflite(tmp_path / "b" / "m.tflite", 7, 1)
    assert os.path.getsize(a) != os.path.getsize(b)
    results = _remote(sshd, sshd["host"], [a, b])
    assert [r["path"] for r in results] == [a, b]
    assert [r["model"] for r in results] == ["m.tflite", "m.tflite"]
    assert [r["size_bytes"] for r in results] == [os.path.getsize(a),
                                                  os.path.getsize(b)]


def test_ipv6_destination_with_port_in_host(sshd, model):
    try:
        socket.create_connection(("::1", sshd["port"]), 2).close()
    except OSError:
        pytest.skip("sshd does not listen on ::1 here")
    results = benchmark_remote(
        f"{sshd['user']}@[::1]:{sshd['port']}", [str(model / "m.tflite")],
        runs=2, warmup_runs=0, python=sys.executable,
        identity=sshd["identity"], ssh_options=sshd["ssh_options"],
        timeout=120)
    assert results[0]["latency"]["count"] >= 2


def test_remote_command_failure_names_status_and_stderr(sshd, model):
    m = str(model / "m.tflite")
    with pytest.raises(BenchError, match=r"m.tflite: remote command exited "
                       r"with status 127: .*no-such-python"):
        _remote(sshd, sshd["host"], [m], python="/no-such-python")
    # exits 0 but writes no result: refused before any JSON is parsed
    with pytest.raises(BenchError, match=r"m.tflite: .*no result"):
        _remote(sshd, sshd["host"], [m], python="true")
    bad = model / "bad" / "m.tflite"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(BenchError, match="not a TFLite flatbuffer"):
        _remote(sshd, sshd["host"], [str(bad)])


def test_option_like_host_never_reaches_real_ssh(sshd, model, tmp_path):
    marker = tmp_path / "proxy-command-ran"
    with pytest.raises(InputError, match="host"):
        _remote(sshd, f"-oProxyCommand=touch {marker}",
                [str(model / "m.tflite")])
    assert not marker.exists()


BAD_HOSTS = ["-oProxyCommand=touch x", "-F/tmp/cfg", "user@-oProxyCommand=x",
             "-luser@host", "", "user@", "@host", "a b", "host;reboot",
             "$(reboot)", "host\n-oX=y", "user@host:0", "user@host:70000",
             "user@host:22x", "[::1", "user@[::1]x", "[not-ip]:22",
             "u@@host", "-host", "host-", "a..b", "999.1.1.1", "h/../x",
             "user name@host"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_bad_hosts_are_refused_before_any_process(host, model, tmp_path,
                                                  monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ssh", "scp"):
        fake = bin_dir / tool
        fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'started'}\n")
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(InputError, match=r"host .*\[user@\]host\[:port\]"):
        benchmark_remote(host, [str(model / "m.tflite")], runs=1)
    assert not (tmp_path / "started").exists()


@pytest.mark.parametrize("text,expected", [
    ("pi@raspberrypi.local", ("pi", "raspberrypi.local", None)),
    ("pi@raspberrypi.local:2222", ("pi", "raspberrypi.local", 2222)),
    ("10.0.0.5", (None, "10.0.0.5", None)),
    ("ubuntu@10.0.0.5:22", ("ubuntu", "10.0.0.5", 22)),
    ("user@[::1]:2222", ("user", "::1", 2222)),
    ("[fe80::1]", (None, "fe80::1", None)),
    ("root@::1", ("root", "::1", None)),
    ("board_7", (None, "board_7", None)),
    ("first.last@host-1.example.com", ("first.last", "host-1.example.com",
                                       None)),
])
def test_parse_host_accepts_user_host_port(text, expected):
    from tfcompress.bench.host import parse_host
    t = parse_host(text)
    assert (t.user, t.host, t.port) == expected


def test_port_in_host_and_port_argument_must_agree(model):
    with pytest.raises(InputError, match="port 2222 .* port 22"):
        benchmark_remote("u@h:2222", [str(model / "m.tflite")], port=22)
