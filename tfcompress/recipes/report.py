"""Run reports: ``report.md``, ``report.json`` and ``pareto.png``."""

from __future__ import annotations

import json
import os

from tfcompress.utils import atomic_path, atomic_write_text


def _rows(results):
    base = results["baseline"]
    float_p50 = None
    rows = []
    for name, r in results.items():
        if name == "baseline":
            continue
        conv = r.get("conversion") or {}
        bench = r.get("bench") or {}
        lat = bench.get("latency") or {}
        acc = (bench.get("accuracy") or {}).get("top1_accuracy")
        row = {
            "variant": name, "stages": " > ".join(r["stages"]),
            "keras_accuracy": r["keras_accuracy"],
            "tflite_accuracy": acc,
            "size_bytes": conv.get("size_bytes"),
            "gzip_bytes": conv.get("gzip_bytes"),
            "compression_vs_keras": (base["size_bytes"] / conv["gzip_bytes"]
                                     if conv.get("gzip_bytes") else None),
            "sparsity": conv.get("sparsity"),
            "float_ops": len(conv.get("float_ops", [])) if conv else None,
            "mode": conv.get("mode"),
            "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"),
            "peak_rss_mb": bench.get("peak_rss_mb"),
            **_delegation(bench),
        }
        if conv.get("mode") == "float32" and float_p50 is None:
            float_p50 = lat.get("p50_ms")
        rows.append(row)
    float_size = next((r["size_bytes"] for r in rows
                       if r["mode"] == "float32" and r["size_bytes"]), None)
    for row in rows:
        row["speedup_vs_float"] = (float_p50 / row["p50_ms"]
                                   if float_p50 and row["p50_ms"] else None)
        row["compression_vs_float_tflite"] = (
            float_size / row["gzip_bytes"] if float_size and
            row["gzip_bytes"] else None)
    return rows


def _delegation(bench):
    from tfcompress.bench.report import delegation_fields
    d = delegation_fields(bench) if bench else delegation_fields({})
    return {"xnnpack_partitions": d["partitions"],
            "ops_outside_xnnpack": d["outside"] if d["ops_outside"] else
            (None if d["ops_outside"] is None else ""),
            "delegated_mac_share": d["delegated_mac_share"]}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(recipe, results, rows) -> str:
    base = results["baseline"]
    lines = [f"# tfcompress run: {recipe['name']}", "",
             f"Model `{recipe['model']}` on `{recipe['data']['name']}`; "
             f"float baseline (Keras) accuracy "
             f"**{base['keras_accuracy']:.4f}**, .keras file "
             f"{base['size_bytes']:,} bytes.", "",
             "| variant | stages | Keras acc | TFLite acc | size | gzip | "
             "vs .keras | vs float | sparsity | float ops | p50 ms | p90 ms | "
             "speedup | peak MB | XNNPACK partitions |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             "---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['stages']} | "
            f"{_fmt(r['keras_accuracy'], '.4f')} | "
            f"{_fmt(r['tflite_accuracy'], '.4f')} | "
            f"{_fmt(r['size_bytes'], ',')} | {_fmt(r['gzip_bytes'], ',')} | "
            f"{_fmt(r['compression_vs_keras'], '.1f')}x | "
            f"{_fmt(r['compression_vs_float_tflite'], '.1f')}x | "
            f"{_fmt(r['sparsity'], '.1%')} | {_fmt(r['float_ops'], 'd')} | "
            f"{_fmt(r['p50_ms'], '.3f')} | {_fmt(r['p90_ms'], '.3f')} | "
            f"{_fmt(r['speedup_vs_float'], '.2f')}x | "
            f"{_fmt(r['peak_rss_mb'], '.1f')} | "
            f"{_fmt(r['xnnpack_partitions'], 'd')} |")
    outside = [r for r in rows if r["ops_outside_xnnpack"]]
    if outside:
        lines += ["", "Ops outside the XNNPACK delegate (each splits the "
                  "graph into one more partition; see the variant's bench "
                  "JSON for indices and layers):", ""]
        lines += [f"- {r['variant']}: {r['ops_outside_xnnpack']} "
                  f"({100 * r['delegated_mac_share']:.1f}% of MACs "
                  "delegated)" for r in outside]
    lines += ["", "Sizes are of the .tflite file. 'vs .keras': the float "
              "baseline .keras file (weights plus optimizer state, as "
              "model.save writes it) over the .tflite gzip size; 'vs "
              "float': the float32 .tflite (weights only) over the gzip "
              "size. Latency: "
              "single process per model, see each variant's bench JSON for "
              "runtime, threads and machine.", ""]
    for name, r in results.items():
        conv = r.get("conversion") if name != "baseline" else None
        if not conv:
            continue
        lines += [f"## {name}: weights", "",
                  "| weight | dtype | params | sparsity | distinct |",
                  "|---|---|---:|---:|---:|"]
        for w in conv.get("weights", []):
            if w["params"] < 64:
                continue
            lines.append(f"| {w['name'][:50]} | {w['dtype']} | "
                         f"{w['params']:,} | {_fmt(w['sparsity'], '.1%')} | "
                         f"{w['distinct_values']} |")
        lines.append("")
    return "\n".join(lines)


def pareto(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "gzip_bytes", "gzip size (bytes)"),
                           (axes[1], "p50_ms", "p50 latency (ms)")):
        for r in rows:
            if r[key] is None or r["tflite_accuracy"] is None:
                continue
            ax.scatter(r[key], r["tflite_accuracy"])
            ax.annotate(r["variant"], (r[key], r["tflite_accuracy"]),
                        fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("TFLite accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_xscale("log")
    fig.suptitle("Accuracy vs size and latency")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_report(run_dir, recipe, results) -> dict:
    """Writes the run's report files; returns their paths."""
    rows = _rows(results)
    paths = {"report_md": os.path.join(run_dir, "report.md"),
             "report_json": os.path.join(run_dir, "report.json"),
             "pareto_png": os.path.join(run_dir, "pareto.png")}
    atomic_write_text(paths["report_json"], json.dumps(
        {"schema": "tfcompress.run-report/1", "recipe": recipe,
         "baseline": results["baseline"], "variants": rows}, indent=2,
        default=str))
    atomic_write_text(paths["report_md"], markdown(recipe, results, rows))
    pareto(rows, paths["pareto_png"])
    return paths
