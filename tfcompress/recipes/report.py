"""Run reports: ``report.md``, ``report.json`` and ``pareto.png``."""

from __future__ import annotations

import json
import os

from tfcompress.utils import atomic_write_text
from tfcompress.utils.plotting import png_figure


# A variant counts as keeping the float model's accuracy within this.
ACCURACY_TOLERANCE = 0.01


def ratios(reference_bytes, size_bytes, gzip_bytes):
    """How many times smaller a flatbuffer is than the float32 flatbuffer
    of the same model: its raw size, and its gzip size (what a download
    or a compressed flash image holds), both dividing the float32 file's
    raw size.

    >>> ratios(13_000_000, 1_625_000, 325_000)
    {'raw': 8.0, 'gzip': 40.0}
    """
    if not reference_bytes:
        return {"raw": None, "gzip": None}
    return {"raw": reference_bytes / size_bytes if size_bytes else None,
            "gzip": reference_bytes / gzip_bytes if gzip_bytes else None}


def _rows(results):
    base = results["baseline"]
    fair = results.get("fair_baseline") or {}
    by_epochs = dict(fair.get("accuracy_by_epochs") or {})
    by_epochs.setdefault(str(base.get("epochs")), base["keras_accuracy"])
    reference = (base.get("float32_tflite") or {}).get("size_bytes")
    float_p50 = None
    rows = []
    for name, r in results.items():
        if name in ("baseline", "fair_baseline"):
            continue
        conv = r.get("conversion") or {}
        bench = r.get("bench") or {}
        lat = bench.get("latency") or {}
        acc = (bench.get("accuracy") or {}).get("top1_accuracy")
        total = r.get("total_epochs")
        fair_acc = by_epochs.get(str(total)) if fair else None
        final_acc = r["keras_accuracy"] if acc is None else acc
        row = {
            "variant": name,
            "ratio_vs_float32_tflite": ratios(reference,
                                              conv.get("size_bytes"),
                                              conv.get("gzip_bytes")),
            "size_bytes": conv.get("size_bytes"),
            "gzip_bytes": conv.get("gzip_bytes"),
            "stages": " > ".join(r["stages"]),
            "keras_accuracy": r["keras_accuracy"],
            "tflite_accuracy": acc,
            "total_epochs": total,
            "fair_baseline_accuracy": fair_acc,
            "accuracy_change_vs_fair_baseline_points": (
                100 * (final_acc - fair_acc)
                if fair_acc is not None and final_acc is not None else None),
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
    for row in rows:
        row["speedup_vs_float"] = (float_p50 / row["p50_ms"]
                                   if float_p50 and row["p50_ms"] else None)
    return rows


def _delegation(bench):
    from tfcompress.bench.report import delegation_fields
    d = delegation_fields(bench) if bench else delegation_fields({})
    return {"xnnpack_partitions": d["partitions"],
            "ops_outside_xnnpack": d["outside"] if d["ops_outside"] else
            (None if d["ops_outside"] is None else ""),
            "delegated_mac_share": d["delegated_mac_share"]}


def variant_accuracy(row):
    """A report row's accuracy: its flatbuffer's (TFLite) when measured,
    else its Keras model's.

    >>> variant_accuracy({"tflite_accuracy": 0.81, "keras_accuracy": 0.8})
    0.81
    """
    a = row.get("tflite_accuracy")
    return row.get("keras_accuracy") if a is None else a


def best_variant(report):
    """``(row, reference accuracy, what the reference is)`` of the
    smallest (gzip) variant within one point of the reference accuracy
    (else the most accurate); ``row`` is None when no variant converted.
    The reference is the variant's fair baseline when the run has one,
    else the float32 flatbuffer's accuracy, else the Keras baseline's."""
    rows = [r for r in report.get("variants", [])
            if r.get("size_bytes") and r.get("gzip_bytes")
            and variant_accuracy(r) is not None]
    if not rows:
        return None, None, None
    floats = [r for r in rows if r.get("mode") == "float32"]

    def reference(r):
        if r.get("fair_baseline_accuracy") is not None:
            return (r["fair_baseline_accuracy"],
                    f"fair float baseline, {r.get('total_epochs')} epochs")
        if floats:
            return variant_accuracy(floats[0]), "float32"
        acc = report.get("baseline", {}).get("keras_accuracy")
        return acc, "Keras float"

    good = [r for r in rows if reference(r)[0] is None or
            variant_accuracy(r) >= reference(r)[0] - ACCURACY_TOLERANCE]
    best = (min(good, key=lambda r: (r["gzip_bytes"], -variant_accuracy(r)))
            if good else max(rows, key=variant_accuracy))
    return (best,) + reference(best)


def _reference_bytes(report):
    """Raw size of the float32 flatbuffer: the baseline's (this report
    format), else a float32 variant's (older reports)."""
    ref = (report.get("baseline", {}).get("float32_tflite") or {}).get(
        "size_bytes")
    if ref:
        return ref
    return next((r["size_bytes"] for r in report.get("variants", [])
                 if r.get("mode") == "float32" and r.get("size_bytes")),
                None)


def headline(report):
    """One line naming the best variant of a run's ``report.json`` (see
    :func:`best_variant`), leading with its size ratio to the float32
    flatbuffer of the same model, gzip and raw.

    >>> headline({"baseline": {"keras_accuracy": 0.83,
    ...                        "float32_tflite": {"size_bytes": 4000}},
    ...           "variants": [
    ...     {"variant": "float", "mode": "float32", "tflite_accuracy": 0.83,
    ...      "size_bytes": 4000, "gzip_bytes": 3600},
    ...     {"variant": "int8", "mode": "int8", "tflite_accuracy": 0.825,
    ...      "size_bytes": 1000, "gzip_bytes": 500}]})
    'best: int8, 8.0x smaller than the float32 flatbuffer gzipped (4.0x raw), accuracy 0.8250 (float32 0.8300)'
    """
    best, ref_acc, ref_name = best_variant(report)
    if best is None:
        return ("no variant produced a .tflite"
                if not report.get("variants") else "no variant was evaluated")
    r = ratios(_reference_bytes(report), best["size_bytes"],
               best["gzip_bytes"])
    line = f"best: {best['variant']}, "
    if r["gzip"] is not None:
        line += (f"{r['gzip']:.1f}x smaller than the float32 flatbuffer "
                 f"gzipped ({r['raw']:.1f}x raw), ")
    line += f"accuracy {variant_accuracy(best):.4f}"
    if ref_acc is not None:
        line += f" ({ref_name} {ref_acc:.4f})"
    return line


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _x(v, spec=".1f"):
    return "-" if v is None else format(v, spec) + "x"


def markdown(recipe, results, rows) -> str:
    base = results["baseline"]
    fair = results.get("fair_baseline")
    ref = base.get("float32_tflite") or {}
    report = {"baseline": base, "variants": rows}
    lines = [f"# tfcompress run: {recipe['name']}", "",
             f"**{headline(report)}**", "",
             f"Every ratio divides the float32 flatbuffer of the trained "
             f"baseline (weights only: {_fmt(ref.get('size_bytes'), ',')} "
             f"bytes, {_fmt(ref.get('gzip_bytes'), ',')} gzipped) by the "
             "variant's .tflite size, raw and gzipped (gzip -9).", "",
             "| variant | vs float32 (gzip) | vs float32 (raw) | gzip | size "
             "| TFLite acc | Keras acc | epochs | vs fair baseline | sparsity "
             "| float ops | p50 ms | p90 ms | speedup | peak MB | XNNPACK partitions "
             "| stages |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             "---:|---:|---:|---:|---|"]
    for r in rows:
        ratio = r["ratio_vs_float32_tflite"]
        change = r["accuracy_change_vs_fair_baseline_points"]
        lines.append(
            f"| {r['variant']} | {_x(ratio['gzip'])} | {_x(ratio['raw'])} | "
            f"{_fmt(r['gzip_bytes'], ',')} | {_fmt(r['size_bytes'], ',')} | "
            f"{_fmt(r['tflite_accuracy'], '.4f')} | "
            f"{_fmt(r['keras_accuracy'], '.4f')} | "
            f"{_fmt(r['total_epochs'], 'd')} | "
            f"{'-' if change is None else format(change, '+.2f') + ' pt'} | "
            f"{_fmt(r['sparsity'], '.1%')} | {_fmt(r['float_ops'], 'd')} | "
            f"{_fmt(r['p50_ms'], '.3f')} | {_fmt(r['p90_ms'], '.3f')} | "
            f"{_x(r['speedup_vs_float'], '.2f')} | "
            f"{_fmt(r['peak_rss_mb'], '.1f')} | "
            f"{_fmt(r['xnnpack_partitions'], 'd')} | {r['stages']} |")
    outside = [r for r in rows if r["ops_outside_xnnpack"]]
    if outside:
        lines += ["", "Ops outside the XNNPACK delegate (each splits the "
                  "graph into one more partition; see the variant's bench "
                  "JSON for indices and layers):", ""]
        lines += [f"- {r['variant']}: {r['ops_outside_xnnpack']} "
                  f"({100 * r['delegated_mac_share']:.1f}% of MACs "
                  "delegated)" for r in outside]
    lines += ["", f"Float baseline: Keras accuracy "
              f"{base['keras_accuracy']:.4f} after {base.get('epochs')} "
              "epoch(s)."]
    if fair:
        lines += [f"Fair baseline: the float baseline trained on to "
                  f"{fair['epochs']} epochs in total, as long as the "
                  "longest variant (train epochs + stage epochs); Keras "
                  "accuracy by total epochs: " + ", ".join(
                      f"{e}: {a:.4f}" for e, a in
                      fair["accuracy_by_epochs"].items()) + ". 'vs fair "
                  "baseline' compares each variant (TFLite accuracy) with "
                  "it at the variant's own total epochs."]
    keras_bytes = base.get("keras_file_bytes_with_optimizer_state")
    lines += [f"The baseline's .keras file ({_fmt(keras_bytes, ',')} bytes) "
              "also holds the optimizer state, so it is no compression "
              "reference. 'epochs': training epochs of the baseline plus "
              "the variant's stages. Latency: single process per model, "
              "see each variant's bench JSON for runtime, threads and "
              "machine.", ""]
    for name, r in results.items():
        conv = r.get("conversion") if name not in (
            "baseline", "fair_baseline") else None
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
    with png_figure(path, figsize=(10, 4), dpi=110, ncols=2) as (fig, axes):
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


def report_json(recipe, results, rows) -> dict:
    """The content of ``report.json``: the headline variant and its size
    ratios to the float32 flatbuffer lead."""
    report = {"baseline": results["baseline"], "variants": rows}
    best, ref_acc, ref_name = best_variant(report)
    lead = None
    if best is not None:
        lead = {"variant": best["variant"],
                "ratio_vs_float32_tflite": best["ratio_vs_float32_tflite"],
                "size_bytes": best["size_bytes"],
                "gzip_bytes": best["gzip_bytes"],
                "accuracy": variant_accuracy(best),
                "reference_accuracy": ref_acc, "reference": ref_name,
                "text": headline(report)}
    return {"schema": "tfcompress.run-report/2", "headline": lead,
            "recipe": recipe, "baseline": results["baseline"],
            "fair_baseline": results.get("fair_baseline"),
            "variants": rows}


def write_report(run_dir, recipe, results) -> dict:
    """Writes the run's report files; returns their paths."""
    rows = _rows(results)
    paths = {"report_md": os.path.join(run_dir, "report.md"),
             "report_json": os.path.join(run_dir, "report.json"),
             "pareto_png": os.path.join(run_dir, "pareto.png")}
    atomic_write_text(paths["report_json"], json.dumps(
        report_json(recipe, results, rows), indent=2, default=str))
    atomic_write_text(paths["report_md"], markdown(recipe, results, rows))
    pareto(rows, paths["pareto_png"])
    return paths
