"""Do int8 flatbuffers give the same outputs on arm64 as on x86?

Runs each flatbuffer on an input batch with LiteRT on this (x86) host (as
it runs by default, with XNNPACK, and with its built-in kernels only) and
with the arm64 runtimes in the emulated root of :mod:`arm_root`
(tflite-runtime 2.14, and LiteRT's aarch64 wheel when it installs there),
then counts, per model and arm64 runtime, the int8 outputs that are equal,
off by one quantization step, or off by more. Given the Python of
:mod:`x86_tflite_runtime`'s venv, it also runs tflite-runtime 2.14 on x86
(XNNPACK on and off), to tell an ARM difference from a runtime-version
difference (:func:`format_same_runtime_table`).

A runtime that cannot load a model (e.g. an op version newer than
tflite-runtime 2.14 knows) gives one row with a one-line ``error`` and the
``refused_ops``, not an exception.

>>> rows = cross_check({"cnn": "cnn_int8.tflite"}, x[:200])  # doctest: +SKIP
>>> print(format_table(rows))                               # doctest: +SKIP

Uses numpy, the flatbuffer reader of :mod:`tfcompress.inspect` and the
device-side runner; no TensorFlow.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import time

import numpy as np

from tfcompress.bench import (arm_root, first_difference, runner,
                              x86_tflite_runtime)
from tfcompress.errors import InputError
from tfcompress.inspect import inspect
from tfcompress.inspect.model_reader import read_model

ARM_RUNTIMES = arm_root.ARM_RUNTIMES
INTEGER_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16}
_REFUSED = re.compile(r"opcode '([A-Z0-9_]+)' version '(\d+)'")


def output_step(path):
    """The quantization step (scale) of the model's first output: of the
    output itself if it is integer, else of the integer tensor its final
    DEQUANTIZE reads. None if the output is computed in float."""
    with open(path, "rb") as f:
        model = read_model(f.read())
    graph = model["subgraphs"][0]
    tensors = graph["tensors"]
    out = graph["outputs"][0]
    if tensors[out]["dtype"] not in INTEGER_TYPES:
        producer = next((op for op in graph["operators"]
                         if out in op["outputs"]), None)
        if producer is None or \
                model["opcodes"][producer["opcode"]]["name"] != "DEQUANTIZE":
            return None
        out = producer["inputs"][0]
    q = tensors[out]["quantization"]
    return float(q["scale"][0]) if q and q["scale"] else None


def quantize_inputs(path, x):
    """``x`` as the model's integer input type (rounded once, here, so
    every runtime is fed the same integers); unchanged for float inputs."""
    with open(path, "rb") as f:
        graph = read_model(f.read())["subgraphs"][0]
    t = graph["tensors"][graph["inputs"][0]]
    x = np.asarray(x)
    dtype = INTEGER_TYPES.get(t["dtype"])
    if dtype is None:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(dtype)
    q = t["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / q["scale"][0] + q["zero_point"][0]),
                   info.min, info.max).astype(dtype)


def count_steps(a, b, step):
    """Counts outputs of ``a`` and ``b`` (dequantized, same shape) that are
    equal, one quantization ``step`` apart, or further apart.

    >>> count_steps(np.array([0., .5, 1., 3.]), np.array([0., 1., 1., 1.]),
    ...             0.5)
    {'equal': 2, 'off_by_one': 1, 'worse': 1, 'total': 4, 'max_steps': 4}
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise InputError(f"outputs have shapes {a.shape} and {b.shape}; "
                         "compare outputs of the same model and inputs")
    steps = np.rint(np.abs(a - b) / step).astype(np.int64)
    return {"equal": int(np.sum(steps == 0)),
            "off_by_one": int(np.sum(steps == 1)),
            "worse": int(np.sum(steps > 1)), "total": int(steps.size),
            "max_steps": int(steps.max()) if steps.size else 0}


def _refused(message):
    return [f"{op} v{v}" for op, v in _REFUSED.findall(message or "")]


