"""Host side of the benchmark harness: one subprocess per model (so peak
memory and caches don't mix), local or over SSH on a device."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from typing import NamedTuple, Optional

from tfcompress.bench.runner import BenchError, check_timing
from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_path

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "runner.py")
# runner.py imports it from its own folder on the device
DELEGATION = os.path.join(os.path.dirname(RUNNER), "delegation.py")
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
               "-o", "StrictHostKeyChecking=accept-new"]


def _runner_args(model, data, runtime, threads, warmup_runs, runs,
                 min_seconds, max_seconds, xnnpack, json_path):
    args = [model, "--runtime", runtime, "--threads", str(threads),
            "--warmup-runs", str(warmup_runs), "--runs", str(runs),
            "--min-seconds", str(min_seconds),
            "--max-seconds", str(max_seconds), "--json", json_path]
    if data:
        args += ["--data", data]
    if not xnnpack:
        args.append("--no-xnnpack")
    return args


def check_settings(what, paths, data, threads, warmup_runs, runs,
                   min_seconds, max_seconds, xnnpack):
    """InputError for a model or data path that is not a path, or timing
    settings of the wrong kind (before any process starts).

    >>> check_settings("benchmark_model", ["m.tflite"], None, 1, 5, 0,
    ...                0.0, 60.0, True)
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: benchmark_model: runs must be an integer of at least 1, got 0
    """
    for path in paths:
        check_path(what, "model", path)
    if data is not None:
        check_path(what, "data", data)
    try:
        check_timing(threads=threads, warmup_runs=warmup_runs, runs=runs,
                     min_seconds=min_seconds, max_seconds=max_seconds,
                     xnnpack=xnnpack)
    except BenchError as e:
        raise InputError(f"{what}: {e}") from None


def benchmark_model(path, data=None, runtime="auto", threads=1,
                    warmup_runs=5, runs=50, min_seconds=0.0,
                    max_seconds=60.0, xnnpack=True, python=None,
                    timeout=600):
    """Benchmarks one .tflite file in a fresh subprocess; returns a dict.

    >>> r = benchmark_model("model_int8.tflite", data="eval.npz")  # doctest: +SKIP
    >>> r["latency"]["p50_ms"], r["accuracy"]["top1_accuracy"]     # doctest: +SKIP
    """
    check_settings("benchmark_model", [path], data, threads, warmup_runs,
                   runs, min_seconds, max_seconds, xnnpack)
    if not os.path.isfile(path):
        raise BenchError(f"model {path} does not exist")
    if data is not None and not os.path.isfile(data):
        raise BenchError(f"data file {data} does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [python or sys.executable, RUNNER] + _runner_args(
            path, data, runtime, threads, warmup_runs, runs, min_seconds,
            max_seconds, xnnpack, out)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{path}: benchmark took longer than "
                             f"{timeout} s") from None
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines()
                     if l.startswith("runner: error:")]
            msg = lines[-1][len("runner: error: "):] if lines else \
                (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise BenchError(msg)
        with open(out) as f:
            return json.load(f)


def benchmark_models(paths, data=None, host=None, progress=True, **kwargs):
    """Benchmarks several models, each in its own process; the first is
    the baseline the reports compare against.

    ``host`` (``[user@]host[:port]``) runs them on a device over SSH;
    other keyword arguments go to :func:`benchmark_model`.

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     data = os.path.join(d, "eval.npz")
    ...     np.savez(data, x=x, y=np.argmax(model(x), axis=-1))
    ...     paths = [os.path.join(d, f"{m}.tflite")
    ...              for m in ("float32", "int8")]
    ...     _ = convert(model, "float32", output_path=paths[0])
    ...     _ = convert(model, "int8", representative_data=x,
    ...                 output_path=paths[1])
    ...     results = benchmark_models(paths, data=data, runs=20,
    ...                                progress=False)
    >>> [(r["model"], r["accuracy"]["samples"]) for r in results]
    [('float32.tflite', 16), ('int8.tflite', 16)]
    >>> results[1]["size_bytes"] < results[0]["size_bytes"]
    True
    """
    if host is not None:
        return benchmark_remote(host, paths, data, **kwargs)
    results = []
    iterator = paths
    if progress and len(paths) > 1:
        try:
            from tqdm import tqdm
            iterator = tqdm(paths, desc="benchmark", unit="model")
        except ImportError:
            pass
    for p in iterator:
        results.append(benchmark_model(p, data=data, **kwargs))
    return results


HOST_FORM = ("[user@]host[:port] (host: a name, an IPv4 address or an "
             "IPv6 address in brackets when a port follows, e.g. "
             "pi@raspberrypi.local:2222 or user@[::1]:2222)")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?\Z")
_REMOTE_DIR = re.compile(r"/tmp/tfcompress-bench\.[A-Za-z0-9]+\Z")


class SshTarget(NamedTuple):
    """A validated SSH destination: ``user`` and ``port`` may be None."""
    user: Optional[str]
    host: str
    port: Optional[int]

    @property
    def destination(self):
        """``user@host`` as ssh takes it after ``--`` (IPv6 unbracketed)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def scp_prefix(self):
        """``user@host:`` as scp takes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:" if self.user else f"{host}:"


def _bad_host(text, why):
    return InputError(f"host {text!r}: {why}; expected {HOST_FORM}")


def _check_hostname(text, host):
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            raise _bad_host(text, f"{host!r} is not an IPv6 address") \
                from None
    if len(host) > 253 or not all(_LABEL.match(l) for l in host.split(".")):
        raise _bad_host(text, f"{host!r} is not a host name or address "
                        "(letters, digits, - and _ in dot-separated labels, "
                        "not starting or ending with -)")
    if all(l.isdigit() for l in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _bad_host(text, f"{host!r} is not an IPv4 address") \
                from None
    return host


def parse_host(text):
    """Validates an SSH destination ``[user@]host[:port]``; returns an
    :class:`SshTarget`. Anything else, notably a value starting with ``-``
    that ssh would read as an option, raises InputError.

    >>> parse_host("pi@raspberrypi.local:2222")
    SshTarget(user='pi', host='raspberrypi.local', port=2222)
    >>> parse_host("user@[::1]:22").destination
    'user@::1'
    >>> parse_host("-oProxyCommand=sh")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: host '-oProxyCommand=sh': ...
    """
    if not isinstance(text, str) or not text:
        raise _bad_host(text, "empty")
    if text.startswith("-"):
        raise _bad_host(text, "starts with '-', which ssh would read as an "
                        "option")
    user, sep, rest = text.rpartition("@")
    if sep:
        if not _USER.match(user):
            raise _bad_host(text, f"user {user!r} is not a user name "
                            "(letters, digits, _, . and -, not starting "
                            "with - or .)")
    else:
        user = None
    port = None
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close:
            raise _bad_host(text, "'[' without ']'")
        if tail:
            if not tail.startswith(":"):
                raise _bad_host(text, f"unexpected {tail!r} after ']'")
            port = tail[1:]
        if ":" not in host:
            raise _bad_host(text, "brackets are for IPv6 addresses only")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest           # a name, IPv4, or IPv6 without a port
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _bad_host(text, f"port {port!r} is not a number in "
                            "1-65535")
        port = int(port)
    if not host:
        raise _bad_host(text, "no host")
    return SshTarget(user, _check_hostname(text, host), port)


def _ssh(target, remote_command, timeout, options):
    cmd = ["ssh", *options, "--", target.destination, remote_command]
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"ssh {target.destination}: no answer within "
                         f"{timeout} s") from None


def _last_error(stderr):
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    return lines[-1][:200] if lines else "unknown error"


def _stderr_tail(stderr, lines=3, chars=300):
    """The last lines of a remote stderr on one line (the runner's own
    ``runner: error:`` line when there is one)."""
    kept = [l.strip() for l in stderr.splitlines() if l.strip()]
    own = [l for l in kept if l.startswith("runner: error:")]
    if own:
        return own[-1][len("runner: error:"):].strip()[:chars]
    return " | ".join(kept[-lines:])[-chars:] or "no error output"


def _remote_name(path):
    """``<sha256 prefix>-<basename>``: same-named models from different
    folders get different remote files."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{h.hexdigest()[:12]}-{os.path.basename(path)}"


