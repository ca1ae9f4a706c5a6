"""Run reports lead with the size ratio to the float32 flatbuffer of the
same model (raw and gzip), never with a ratio to a .keras file; the fair
baseline trains as many epochs as the compressed pipeline."""

import json
import os

import numpy as np
import pytest
import yaml

from tfcompress.recipes.report import write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE_40X = os.path.join(ROOT, "configs", "fashion_mnist_cnn_40x.yaml")


def _results(tmp_path):
    """Results of a finished run, as the runner hands them over."""
    conv = {"mode": "int8", "size_bytes": 1_000_000, "gzip_bytes": 250_000,
            "sparsity": 0.9, "float_ops": [], "weights": []}
    return {
        "baseline": {"path": str(tmp_path / "baseline.keras"), "epochs": 2,
                     "keras_accuracy": 0.90,
                     "keras_file_bytes_with_optimizer_state": 39_000_000,
                     "float32_tflite": {"path": "float32.tflite",
                                        "size_bytes": 13_000_000,
                                        "gzip_bytes": 12_000_000}},
        "fair_baseline": {"epochs": 6, "epochs_trained": 6,
                          "keras_accuracy": 0.915,
                          "accuracy_by_epochs": {"6": 0.915}},
        "small": {"stages": ["prune", "qat", "convert"],
                  "keras_accuracy": 0.91, "total_epochs": 6,
                  "conversion": conv,
                  "bench": {"accuracy": {"top1_accuracy": 0.912}}},
    }


def test_report_json_has_raw_and_gzip_ratio_to_the_float32_flatbuffer(
        tmp_path):
    recipe = {"name": "r", "model": "seed_cnn",
              "data": {"name": "fashion_mnist"}}
    paths = write_report(str(tmp_path), recipe, _results(tmp_path))
    report = json.loads(open(paths["report_json"]).read())
    (row,) = report["variants"]
    assert row["ratio_vs_float32_tflite"] == {"raw": 13.0, "gzip": 52.0}
    assert report["headline"]["variant"] == "small"
    assert report["headline"]["ratio_vs_float32_tflite"]["gzip"] == 52.0
    assert row["fair_baseline_accuracy"] == 0.915
    assert row["accuracy_change_vs_fair_baseline_points"] == \
        pytest.approx(-0.3)
    # no ratio against the .keras file (it holds the optimizer state)
    assert not any("keras" in k and ("ratio" in k or "compression" in k)
                   for k in row)


def test_report_md_leads_with_the_float32_flatbuffer_ratio(tmp_path):
    recipe = {"name": "r", "model": "seed_cnn",
              "data": {"name": "fashion_mnist"}}
    paths = write_report(str(tmp_path), recipe, _results(tmp_path))
    lines = open(paths["report_md"]).read().splitlines()
    first = next(l for l in lines[1:] if any(c.isdigit() for c in l))
    assert first.startswith("**best: small, 52.0x smaller than the float32 "
                            "flatbuffer gzipped (13.0x raw)")
    header = next(l for l in lines if l.startswith("| variant"))
    assert header.split("|")[2:4] == [" vs float32 (gzip) ",
                                      " vs float32 (raw) "]
    assert "vs .keras" not in "\n".join(lines)


def _mini_40x(tmp_path):
    """The 40x recipe on a few hundred real images, benchmarks shortened."""
    with open(RECIPE_40X) as f:
        recipe = yaml.safe_load(f)
    recipe["data"].update(train_samples=256, test_samples=64)
    recipe["train"]["batch_size"] = 64
    for v in recipe["variants"]:
        for stage in v["stages"]:
            if "bench" in stage:
                stage["bench"]["runs"] = 3
            if "convert" in stage:
                stage["convert"]["samples"] = 16
    path = tmp_path / "mini_40x.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path, recipe