def _row(name, runtime, **fields):
    row = {"model": name, "runtime": runtime, "runtime_version": None,
           "machine": None, "x86_runtime": None, "equal": None,
           "off_by_one": None, "worse": None, "total": None,
           "max_steps": None, "within_one": None, "refused_ops": [],
           "error": None, "seconds": None, "op_versions": {},
           "vs_x86_builtin": None, "partitions": None, "ops_outside": None,
           "x86_partitions": None, "x86_same_runtime": None,
           "vs_x86_same_runtime": None, "x86_same_runtime_vs_litert": None,
           "first_difference": None}
    row.update(fields)
    return row




def _x86_tflite_runtime(python, path, data, tmp, name, timeout):
    """``{"version", "outputs", "partitions"}`` of tflite-runtime on x86
    (outputs and XNNPACK partitions keyed by XNNPACK on/off), or a one-line
    error string."""
    out = {"version": None, "outputs": {}, "partitions": {}}
    for xnnpack in (True, False):
        outputs = os.path.join(tmp, f"{name}.x86_tflite_runtime.{xnnpack}.npy")
        result = outputs[:-4] + ".json"
        args = [path, "--data", data, "--runtime", "tflite_runtime",
                "--runs", "1", "--warmup-runs", "0", "--outputs", outputs,
                "--json", result] + ([] if xnnpack else ["--no-xnnpack"])
        try:
            r = x86_tflite_runtime.run_runner(python, args, timeout=timeout)
        except x86_tflite_runtime.VenvError as e:
            return str(e)
        if r.returncode != 0:
            return f"x86 tflite_runtime: {arm_root.runner_error(r)}"
        with open(result) as f:
            result_json = json.load(f)
        out["version"] = result_json["environment"]["runtime_version"]
        out["partitions"][xnnpack] = (result_json.get("delegation")
                                      or {}).get("partitions")
        out["outputs"][xnnpack] = np.load(outputs)
    return out


def _same_runtime_fields(same, arm, ref, ref_builtin, step):
    """The row fields comparing arm64 tflite-runtime with the same runtime
    on x86, and that x86 run with x86 LiteRT."""
    if isinstance(same, str):
        return {"x86_same_runtime": {"error": same}}
    counts = {}
    for key, a, b in (("xnnpack", arm, same["outputs"][True]),
                      ("builtin", arm, same["outputs"][False]),
                      ("litert_xnnpack", same["outputs"][True], ref),
                      ("litert_builtin", same["outputs"][False],
                       ref_builtin)):
        counts[key] = count_steps(a, b, step)
        counts[key]["within_one"] = _within_one(counts[key])
    return {"x86_same_runtime": {
                "runtime": "tflite_runtime", "machine": "x86_64",
                "runtime_version": same["version"], "error": None,
                "partitions": same["partitions"][True]},
            "vs_x86_same_runtime": {"xnnpack": counts["xnnpack"],
                                    "builtin": counts["builtin"]},
            "x86_same_runtime_vs_litert": {
                "xnnpack": counts["litert_xnnpack"],
                "builtin": counts["litert_builtin"]}}