def _ssh_options(target, port, identity, ssh_options):
    if port is not None:
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise InputError(f"port {port!r}: expected a number in "
                             "1-65535") from None
        if not 1 <= port <= 65535:
            raise InputError(f"port {port}: expected a number in 1-65535")
        if target.port is not None and target.port != port:
            raise InputError(f"host gives port {target.port} but the port "
                             f"option gives port {port}; give one of them")
    port = target.port or port
    options = list(SSH_OPTIONS) + list(ssh_options)
    if port:
        options += ["-o", f"Port={port}"]
    if identity:
        options += ["-i", os.path.abspath(identity)]
    return options


def _copy(target, files, remote_dir, options, timeout):
    """scp ``files`` ({local path: remote name}) into ``remote_dir`` in one
    connection. Sources are absolute paths (so a ':' in a name is not read
    as a host) staged as symlinks under their remote names, after ``--``."""
    with tempfile.TemporaryDirectory(prefix="tfcompress-stage.") as stage:
        staged = []
        for local, name in files.items():
            link = os.path.join(stage, name)
            os.symlink(os.path.abspath(local), link)
            staged.append(link)
        cmd = ["scp", "-q", *options, "--", *staged,
               f"{target.scp_prefix}{remote_dir}/"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"scp to {target.destination} took over "
                             f"{timeout} s") from None
    if r.returncode != 0:
        raise BenchError(f"scp to {target.destination} failed: "
                         f"{_last_error(r.stderr)}")


