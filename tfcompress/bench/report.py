"""Benchmark reports: JSON, CSV, a Markdown comparison and a plot."""

from __future__ import annotations

import csv
import io
import json
import os

from tfcompress.bench.delegation import outside_summary
from tfcompress.utils import atomic_write_text
from tfcompress.utils.plotting import png_figure

COLUMNS = ("model", "size_bytes", "gzip_bytes", "p50_ms", "p90_ms",
           "mean_ms", "cv", "throughput_per_s", "peak_rss_mb",
           "top1_accuracy", "runtime", "threads", "xnnpack", "partitions",
           "ops_outside", "delegated_mac_share", "outside")


def delegation_fields(result):
    """``partitions``, ``ops_outside`` (count), ``delegated_mac_share`` and
    ``outside`` (op types x count) of a benchmark result; None where the
    result has no delegation report (older results, or a runtime that does
    not expose its nodes)."""
    d = result.get("delegation") or {}
    if "partitions" not in d:
        return {"partitions": None, "ops_outside": None,
                "delegated_mac_share": None, "outside": None}
    return {"partitions": d["partitions"],
            "ops_outside": len(d["ops_outside"]),
            "delegated_mac_share": d["delegated_mac_share"],
            "outside": outside_summary(d["ops_outside"])}


def rows(results):
    """Flat rows (one per model) from benchmark results.

    The CSV report has one column per key (``COLUMNS``).

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.bench import benchmark
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    >>> y = np.argmax(model(x), axis=-1)
    >>> d = tempfile.TemporaryDirectory()
    >>> path = os.path.join(d.name, "float32.tflite")
    >>> _ = convert(model, "float32", output_path=path)
    >>> results = [benchmark(path, data={"x": x, "y": y}, runs=20)]
    >>> (row,) = rows(results)
    >>> row["model"], row["top1_accuracy"], row["xnnpack"]
    ('float32.tflite', 1.0, True)
    >>> list(row) == list(COLUMNS)
    True
    >>> d.cleanup()
    """
    out = []
    for r in results:
        lat, env = r["latency"], r["environment"]
        out.append({
            "model": r["model"], "size_bytes": r["size_bytes"],
            "gzip_bytes": r["gzip_bytes"], "p50_ms": lat["p50_ms"],
            "p90_ms": lat["p90_ms"], "mean_ms": lat["mean_ms"],
            "cv": lat["cv"], "throughput_per_s": lat["throughput_per_s"],
            "peak_rss_mb": r["peak_rss_mb"],
            "top1_accuracy": (r.get("accuracy") or {}).get("top1_accuracy"),
            "runtime": f"{env['runtime']} {env['runtime_version']}",
            "threads": r["threads"], "xnnpack": r["xnnpack"],
            **delegation_fields(r)})
    return out


def _is_float32(path):
    """Whether the flatbuffer at ``path`` keeps every weight in float32."""
    try:
        from tfcompress.inspect import inspect
        weights = inspect(path)["weights"]
    except Exception:   # noqa: BLE001 - unreadable or gone: not a reference
        return False
    return bool(weights) and all(w["dtype"] == "FLOAT32" for w in weights)


def reference(results):
    """``(index, label)`` of the model every size ratio divides: the first
    float32 flatbuffer among the results, else the first model."""
    for i, r in enumerate(results):
        if _is_float32(r.get("path", "")):
            return i, "float32"
    return 0, "first model"