class _ArmRun:
    """Runs one flatbuffer with one runtime in the arm64 root and compares
    its outputs with x86 LiteRT's (one row of :func:`cross_check`)."""

    def __init__(self, root, site, cpu, timeout, tmp, log, trace=True):
        self.root, self.site, self.cpu = root, site, cpu
        self.timeout, self.tmp, self.log = timeout, tmp, log
        self.trace = trace

    def first_difference(self, rt, every, arm):
        """Where arm64 (runtime ``rt``, XNNPACK as by default) and x86
        LiteRT first compute different values: the ops whose inputs were
        equal and outputs not, run on ``every`` (the model's
        :class:`first_difference.EveryOutputCopy`, shared by the model's
        runtimes). ``{"ops": [...], "fresh_ops": n}``, or
        ``{"error": ...}``."""
        stem = os.path.splitext(os.path.basename(every.path))[0]
        dump = os.path.join(self.tmp, f"{stem}.{rt}.npz")
        try:
            r = arm_root.run_runner(
                self.root, [every.path, "--data", every.data, "--runtime",
                            rt, "--every-output", dump],
                timeout=self.timeout, site=self.site, cpu=self.cpu)
        except arm_root.ArmRootError as e:
            return {"error": str(e)}
        if r.returncode != 0:
            return {"error": arm_root.runner_error(r)}
        with np.load(dump) as f:
            arm_dump = dict(f)
        graph = every.model["subgraphs"][0]
        if not _same_final(arm_dump, arm, graph):
            return {"error": "the copy that outputs every op's result "
                             "computes other final outputs than the model"}
        ops = first_difference.fresh_differences(
            graph, [o["name"] for o in every.model["opcodes"]], arm_dump,
            every.dump("ai_edge_litert"))
        return {"ops": ops[:10], "fresh_ops": len(ops)}

    def compare(self, name, rt, path, data, step, refs, same, base,
                import_errors, every=None):
        """``every``: a callable giving the model's
        :class:`first_difference.EveryOutputCopy` (made on first use) for
        tracing a difference of more than one step."""
        outputs = os.path.join(self.tmp, f"{name}.{rt}.npy")
        result = os.path.join(self.tmp, f"{name}.{rt}.json")
        t0 = time.time()
        try:
            r = arm_root.run_runner(
                self.root, [path, "--data", data, "--runtime", rt,
                            "--runs", "1", "--warmup-runs", "0",
                            "--outputs", outputs, "--json", result],
                timeout=self.timeout, site=self.site, cpu=self.cpu)
        except arm_root.ArmRootError as e:
            return _row(name, rt, error=str(e), **base)
        seconds = round(time.time() - t0, 1)
        if r.returncode != 0:
            msg = arm_root.runner_error(r)
            if "could be imported" in msg:
                import_errors[rt] = msg
            self.log(f"{name} on {rt}: {msg}")
            return _row(name, rt, error=msg, seconds=seconds,
                        refused_ops=_refused(msg), **base)
        with open(result) as f:
            result_json = json.load(f)
        env = result_json["environment"]
        arm_d = result_json.get("delegation") or {}
        base.update(partitions=arm_d.get("partitions"),
                    ops_outside=arm_d.get("ops_outside"),
                    x86_partitions=(refs[True].get("delegation")
                                    or {}).get("partitions"))
        if step is None:
            return _row(name, rt, runtime_version=env["runtime_version"],
                        seconds=seconds, error="the model's output is "
                        "computed in float: no quantization step to count "
                        "in", **base)
        arm = np.load(outputs)
        ref, ref_builtin = refs[True]["_outputs"], refs[False]["_outputs"]
        counts = count_steps(arm, ref, step)
        builtin = count_steps(arm, ref_builtin, step)
        builtin["within_one"] = _within_one(builtin)
        if rt == "tflite_runtime" and same is not None:
            base.update(_same_runtime_fields(same, arm, ref, ref_builtin,
                                             step))
        if self.trace and counts["worse"] and every is not None:
            base["first_difference"] = self.first_difference(rt, every(),
                                                             arm)
        self.log(f"{name} on {rt} {env['runtime_version']}: "
                 f"{counts['equal']} equal, {counts['off_by_one']} off "
                 f"by one, {counts['worse']} worse of {counts['total']} "
                 f"({seconds} s)")
        return _row(name, rt, runtime_version=env["runtime_version"],
                    machine=arm_root.machine_label(env, cpu=self.cpu),
                    seconds=seconds, within_one=_within_one(counts),
                    vs_x86_builtin=builtin, **counts, **base)