def benchmark_remote(host, paths, data=None, runtime="auto", threads=1,
                     warmup_runs=5, runs=50, min_seconds=0.0,
                     max_seconds=60.0, xnnpack=True, python="python3",
                     timeout=900, port=None, identity=None,
                     ssh_options=()):
    """Copies the runner, models and data to ``host`` over SSH, runs each
    model there, brings the JSON back and removes the temporary folder.

    ``host`` is ``[user@]host[:port]`` (see :func:`parse_host`; anything
    else raises InputError before a process starts). Key authentication
    only: BatchMode, so a password prompt fails fast instead of hanging.
    Every remote file has a content-hash prefix, so models with the same
    file name from different folders do not overwrite each other, and
    every remote command is built from shell-quoted arguments.

    >>> benchmark_remote("pi@raspberrypi.local", ["a/m.tflite", "b/m.tflite"],
    ...                  data="eval.npz")                   # doctest: +SKIP
    """
    target = parse_host(host)
    options = _ssh_options(target, port, identity, ssh_options)
    paths = list(paths)
    check_settings("benchmark_remote", paths, data, threads, warmup_runs,
                   runs, min_seconds, max_seconds, xnnpack)
    for p in paths + ([data] if data else []):
        if not os.path.isfile(p):
            raise BenchError(f"{p} does not exist")
    names = {p: _remote_name(p) for p in paths}
    files = {RUNNER: "runner.py", DELEGATION: "delegation.py", **names}
    if data:
        files[data] = _remote_name(data)
    dest = target.destination
    r = _ssh(target, "mktemp -d /tmp/tfcompress-bench.XXXXXX", 30, options)
    if r.returncode != 0:
        raise BenchError(f"ssh {dest} failed: {_last_error(r.stderr)}")
    remote_dir = r.stdout.strip()
    if not _REMOTE_DIR.match(remote_dir):
        raise BenchError(f"ssh {dest}: unexpected mktemp answer "
                         f"{remote_dir!r}")
    try:
        _copy(target, files, remote_dir, options, timeout)
        rdata = f"{remote_dir}/{files[data]}" if data else None
        results = []
        for i, p in enumerate(paths):
            label = f"{dest}: {p}"
            out = f"{remote_dir}/result-{i}.json"
            args = _runner_args(f"{remote_dir}/{names[p]}", rdata, runtime,
                                threads, warmup_runs, runs, min_seconds,
                                max_seconds, xnnpack, out)
            command = " ".join(shlex.quote(a) for a in
                               [python, f"{remote_dir}/runner.py", *args])
            r = _ssh(target, command, timeout, options)
            if r.returncode != 0:
                raise BenchError(f"{label}: remote command exited with "
                                 f"status {r.returncode}: "
                                 f"{_stderr_tail(r.stderr)}")
            r = _ssh(target, "cat " + shlex.quote(out), 60, options)
            if r.returncode != 0:
                raise BenchError(f"{label}: the runner wrote no result "
                                 f"(cat exited with status {r.returncode}: "
                                 f"{_stderr_tail(r.stderr)})")
            try:
                result = json.loads(r.stdout)
            except ValueError:
                raise BenchError(f"{label}: the runner's result is not JSON: "
                                 f"{r.stdout.strip()[:200]!r}") from None
            result.update(host=host, path=p, model=os.path.basename(p))
            results.append(result)
        return results
    finally:
        _ssh(target, "rm -rf " + shlex.quote(remote_dir), 30, options)