@pytest.mark.slow
def test_mini_40x_recipe_reports_fair_baseline_and_ratios(tmp_path):
    from tfcompress import data
    try:
        data.load_fashion_mnist()
    except Exception as e:   # noqa: BLE001 - data set not installed
        pytest.skip(f"Fashion-MNIST not available: {e}")
    from tfcompress.recipes import run_recipe
    from tfcompress.recipes.runner import stage_epochs
    path, recipe = _mini_40x(tmp_path)
    result = run_recipe(str(path), out_dir=str(tmp_path / "run"))
    report = json.loads(open(result["report_json"]).read())
    pipeline = max(stage_epochs(v) for v in recipe["variants"])
    assert pipeline >= 3
    total = recipe["train"]["epochs"] + pipeline
    fair = report["fair_baseline"]
    # trained (counted from Keras' history) as long as the pipeline
    assert fair["epochs"] == fair["epochs_trained"] == total
    rows = {r["variant"]: r for r in report["variants"]}
    small = rows["pruned95_int4"]
    assert small["total_epochs"] == total
    assert small["fair_baseline_accuracy"] == fair["keras_accuracy"]
    assert small["float_ops"] == 0
    ref = report["baseline"]["float32_tflite"]["size_bytes"]
    assert ref > 12_000_000   # seed CNN, float32 weights
    assert small["ratio_vs_float32_tflite"]["raw"] == pytest.approx(
        ref / small["size_bytes"])
    assert small["ratio_vs_float32_tflite"]["gzip"] == pytest.approx(
        ref / small["gzip_bytes"])
    # packed 4-bit kernels: the raw file is well under the int8 size
    assert small["ratio_vs_float32_tflite"]["raw"] > 6
    # the convolutions stay 8-bit, so XNNPACK runs the whole graph
    assert small["xnnpack_partitions"] == 1, small["ops_outside_xnnpack"]
    assert rows["float"]["ratio_vs_float32_tflite"]["raw"] == \
        pytest.approx(1.0, abs=0.01)
    # on a few hundred images the headline may be either variant
    best = rows[report["headline"]["variant"]]
    md = open(result["report_md"]).read()
    assert f"{best['ratio_vs_float32_tflite']['gzip']:.1f}x smaller than " \
        "the float32 flatbuffer" in md.split("| variant")[0], md[:600]


def test_report_command_flags_a_report_without_float32_ratios(tmp_path):
    from tfcompress.commands.report import report
    (tmp_path / "report.md").write_text("# old\n| a | 54.2x vs .keras |\n")
    (tmp_path / "report.json").write_text(json.dumps(
        {"schema": "tfcompress.run-report/1", "variants": []}))
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert report([str(tmp_path)]) == 0
    assert out.getvalue().startswith("note: this report predates the "
                                     "ratios to the float32 flatbuffer")
    write_report(str(tmp_path), {"name": "r", "model": "m",
                                 "data": {"name": "d"}}, _results(tmp_path))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert report([str(tmp_path)]) == 0
    assert out.getvalue().startswith("# tfcompress run: r")


def test_a_ptq_stage_runs_before_convert(tmp_path):
    # ptq is in the schema and tune writes it: run must run it too
    from tfcompress.inspect import inspect
    from tfcompress.recipes import run_recipe
    rng = np.random.default_rng(0)
    npz = tmp_path / "data.npz"
    np.savez(npz, x_train=rng.random((64, 28, 28, 1), dtype=np.float32),
             y_train=rng.integers(0, 10, 64),
             x_test=rng.random((32, 28, 28, 1), dtype=np.float32),
             y_test=rng.integers(0, 10, 32))
    recipe = {"name": "ptq", "model": "lenet_300_100",
              "data": {"name": str(npz)}, "train": {"epochs": 1},
              "variants": [{"name": "adaround4", "stages": [
                  {"ptq": {"steps": ["adaround"], "weight_bits": 4,
                           "iterations": 5, "samples": 32}},
                  {"convert": {"mode": "int8", "samples": 32}}]}]}
    path = tmp_path / "ptq.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run_recipe(str(path), out_dir=str(tmp_path / "run"))
    tflite = tmp_path / "run" / "variants" / "adaround4" / "1_convert.tflite"
    bits = {w["bits"] for w in inspect(str(tflite))["weights"]
            if w["params"] > 1000}
    assert bits == {4}