def cross_check(models, x, root=None, runtimes=ARM_RUNTIMES, timeout=3600,
                log=None, cpu=arm_root.DEFAULT_CPU, x86_python=None,
                trace=True):
    """Runs each flatbuffer on ``x`` on x86 (LiteRT) and on emulated arm64.

    Args:
      models: ``{name: path}`` or a list of ``.tflite`` paths.
      x: input batch ``(n, ...)``, float (quantized here for integer-input
        models) or already integer.
      root: the arm64 root (default: :func:`arm_root.build_root`, which
        raises :class:`arm_root.ArmRootError` if it cannot be built).
      runtimes: arm64 runtimes to try, from ``ARM_RUNTIMES``.
      timeout: seconds per emulated run.
      cpu: the arm64 CPU qemu emulates (default a Raspberry Pi 4's).
      log: optional ``print``-like callable for progress.
      x86_python: the Python of :func:`x86_tflite_runtime.build_venv`'s
        venv: also run tflite-runtime 2.14 on x86 (XNNPACK on and off).
      trace: when an arm64 output is more than one step off x86's, run a
        copy of the model that outputs every op's result on both and name
        the ops where the difference starts (``first_difference``).

    Returns:
      One dict per (model, arm64 runtime): ``equal``, ``off_by_one``,
      ``worse``, ``total``, ``max_steps``, ``within_one`` (fraction of
      outputs equal or one step off) against x86 LiteRT as it runs by
      default (XNNPACK), the same counts against x86 LiteRT's built-in
      kernels (``vs_x86_builtin``), ``runtime``/``runtime_version``,
      ``x86_runtime``, ``refused_ops`` (op versions the runtime would not
      load, e.g. ``["FULLY_CONNECTED v12"]``), ``op_versions`` and
      ``error`` (one line, or None). With ``x86_python``, tflite-runtime
      rows also hold ``vs_x86_same_runtime`` (counts against x86
      tflite-runtime with XNNPACK, ``"xnnpack"``, and with its built-in
      kernels, ``"builtin"``), ``x86_same_runtime_vs_litert`` (x86
      tflite-runtime against x86 LiteRT, XNNPACK against XNNPACK and
      built-in against built-in) and ``x86_same_runtime`` (its version,
      XNNPACK partitions, or ``error``). With ``trace``, a row with outputs
      more than one step off has ``first_difference``: ``{"ops": [...],
      "fresh_ops": n}``, the (first ten) ops whose output differed on an
      input for which all their inputs were equal
      (:func:`first_difference.fresh_differences`), or ``{"error": ...}``.
    """
    models = arm_root.arm_request(models, runtimes)
    x = np.asarray(x)
    log = log or (lambda *a: None)
    root = root or arm_root.build_root()
    sites, site_errors = arm_root.runtime_sites(root, runtimes)
    import_errors = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models.items():
            try:
                versions = inspect(path)["op_versions"]
            except Exception as e:   # a corrupt file is that model's error
                versions = {}
                log(f"{name}: cannot inspect ({type(e).__name__})")
            step = output_step(path)
            data = os.path.join(tmp, f"{name}.npz")
            np.savez(data, x=quantize_inputs(path, x))
            try:
                refs = {xnnpack: runner.benchmark(
                    path, data, runtime="ai_edge_litert", warmup_runs=0,
                    runs=1, xnnpack=xnnpack, return_outputs=True)
                    for xnnpack in (True, False)}
                x86 = refs[True]["environment"]
                x86_label = f"{x86['runtime']} {x86['runtime_version']}"
            except runner.BenchError as e:
                for rt in runtimes:
                    rows.append(_row(name, rt, op_versions=versions,
                                     error=f"x86 LiteRT: {e}"[:500]))
                continue
            same = None
            if x86_python and "tflite_runtime" in runtimes and step:
                same = _x86_tflite_runtime(x86_python, path, data, tmp,
                                           name, timeout)
                if isinstance(same, str):
                    log(f"{name}: {same}")
            every = functools.cache(functools.partial(
                first_difference.EveryOutputCopy, path, data, tmp))
            for rt in runtimes:
                base = dict(op_versions=versions, x86_runtime=x86_label)
                if rt in site_errors or rt in import_errors:
                    rows.append(_row(name, rt, error=site_errors.get(
                        rt, import_errors.get(rt)), **base))
                    continue
                run = _ArmRun(root=root, site=sites.get(rt), cpu=cpu,
                              timeout=timeout, tmp=tmp, log=log, trace=trace)
                rows.append(run.compare(
                    name, rt, path, data, step, refs, same, base,
                    import_errors, every))
    return rows


