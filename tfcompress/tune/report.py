"""What ``tune`` writes to its folder: ``recipe.yaml`` (the chosen
configuration, rerun with ``tfcompress run``), ``report.json``,
``report.md`` (every candidate) and ``pareto.png``.

>>> pareto_front([{"gzip_bytes": 10, "val_accuracy": 0.8},
...               {"gzip_bytes": 20, "val_accuracy": 0.7},
...               {"gzip_bytes": 30, "val_accuracy": 0.9}], "gzip_bytes")
[0, 2]
"""

from __future__ import annotations

import dataclasses
import json
import os

import yaml

from tfcompress.utils import atomic_path, atomic_write_text
from tfcompress.utils.plotting import png_figure


def pareto_front(results, cost):
    """Indices of the results no other beats on both ``cost`` (lower)
    and validation accuracy (higher), by increasing cost."""
    rows = [(r[cost], -r["val_accuracy"], i) for i, r in enumerate(results)
            if r.get("val_accuracy") is not None and r.get(cost) is not None]
    front, best = [], None
    for c, neg_acc, i in sorted(rows):
        if best is None or -neg_acc > best:
            front.append(i)
            best = -neg_acc
    return front


def _compact(stage):
    """A stage with only the settings that differ from the defaults."""
    from tfcompress.recipes.schema import STAGE_SCHEMAS
    kind, params = next(iter(stage.items()))
    schema = STAGE_SCHEMAS.get(kind, {})
    return {kind: {k: v for k, v in params.items()
                   if k not in schema or schema[k].default != v
                   or k == "mode"}}


def recipe_for(result, setup, baseline_path, recipe_data=None):
    """The chosen candidate as a recipe: the float model, the chosen
    stages, and the fit part of the training split (the validation
    samples stay out, as during the search)."""
    chosen = result.chosen
    stages = [_compact(s) for s in chosen["stages"]]
    variants = [{"name": "float", "stages": [{"convert": {"mode":
                                                         "float32"}},
                                             {"bench": {}}]}]
    if chosen["key"] != result.reference["key"]:
        variants.append({"name": "tuned", "stages": stages + [{"bench": {}}]})
    if setup["recipe"] is not None:
        r = setup["recipe"]
        data = dict(r["data"], train_samples=result.fit_samples)
        out = {"name": f"{r['name']}_tuned", "model": r["model"]}
        if r.get("model_options"):
            out["model_options"] = r["model_options"]
        train = {k: v for k, v in r["train"].items()
                 if k != "batchnorm_momentum" or v is not None}
        return dict(out, data={k: v for k, v in data.items()
                               if v is not None},
                    train=train, variants=variants)
    return {"name": f"{setup['name']}_tuned", "model": baseline_path,
            "data": {"name": recipe_data or "data.npz"},
            "train": dict(setup["train"], epochs=0), "variants": variants}


def _row(r, chosen_key):
    if r.get("val_accuracy") is None:
        return (f"| {r['label']} | failed: {r.get('error', '')[:80]} "
                "| | | | | |")
    lat = "" if r.get("latency_p50_ms") is None else \
        f"{r['latency_p50_ms']:.3f}"
    mark = " **chosen**" if r["key"] == chosen_key else ""
    return (f"| {r['label']}{mark} | {r['val_accuracy']:.4f} | "
            f"{r['drop_points']:+.2f} | {r['size_bytes']:,} | "
            f"{r['gzip_bytes']:,} | {lat} | "
            f"{'yes' if r['within_budget'] else 'no'} |")


