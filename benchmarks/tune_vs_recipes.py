"""``tfcompress tune`` against the hand-written recipes, in one run.

For each model, its hand-written recipe in configs/ runs as ``tfcompress
run`` would, then ``tune`` searches the same recipe (budget 1 point,
objective size) fitting on the same training images: tune reads
``--val`` more images after them and validates on those. Compared on the
test images:

- the tuned flatbuffer against the recipe's best variant, as the run
  report picks it (the smallest gzip within one point of the float32
  flatbuffer's accuracy, ``tfcompress.recipes.report.best_variant``);
- and against every variant of the recipe, the most accurate included.

    python benchmarks/tune_vs_recipes.py
    python benchmarks/tune_vs_recipes.py --models seed_cnn --keep /tmp/tvr

Writes benchmarks/results/tune_vs_recipes.json and .md.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import common  # noqa: F401  (quiet TensorFlow logs, sys.path)
from tfcompress.recipes.report import best_variant, variant_accuracy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# model -> recipe, images the recipe trains on (tune fits on the same),
# tune's fine-tuning epochs per candidate and its candidate limit
MODELS = {
    "seed_cnn": dict(recipe="configs/fashion_mnist_cnn.yaml", fit=12000,
                     finetune_epochs=1, max_candidates=12),
    "mobilenet_v2": dict(recipe="configs/mobilenet_v2_fashion_mnist.yaml",
                         fit=8000, finetune_epochs=2, max_candidates=8),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument("--val", type=int, default=2000,
                   help="validation images tune holds out after the fit "
                        "images")
    p.add_argument("--budget", type=float, default=1.0)
    p.add_argument("--keep", default=None,
                   help="run folders here (default: a temporary folder)")
    p.add_argument("--name", default="tune_vs_recipes")
    return p.parse_args(argv)


def compare(tuned, rows, best):
    """How the tuned model stands against each hand-written variant."""
    out = []
    for r in rows:
        if not r.get("gzip_bytes"):
            continue
        out.append({
            "variant": r["variant"], "test_accuracy": variant_accuracy(r),
            "gzip_bytes": r["gzip_bytes"], "size_bytes": r["size_bytes"],
            "is_best": r["variant"] == best["variant"],
            "tuned_times_smaller": round(r["gzip_bytes"]
                                         / tuned["gzip_bytes"], 2),
            "tuned_accuracy_change_points": round(
                100 * (tuned["test_accuracy"] - variant_accuracy(r)), 2)})
    return out


def run_model(name, args, folder):
    from tfcompress.recipes.runner import run_recipe
    from tfcompress.tune import tune
    spec = MODELS[name]
    recipe = os.path.join(ROOT, spec["recipe"])
    t = time.time()
    print(f"[{name}] hand-written recipe {spec['recipe']}", flush=True)
    run = run_recipe(recipe, out_dir=os.path.join(folder, name, "recipe"),
                     overrides=[f"data.train_samples={spec['fit']}"])
    recipe_seconds = time.time() - t
    with open(run["report_json"]) as f:
        report = json.load(f)
    best, reference, reference_name = best_variant(report)
    t = time.time()
    print(f"[{name}] tune --budget {args.budget} --objective size",
          flush=True)
    result = tune(recipe, budget=args.budget, objective="size",
                  out_dir=os.path.join(folder, name),
                  overrides=[f"data.train_samples={spec['fit'] + args.val}"],
                  val_samples=args.val,
                  finetune_epochs=spec["finetune_epochs"],
                  max_candidates=spec["max_candidates"])
    tune_seconds = time.time() - t
    chosen = result.chosen
    tuned = {"label": chosen["label"], "config": chosen["config"],
             "val_accuracy": chosen["val_accuracy"],
             "val_float32_accuracy": result.reference["val_accuracy"],
             "test_accuracy": result.test_accuracy,
             "test_float32_accuracy": result.reference_test_accuracy,
             "gzip_bytes": chosen["gzip_bytes"],
             "size_bytes": chosen["size_bytes"],
             "candidates": len(result.candidates)}
    rows = compare(tuned, report["variants"], best)
    best_row = next(r for r in rows if r["is_best"])
    most_accurate = max(rows, key=lambda r: r["test_accuracy"])
    return {
        "model": name, "recipe": spec["recipe"], "fit_images": spec["fit"],
        "val_images": args.val, "recipe_seconds": round(recipe_seconds, 1),
        "tune_seconds": round(tune_seconds, 1),
        "recipe_float32_test_accuracy": next(
            (variant_accuracy(r) for r in report["variants"]
             if r.get("mode") == "float32"), None),
        "best_variant": best["variant"],
        "best_reference": f"{reference_name} {reference:.4f}",
        "tuned": tuned, "variants": rows,
        "aims": {
            "within_budget_on_validation": (
                100 * (tuned["val_float32_accuracy"]
                       - tuned["val_accuracy"]) <= args.budget + 1e-9),
            "smaller_than_best": best_row["tuned_times_smaller"] > 1,
            "at_least_as_accurate_as_best":
                best_row["tuned_accuracy_change_points"] >= 0,
            "smaller_than_most_accurate":
                most_accurate["tuned_times_smaller"] > 1,
            "at_least_as_accurate_as_most_accurate":
                most_accurate["tuned_accuracy_change_points"] >= 0}}


def markdown(result):
    lines = ["# tune against the hand-written recipes", "",
             f"Command: `{result['command']}`", ""]
    for m in result["models"]:
        t = m["tuned"]
        lines += [
            f"## {m['model']} (`{m['recipe']}`)", "",
            f"Both fit on the same {m['fit_images']} training images; tune "
            f"validates on the {m['val_images']} after them. Recipe "
            f"{m['recipe_seconds']:.0f} s, tune {m['tune_seconds']:.0f} s "
            f"({t['candidates']} candidates). The recipe's best variant "
            f"(the run report's choice: smallest gzip within one point of "
            f"{m['best_reference']}): **{m['best_variant']}**.", "",
            f"Tuned: **{t['label']}**, validation {t['val_accuracy']:.4f} "
            f"(its float32 {t['val_float32_accuracy']:.4f}), test "
            f"{t['test_accuracy']:.4f} (its float32 "
            f"{t['test_float32_accuracy']:.4f}), {t['gzip_bytes']:,} bytes "
            f"gzip ({t['size_bytes']:,} raw).", "",
            "| hand-written variant | test acc | gzip bytes | tuned is "
            "smaller by | tuned accuracy change (points) |",
            "|---|---:|---:|---:|---:|"]
        for r in m["variants"]:
            star = " (best)" if r["is_best"] else ""
            lines.append(
                f"| {r['variant']}{star} | {r['test_accuracy']:.4f} | "
                f"{r['gzip_bytes']:,} | {r['tuned_times_smaller']:.2f}x | "
                f"{r['tuned_accuracy_change_points']:+.2f} |")
        lines += ["", "Aims:", ""]
        lines += [f"- {k.replace('_', ' ')}: "
                  f"{'MET' if v else 'MISSED'}" for k, v in m["aims"].items()]
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        models = [run_model(name, args, folder) for name in args.models]
    result = {"command": " ".join(["python"] + sys.argv),
              "seconds": round(time.time() - start, 1), "models": models}
    common.save(args.name, result)
    text = markdown(result)
    common.save_markdown(args.name, text)
    print(text)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()
    main()
