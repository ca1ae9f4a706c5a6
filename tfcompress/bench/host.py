"""Host side of the benchmark harness: one subprocess per model (so peak
memory and caches don't mix), local or over SSH on a device."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile

from tfcompress.bench.runner import BenchError

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "runner.py")
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


def benchmark_model(path, data=None, runtime="auto", threads=1,
                    warmup_runs=5, runs=50, min_seconds=0.0,
                    max_seconds=60.0, xnnpack=True, python=None,
                    timeout=600):
    """Benchmarks one .tflite file in a fresh subprocess; returns a dict.

    >>> r = benchmark_model("model_int8.tflite", data="eval.npz")  # doctest: +SKIP
    >>> r["latency"]["p50_ms"], r["accuracy"]["top1_accuracy"]     # doctest: +SKIP
    """
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
    the baseline the reports compare against."""
    if host:
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


def _ssh(host, remote_command, timeout, options):
    cmd = ["ssh", *options, host, remote_command]
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"ssh {host}: no answer within {timeout} s") \
            from None


def _last_error(stderr):
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    return lines[-1][:200] if lines else "unknown error"


def benchmark_remote(host, paths, data=None, runtime="auto", threads=1,
                     warmup_runs=5, runs=50, min_seconds=0.0,
                     max_seconds=60.0, xnnpack=True, python="python3",
                     timeout=900, port=None, identity=None,
                     ssh_options=()):
    """Copies the runner, models and data to ``host`` over SSH, runs each
    model there, brings the JSON back and removes the temporary folder.

    ``host`` is ``user@address`` (key authentication; BatchMode, so a
    password prompt fails fast instead of hanging). Every remote command
    is built from shell-quoted arguments.
    """
    for p in list(paths) + ([data] if data else []):
        if not os.path.isfile(p):
            raise BenchError(f"{p} does not exist")
    options = list(SSH_OPTIONS) + list(ssh_options)
    if port:
        options += ["-o", f"Port={int(port)}"]
    if identity:
        options += ["-i", identity]
    r = _ssh(host, "mktemp -d /tmp/tfcompress-bench.XXXXXX", 30, options)
    if r.returncode != 0:
        raise BenchError(f"ssh {host} failed: {_last_error(r.stderr)}")
    remote_dir = r.stdout.strip()
    if not remote_dir.startswith("/tmp/tfcompress-bench."):
        raise BenchError(f"ssh {host}: unexpected mktemp answer "
                         f"{remote_dir!r}")
    try:
        files = [RUNNER] + list(paths) + ([data] if data else [])
        try:
            r = subprocess.run(["scp", "-q", *options, *files,
                                f"{host}:{remote_dir}/"],
                               capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"scp to {host} took over {timeout} s") \
                from None
        if r.returncode != 0:
            raise BenchError(f"scp to {host} failed: "
                             f"{_last_error(r.stderr)}")
        results = []
        rdata = f"{remote_dir}/{os.path.basename(data)}" if data else None
        for p in paths:
            name = os.path.basename(p)
            args = _runner_args(f"{remote_dir}/{name}", rdata, runtime,
                                threads, warmup_runs, runs, min_seconds,
                                max_seconds, xnnpack,
                                f"{remote_dir}/{name}.json")
            command = " ".join(shlex.quote(a) for a in
                               [python, f"{remote_dir}/runner.py", *args])
            r = _ssh(host, command, timeout, options)
            if r.returncode != 0:
                raise BenchError(f"{host}: {name}: {_last_error(r.stderr)}")
            r = _ssh(host, "cat " + shlex.quote(f"{remote_dir}/{name}.json"),
                     60, options)
            result = json.loads(r.stdout)
            result["host"] = host
            result["path"] = p
            results.append(result)
        return results
    finally:
        _ssh(host, "rm -rf " + shlex.quote(remote_dir), 30, options)