def _same_final(dump, outputs, graph):
    """Whether ``dump``'s value of the model's first output, dequantized,
    equals the runner's ``outputs`` of the model itself."""
    out = graph["outputs"][0]
    tensor = graph["tensors"][out]
    q = tensor["quantization"]
    values = runner.dequantize_output(np.asarray(dump[f"t{out}"]), {
        "dtype": INTEGER_TYPES.get(tensor["dtype"], np.float32),
        "quantization": (q["scale"][0], q["zero_point"][0])
        if q and q["scale"] else (0.0, 0)})
    return np.array_equal(values.reshape(len(outputs), -1),
                          np.asarray(outputs, np.float32).reshape(
                              len(outputs), -1))


def _within_one(counts):
    return (counts["equal"] + counts["off_by_one"]) / max(counts["total"], 1)


def format_table(rows):
    """A Markdown table of :func:`cross_check` rows."""
    lines = ["| model | arm64 runtime | equal | off by one | worse | total "
             "| within one step | within one step of x86 built-in kernels "
             "| note |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        rt = arm_root.runtime_label(r)
        if r["error"]:
            note = r["error"].replace("|", "/")
            lines.append(f"| {r['model']} | {rt} | - | - | - | - | - | - "
                         f"| {note} |")
            continue
        b = r["vs_x86_builtin"]
        lines.append(f"| {r['model']} | {rt} | {r['equal']} | "
                     f"{r['off_by_one']} | {r['worse']} | {r['total']} | "
                     f"{100 * r['within_one']:.2f}% | "
                     f"{100 * b['within_one']:.2f}% | max "
                     f"{r['max_steps']} step(s) (vs built-in: "
                     f"{b['max_steps']}){_start_note(r)} |")
    return "\n".join(lines)


def _start_note(row):
    """``; starts at op ...``: where a traced difference starts."""
    first = row.get("first_difference")
    if not first:
        return ""
    if first.get("error"):
        return f"; not traced: {first['error']}".replace("|", "/")
    if not first["ops"]:
        return "; no op computed differently on equal inputs"
    op = dict(first["ops"][0])
    op["tensor"] = op["tensor"].split(";")[0]
    more = first["fresh_ops"] - 1
    return (f"; starts at {first_difference.describe(op)}"
            + (f", and {more} more op(s)" if more else "")).replace("|", "/")


def _share(counts):
    return (f"{counts['equal']}/{counts['total']} equal, "
            f"{100 * counts['within_one']:.2f}% within one step")


def format_same_runtime_table(rows):
    """A Markdown table of the :func:`cross_check` rows run with
    ``x86_python``: arm64 tflite-runtime against the same version on x86
    (XNNPACK, and built-in kernels), and that x86 run against x86 LiteRT.
    Rows without those figures are left out; a failed x86 run is a row
    with its error."""
    lines = ["| model | arm64 runtime | x86 runtime | equal | off by one | "
             "worse | total | within one step | vs its built-in kernels | "
             "x86 runtime vs x86 LiteRT (XNNPACK) | x86 built-in kernels "
             "vs x86 LiteRT built-in |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        same = r.get("x86_same_runtime")
        if not same:
            continue
        rt = arm_root.runtime_label(r)
        if same["error"]:
            note = same["error"].replace("|", "/")
            lines.append(f"| {r['model']} | {rt} | - | - | - | - | - | - "
                         f"| - | - | {note} |")
            continue
        x86 = (f"{same['runtime']} {same['runtime_version']} "
               f"({same['machine']}, {same['partitions']} XNNPACK "
               "partitions)")
        c = r["vs_x86_same_runtime"]["xnnpack"]
        lite = r["x86_same_runtime_vs_litert"]
        lines.append(f"| {r['model']} | {rt} | {x86} | {c['equal']} | "
                     f"{c['off_by_one']} | {c['worse']} | {c['total']} | "
                     f"{100 * c['within_one']:.2f}% | "
                     f"{_share(r['vs_x86_same_runtime']['builtin'])} | "
                     f"{_share(lite['xnnpack'])} | "
                     f"{_share(lite['builtin'])} |")
    return "\n".join(lines)
