"""Device-side TFLite benchmark runner: numpy + one TFLite runtime only.

This file and ``delegation.py`` next to it import nothing else of
tfcompress, so the two can be copied to a Raspberry Pi or any ARM board
and run there with only numpy and a TFLite runtime installed::

    python3 runner.py model.tflite --data eval.npz --runs 100 --json out.json

Runtimes: ``ai_edge_litert`` (LiteRT), ``tflite_runtime`` (needs
numpy<2) or ``tensorflow`` (``tf.lite``), chosen with ``--runtime`` or
automatically in that order. Evaluation data is an ``.npz`` with ``x``
(inputs, float or already quantized) and optionally ``y`` (integer
labels) and ``reference`` (reference outputs to compare against).

Measures what TFLite's ``benchmark_model`` reports (init time, first
inference, warm-up, timed runs with mean/std/percentiles), plus peak
resident memory, throughput, accuracy and how the runtime executes the
model (``delegation``: XNNPACK partitions, the ops left outside the
delegate and the share of MACs inside it; see ``delegation.py``, which
must be copied along with this file). ``--delegation-only`` reports that
without timing anything.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import sys
import time

import numpy as np

try:
    from . import delegation
except ImportError:     # runner.py copied to a device with delegation.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import delegation

SCHEMA = "tfcompress.bench/1"
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class BenchError(Exception):
    """A problem with the model, data or runtime; printed as one line."""


def load_runtime(name="auto"):
    """Returns ``(runtime name, version, Interpreter class, resolver enum)``."""
    order = RUNTIMES if name == "auto" else (name,)
    errors = []
    for rt in order:
        try:
            if rt == "ai_edge_litert":
                from ai_edge_litert import interpreter as mod
                import ai_edge_litert
                version = getattr(ai_edge_litert, "__version__", None)
            elif rt == "tflite_runtime":
                from tflite_runtime import interpreter as mod
                import tflite_runtime
                version = getattr(tflite_runtime, "__version__", None)
            elif rt == "tensorflow":
                import tensorflow as tf
                mod, version = tf.lite, tf.__version__
                return rt, version, mod.Interpreter, \
                    mod.experimental.OpResolverType
            else:
                raise BenchError(f"unknown runtime {rt!r}; choose from "
                                 f"{', '.join(RUNTIMES)} or auto")
            if version is None:
                try:
                    from importlib.metadata import version as pkg_version
                    version = pkg_version(rt.replace("_", "-"))
                except Exception:
                    version = "unknown"
            return rt, version, mod.Interpreter, mod.OpResolverType
        except BenchError:
            raise
        except Exception as e:   # ImportError, numpy ABI errors, ...
            errors.append(f"{rt}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}")
    raise BenchError("no TFLite runtime could be imported (" +
                     "; ".join(errors) + "); pip install ai-edge-litert "
                     "(or tflite-runtime with numpy<2)")


def environment(runtime, version):
    """Facts about where the numbers were measured."""
    env = {"runtime": runtime, "runtime_version": version,
           "numpy": np.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "system": platform.system(),
           "cores": os.cpu_count(), "cpu": None, "board": None,
           "governor": None, "emulated": bool(os.environ.get(
               "TFCOMPRESS_EMULATED"))}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":")[0].strip().lower()
                if key in ("model name", "hardware", "cpu model"):
                    env["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for key, path in (("board", "/proc/device-tree/model"),
                      ("governor", "/sys/devices/system/cpu/cpu0/cpufreq/"
                                   "scaling_governor")):
        try:
            with open(path, "rb") as f:
                env[key] = f.read().decode(errors="replace").strip("\x00\n ")
        except OSError:
            pass
    return env


def _peak_rss_mb():
    # VmHWM is this process's own high-water mark; ru_maxrss on Linux keeps
    # the parent's peak across fork+exec, which would inflate the figure.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2 ** 20


def _quantize_input(x, detail):
    if detail["dtype"] in (np.float32, np.float16):
        return x.astype(detail["dtype"])
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if not scale:
        raise BenchError("model input is integer but has no quantization "
                         "scale; give integer data")
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min,
                   info.max).astype(detail["dtype"])


def dequantize_output(y, detail):
    """An output tensor ``y`` as float32: dequantized with the tensor's
    scale and zero point if it is a quantized integer tensor."""
    if detail["dtype"] in (np.float32, np.float16):
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale) if scale else \
        y.astype(np.float32)


def _is_count(value, minimum):
    return isinstance(value, (int, np.integer)) and \
        not isinstance(value, (bool, np.bool_)) and value >= minimum


def _is_seconds(value, positive):
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, (bool, np.bool_)) and np.isfinite(value) and \
        (value > 0 if positive else value >= 0)


def check_timing(threads=1, warmup_runs=5, runs=50, warmup_seconds=0.0,
                 min_seconds=0.0, max_seconds=60.0, xnnpack=True):
    """BenchError for timing settings of the wrong kind, before a model
    loads: ``runs=0`` would time one run, ``xnnpack="no"`` would read as
    on. The host's checks (``host.check_settings``) use it too.

    >>> check_timing(runs=0)
    Traceback (most recent call last):
    ...
    tfcompress.bench.runner.BenchError: runs must be an integer of at least 1, got 0
    """
    for name, value, minimum in (("threads", threads, 1),
                                 ("runs", runs, 1),
                                 ("warmup_runs", warmup_runs, 0)):
        if not _is_count(value, minimum):
            raise BenchError(f"{name} must be an integer of at least "
                             f"{minimum}, got {value!r:.40}")
    for name, value, positive in (("warmup_seconds", warmup_seconds, False),
                                  ("min_seconds", min_seconds, False),
                                  ("max_seconds", max_seconds, True)):
        if not _is_seconds(value, positive):
            raise BenchError(f"{name} must be a number of seconds "
                             f"({'> 0' if positive else '>= 0'}), got "
                             f"{value!r:.40}")
    if not isinstance(xnnpack, (bool, np.bool_)):
        raise BenchError(f"xnnpack must be True or False, got "
                         f"{xnnpack!r:.60}")


def _make_interpreter(Interpreter, Resolver, path, threads, xnnpack):
    kwargs = {"model_path": path, "num_threads": threads}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = \
            Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        msg = " ".join(str(e).split())
        hint = ""
        if "Didn't find op" in msg or "version" in msg:
            hint = (" (this runtime is older than the converter that wrote "
                    "the model: use LiteRT/ai-edge-litert, or convert for an "
                    "older runtime)")
        elif "XNNPack" in msg and xnnpack:
            hint = (" (its XNNPACK delegate refuses this model, as LiteRT's "
                    "does an int8 model stored sparse: time it with XNNPACK "
                    "off, tfcompress bench --noxnnpack)")
        raise BenchError(f"{path}: the runtime cannot load this model: "
                         f"{msg[:300]}{hint}") from None
    return interp


def delegation_of(interp):
    """The interpreter's :func:`delegation.report_for_interpreter`, or
    ``{"error": ...}`` when this runtime does not expose its nodes."""
    try:
        return delegation.report_for_interpreter(interp)
    except delegation.DelegationError as e:
        return {"error": str(e)}


def delegation_only(path, runtime="auto", threads=1, xnnpack=True):
    """Loads the model and reports how the runtime executes it (no
    timing): :func:`delegation.delegation_report` plus the environment."""
    check_timing(threads=threads, xnnpack=xnnpack)
    if not os.path.isfile(path):
        raise BenchError(f"model {path} does not exist")
    rt, version, Interpreter, Resolver = load_runtime(runtime)
    interp = _make_interpreter(Interpreter, Resolver, path, threads, xnnpack)
    r = {"schema": SCHEMA, "model": os.path.basename(path), "path": path,
         **delegation.report_for_interpreter(interp),
         "xnnpack": bool(xnnpack), "threads": int(threads)}
    r["environment"] = environment(rt, version)
    return r


def _stats(times):
    t = np.asarray(times) * 1000.0
    mean = float(t.mean())
    std = float(t.std(ddof=1)) if len(t) > 1 else 0.0
    return {"count": int(len(t)), "mean_ms": mean, "std_ms": std,
            "min_ms": float(t.min()), "p50_ms": float(np.percentile(t, 50)),
            "p90_ms": float(np.percentile(t, 90)),
            "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
            "cv": std / mean if mean else 0.0,
            "throughput_per_s": 1000.0 / mean if mean else 0.0}


def load_data(path):
    """Loads ``x`` (required), ``y`` and ``reference`` from an .npz."""
    if not os.path.isfile(path):
        raise BenchError(f"data file {path} does not exist")
    try:
        with np.load(path) as f:
            if "x" not in f:
                raise BenchError(f"{path} has no array 'x' (inputs); "
                                 "expected keys x, y (labels), reference")
            return {k: f[k] for k in ("x", "y", "reference") if k in f}
    except BenchError:
        raise
    except Exception as e:
        raise BenchError(f"{path} is not a readable .npz file "
                         f"({type(e).__name__})") from None


def benchmark(path, data=None, runtime="auto", threads=1, warmup_runs=5,
              warmup_seconds=0.0, runs=50, min_seconds=0.0,
              max_seconds=60.0, xnnpack=True, progress=False,
              return_outputs=False):
    """Benchmarks one .tflite file in this process; returns a dict.

    ``data`` is an ``.npz`` path or a dict with ``x`` (inputs) and
    optionally ``y`` (labels) and ``reference`` (expected outputs); with
    it the result has ``accuracy``. Latencies are in milliseconds.

    >>> import os, tempfile
    >>> import keras
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    >>> y = np.argmax(model(x), axis=-1)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "model.tflite")
    ...     _ = convert(model, "float32", output_path=path)
    ...     result = benchmark(path, data={"x": x, "y": y}, runs=20)
    >>> result["model"], result["latency"]["count"], result["accuracy"]
    ('model.tflite', 20, {'samples': 16, 'top1_accuracy': 1.0})
    >>> result["latency"]["p50_ms"] <= result["latency"]["p90_ms"]
    True
    """
    check_timing(threads, warmup_runs, runs, warmup_seconds, min_seconds,
                 max_seconds, xnnpack)
    if not os.path.isfile(path):
        raise BenchError(f"model {path} does not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise BenchError(f"{path} is not a TFLite flatbuffer (missing TFL3 "
                         "identifier); is the file truncated or corrupt?")
    rt, version, Interpreter, Resolver = load_runtime(runtime)
    t0 = time.perf_counter()
    interp = _make_interpreter(Interpreter, Resolver, path, threads, xnnpack)
    init_s = time.perf_counter() - t0
    executed = delegation_of(interp)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"])
    arrays = load_data(data) if isinstance(data, str) else data
    if arrays is not None:
        x = np.asarray(arrays["x"])
        if x.shape[1:] != shape[1:]:
            if x.shape == shape[1:]:
                x = x[None]
            else:
                raise BenchError(
                    f"data inputs have shape {x.shape[1:]} per sample but "
                    f"the model expects {shape[1:]}")
        sample = x[:1]
    else:
        x = None
        sample = np.random.default_rng(0).random(shape).astype(np.float32)
    feed = _quantize_input(sample, inp)

    def invoke():
        interp.set_tensor(inp["index"], feed)
        interp.invoke()

    t0 = time.perf_counter()
    invoke()
    first_s = time.perf_counter() - t0
    warm, t0 = 0, time.perf_counter()
    while warm < warmup_runs or time.perf_counter() - t0 < warmup_seconds:
        invoke()
        warm += 1
    times = []
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=runs, desc=os.path.basename(path), leave=False)
        except ImportError:
            bar = None
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        invoke()
        times.append(time.perf_counter() - t)
        if bar is not None:
            bar.update(1)
        elapsed = time.perf_counter() - start
        if (len(times) >= runs and elapsed >= min_seconds) or \
                elapsed >= max_seconds:
            break
    if bar is not None:
        bar.close()
    result = {
        "schema": SCHEMA, "model": os.path.basename(path), "path": path,
        "size_bytes": len(raw),
        "gzip_bytes": len(gzip.compress(raw, compresslevel=9)),
        "threads": threads, "xnnpack": bool(xnnpack),
        "input": {"dtype": np.dtype(inp["dtype"]).name, "shape": list(shape)},
        "init_ms": init_s * 1000.0, "first_inference_ms": first_s * 1000.0,
        "warmup_runs": warm, "latency": _stats(times),
        "environment": environment(rt, version),
        "delegation": executed,
    }
    if x is not None:
        outputs = []
        for i in range(len(x)):
            interp.set_tensor(inp["index"], _quantize_input(x[i:i + 1], inp))
            interp.invoke()
            outputs.append(dequantize_output(
                interp.get_tensor(out["index"]), out)[0])
        outputs = np.asarray(outputs)
        acc = {"samples": int(len(x))}
        if "y" in arrays:
            y = np.asarray(arrays["y"]).ravel()
            acc["top1_accuracy"] = float(np.mean(outputs.argmax(-1) == y))
        if "reference" in arrays:
            ref = np.asarray(arrays["reference"], np.float32).reshape(
                outputs.shape)
            acc["reference_top1_agreement"] = float(
                np.mean(outputs.argmax(-1) == ref.argmax(-1)))
            acc["reference_max_abs_error"] = float(
                np.abs(outputs - ref).max())
        result["accuracy"] = acc
        if return_outputs:
            result["_outputs"] = outputs
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def every_output(path, data, runtime="auto", xnnpack=True):
    """Every graph output's raw values (integer tensors as integers) on
    each input of ``data`` (an ``.npz`` path or a dict with ``x``), keyed
    ``t<tensor index>``, each ``(n, ...)``. With a copy of a model whose
    intermediate tensors are graph outputs
    (:func:`tfcompress.bench.first_difference.with_every_output`), this
    reads what a delegate computes inside its partitions.

    >>> import os, tempfile
    >>> import keras
    >>> from tfcompress.convert import convert
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "model.tflite")
    ...     _ = convert(model, "float32", output_path=path)
    ...     out = every_output(path, {"x": np.ones((3, 4), np.float32)})
    >>> [v.shape for v in out.values()]
    [(3, 2)]
    """
    if not os.path.isfile(path):
        raise BenchError(f"model {path} does not exist")
    arrays = load_data(data) if isinstance(data, str) else dict(data)
    rt, _, Interpreter, Resolver = load_runtime(runtime)
    interp = _make_interpreter(Interpreter, Resolver, path, 1, xnnpack)
    inp = interp.get_input_details()[0]
    outs = interp.get_output_details()
    x = np.asarray(arrays["x"])
    dumps = {f"t{d['index']}": [] for d in outs}
    for i in range(len(x)):
        interp.set_tensor(inp["index"], _quantize_input(x[i:i + 1], inp))
        interp.invoke()
        for d in outs:
            v = interp.get_tensor(d["index"])
            dumps[f"t{d['index']}"].append(
                v[0] if v.ndim and v.shape[0] == 1 else v)
    return {k: np.asarray(v) for k, v in dumps.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data")
    p.add_argument("--runtime", default="auto",
                   choices=("auto",) + RUNTIMES)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup-runs", type=int, default=5)
    p.add_argument("--warmup-seconds", type=float, default=0.0)
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--no-xnnpack", action="store_true")
    p.add_argument("--outputs", help="write model outputs on --data to "
                   "this .npy file")
    p.add_argument("--every-output", help="write every graph output's raw "
                   "values on --data to this .npz (keys t<tensor index>) "
                   "and time nothing")
    p.add_argument("--json", help="write the result here (else stdout)")
    p.add_argument("--delegation-only", action="store_true",
                   help="report how the runtime executes the model "
                   "(partitions, ops outside the delegate), time nothing")
    a = p.parse_args(argv)
    try:
        if a.every_output:
            if not a.data:
                raise BenchError("--every-output needs --data (the inputs)")
            dumps = every_output(a.model, a.data, a.runtime,
                                 not a.no_xnnpack)
            tmp = a.every_output + ".tmp.npz"
            np.savez(tmp, **dumps)
            os.replace(tmp, a.every_output)
            return 0
        if a.delegation_only:
            r = delegation_only(a.model, a.runtime, a.threads,
                                not a.no_xnnpack)
        else:
            r = benchmark(a.model, a.data, a.runtime, a.threads, a.warmup_runs,
                      a.warmup_seconds, a.runs, a.min_seconds,
                      a.max_seconds, not a.no_xnnpack,
                      return_outputs=bool(a.outputs))
    except (BenchError, delegation.DelegationError) as e:
        print(f"runner: error: {e}", file=sys.stderr)
        return 2
    outputs = r.pop("_outputs", None)
    if a.outputs and outputs is not None:
        np.save(a.outputs, outputs)
    text = json.dumps(r, indent=2)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, a.json)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