def markdown(results) -> str:
    """Side-by-side table leading with each model's size ratio to the
    float32 flatbuffer among the models (raw size over raw and gzip size;
    the first model when none is float32); speed-ups are against the
    first model.

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.bench import benchmark
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    >>> y = np.argmax(model(x), axis=-1)
    >>> d = tempfile.TemporaryDirectory()
    >>> path = os.path.join(d.name, "float32.tflite")
    >>> _ = convert(model, "float32", output_path=path)
    >>> results = [benchmark(path, data={"x": x, "y": y}, runs=20)]
    >>> table = markdown(results)
    >>> print(table.splitlines()[2])
    Size ratios: float32.tflite (float32, ... bytes) over each model's ...
    >>> table.splitlines()[6].startswith("| float32.tflite | 1.")
    True
    >>> d.cleanup()
    """
    rs = rows(results)
    if not rs:
        return "(no results)\n"
    base = rs[0]
    ref_i, ref_label = reference(results)
    ref = rs[ref_i]
    env = results[0]["environment"]
    lines = [f"Runtime {rs[0]['runtime']}, {env['machine']}"
             f"{' (EMULATED: timings are not device timings)' if env.get('emulated') else ''}"
             f", {rs[0]['threads']} thread(s), XNNPACK "
             f"{'on' if rs[0]['xnnpack'] else 'off'}", "",
             f"Size ratios: {ref['model']} ({ref_label}, "
             f"{ref['size_bytes']:,} bytes) over each model's size, gzipped "
             "and raw.", "",
             f"| model | vs {ref_label} (gzip) | vs {ref_label} (raw) | size "
             "| gzip | p50 ms | p90 ms | speedup | accuracy | peak RSS MB | "
             "XNNPACK partitions | ops outside |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rs:
        acc = "-" if r["top1_accuracy"] is None else \
            f"{r['top1_accuracy']:.4f}"
        lines.append(
            f"| {r['model']} | {ref['size_bytes'] / r['gzip_bytes']:.1f}x | "
            f"{ref['size_bytes'] / r['size_bytes']:.1f}x | "
            f"{r['size_bytes']:,} | {r['gzip_bytes']:,} | "
            f"{r['p50_ms']:.3f} | {r['p90_ms']:.3f} | "
            f"{base['p50_ms'] / r['p50_ms']:.2f}x | {acc} | "
            f"{r['peak_rss_mb']:.1f} | {_dash(r['partitions'])} | "
            f"{_dash(r['ops_outside'])} |")
    lines += _outside_notes(results)
    return "\n".join(lines) + "\n"


def _dash(v):
    return "-" if v is None else v


def _outside_notes(results):
    """One line per model whose ops do not all run inside XNNPACK."""
    notes = []
    for r in results:
        d = r.get("delegation") or {}
        if not r["xnnpack"] or "partitions" not in d or \
                not d["ops_outside"]:
            continue
        named = ", ".join(
            f"#{o['index']} {o['op']}" + (f" ({o['layer']})"
                                          if o.get("layer") else "")
            for o in d["ops_outside"][:8])
        more = len(d["ops_outside"]) - 8
        notes.append(
            f"- {r['model']}: {d['partitions']} XNNPACK partition(s), "
            f"{100 * d['delegated_mac_share']:.1f}% of MACs delegated; "
            f"outside: {named}{f' and {more} more' if more > 0 else ''}")
    if notes:
        notes = ["", "Ops the XNNPACK delegate left on the runtime's own "
                 "kernels (each splits the graph; the tensor leaves the "
                 "delegate and comes back):", ""] + notes
    return notes


def plot(results, path):
    """Accuracy vs p50 latency, point size = gzip size (PNG).

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.bench import benchmark
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    >>> y = np.argmax(model(x), axis=-1)
    >>> d = tempfile.TemporaryDirectory()
    >>> path = os.path.join(d.name, "float32.tflite")
    >>> _ = convert(model, "float32", output_path=path)
    >>> results = [benchmark(path, data={"x": x, "y": y}, runs=20)]
    >>> png = plot(results, os.path.join(d.name, "bench.png"))
    >>> open(png, "rb").read(8)[1:4]
    b'PNG'
    >>> d.cleanup()
    """
    rs = rows(results)
    biggest = max(r["gzip_bytes"] for r in rs)
    with png_figure(path) as (fig, ax):
        for r in rs:
            acc = r["top1_accuracy"] if r["top1_accuracy"] is not None else 0
            ax.scatter(r["p50_ms"], acc,
                       s=30 + 400 * r["gzip_bytes"] / biggest, alpha=0.6)
            ax.annotate(r["model"], (r["p50_ms"], acc), fontsize=7)
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel("top-1 accuracy")
        ax.set_title("Accuracy vs latency (point size: gzip size)")
        ax.grid(alpha=0.3)
    return str(path)


def write_reports(results, out_dir, name="bench") -> dict:
    """Writes ``<name>.json``, ``.csv``, ``.md`` and ``.png`` to ``out_dir``.

    Returns the paths by kind; ``out_dir`` is created if needed.

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.bench import benchmark
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(8)])
    >>> x = np.random.default_rng(0).random((16, 64), dtype=np.float32)
    >>> y = np.argmax(model(x), axis=-1)
    >>> d = tempfile.TemporaryDirectory()
    >>> path = os.path.join(d.name, "float32.tflite")
    >>> _ = convert(model, "float32", output_path=path)
    >>> results = [benchmark(path, data={"x": x, "y": y}, runs=20)]
    >>> paths = write_reports(results, os.path.join(d.name, "reports"))
    >>> sorted(paths), all(os.path.isfile(p) for p in paths.values())
    (['csv', 'json', 'md', 'png'], True)
    >>> open(paths["csv"]).readline().split(",")[:3]
    ['model', 'size_bytes', 'gzip_bytes']
    >>> d.cleanup()
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {k: os.path.join(out_dir, f"{name}.{k}")
             for k in ("json", "csv", "md", "png")}
    atomic_write_text(paths["json"], json.dumps(
        {"schema": "tfcompress.bench-report/1", "results": results},
        indent=2))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows(results))
    atomic_write_text(paths["csv"], buf.getvalue())
    atomic_write_text(paths["md"], markdown(results))
    plot(results, paths["png"])
    return paths