def markdown(result, command=None):
    c, ref = result.chosen, result.reference
    lines = [
        "# tfcompress tune", "",
        f"Budget {result.budget} point(s) of validation accuracy, objective "
        f"{result.objective}; {len(result.candidates)} candidates "
        f"({result.evaluations} evaluated in this run, "
        f"{len(result.candidates) - result.evaluations} read from the "
        f"cache); fine-tuned on {result.fit_samples} and validated on "
        f"{result.val_samples} training samples; {result.seconds} s.", "",
        f"**Chosen: {c['label']}**: validation accuracy "
        f"{c['val_accuracy']:.4f} (float32 {ref['val_accuracy']:.4f}), "
        f"{c['gzip_bytes']:,} bytes gzip ({c['size_bytes']:,} raw; "
        f"{ref['gzip_bytes'] / c['gzip_bytes']:.1f}x smaller than the "
        "float32 flatbuffer gzipped).", "",
        f"Test accuracy, measured once after the search: "
        f"{result.test_accuracy:.4f} (float32 "
        f"{result.reference_test_accuracy:.4f}).", "",
        f"Rerun it: `tfcompress run {result.recipe_path}`", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| candidate | val acc | drop (pt) | bytes | gzip bytes | "
              "p50 ms | within budget |",
              "|---|---:|---:|---:|---:|---:|---|"]
    lines += [_row(r, c["key"]) for r in result.candidates]
    lines += ["", "Configurations (per-layer sparsity, weight bits, mode, "
              "post-training steps, layers kept float):", ""]
    for r in result.candidates:
        cfg = r["config"]
        sp = ", ".join(f"{n} {s:.2f}" for n, s in cfg["sparsity"].items())
        lines.append(f"- {r['label']}: sparsity {{{sp or 'dense'}}}, "
                     f"weights {cfg['weight_bits']}-bit, {cfg['mode']}"
                     + (f", {' + '.join(cfg['ptq'])}" if cfg["ptq"] else "")
                     + (f", float {', '.join(cfg['float_layers'])}"
                        if cfg.get("float_layers") else ""))
    lines += ["", "![Pareto front](pareto.png)", ""]
    return "\n".join(lines)


def plot(result, path):
    """Validation accuracy against the objective's cost, every candidate,
    the Pareto front, the budget line and the chosen one."""
    cost = "latency_p50_ms" if result.objective == "latency" else \
        "gzip_bytes"
    rows = [r for r in result.candidates
            if r.get("val_accuracy") is not None and r.get(cost) is not None]
    scale = 1.0 if cost == "latency_p50_ms" else 1 / 1024
    with png_figure(path, figsize=(6.5, 4.2)) as (fig, ax):
        _draw_pareto(ax, result, rows, cost, scale)
    return path


def _draw_pareto(ax, result, rows, cost, scale):
    ax.scatter([r[cost] * scale for r in rows],
               [r["val_accuracy"] for r in rows], color="0.6",
               label="candidates")
    for r in rows:
        ax.annotate(r["label"], (r[cost] * scale, r["val_accuracy"]),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = [rows[i] for i in pareto_front(rows, cost)]
    ax.plot([r[cost] * scale for r in front],
            [r["val_accuracy"] for r in front], "-o", color="C0",
            label="Pareto front")
    ax.axhline(result.reference["val_accuracy"] - result.budget / 100,
               color="C3", ls="--", lw=1, label="budget")
    c = result.chosen
    ax.scatter([c[cost] * scale], [c["val_accuracy"]], s=120,
               facecolors="none", edgecolors="C2", linewidths=2,
               label=f"chosen: {c['label']}")
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency (ms)" if cost == "latency_p50_ms"
                  else "gzip size (KiB)")
    ax.set_ylabel("validation accuracy (LiteRT)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def write_all(result, setup, baseline, recipe_data=None, command=None):
    """Writes recipe.yaml, report.json, report.md and pareto.png; sets
    their paths on ``result``."""
    folder = result.folder
    baseline_path = os.path.join(folder, "baseline.keras")
    if setup["recipe"] is None:     # the recipe's model: the given one
        with atomic_path(baseline_path, suffix=".keras") as tmp:
            baseline.save(tmp)
    result.recipe_path = os.path.join(folder, "recipe.yaml")
    result.report_json = os.path.join(folder, "report.json")
    result.report_md = os.path.join(folder, "report.md")
    result.plot = plot(result, os.path.join(folder, "pareto.png"))
    recipe = recipe_for(result, setup, baseline_path, recipe_data)
    atomic_write_text(result.recipe_path, "# written by tfcompress tune: "
                      "the chosen configuration\n" + yaml.safe_dump(
                          recipe, sort_keys=False))
    atomic_write_text(result.report_json, json.dumps(
        dataclasses.asdict(result), indent=2, default=str))
    atomic_write_text(result.report_md, markdown(result, command))
