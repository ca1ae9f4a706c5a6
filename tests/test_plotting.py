"""PNG figures: matplotlib's Agg backend, saved atomically, always closed
(tfcompress.utils.plotting), and the report plots drawn with it."""

import os
import types

import pytest


def _open_figures():
    import matplotlib.pyplot as plt
    return len(plt.get_fignums())


def test_png_figure_writes_a_png_and_closes_the_figure(tmp_path):
    from tfcompress.utils.plotting import png_figure
    path = tmp_path / "line.png"
    before = _open_figures()
    with png_figure(path, figsize=(3, 2), dpi=50) as (fig, ax):
        ax.plot([0, 1], [1, 0])
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert _open_figures() == before
    assert sorted(os.listdir(tmp_path)) == ["line.png"]


def test_png_figure_gives_a_grid_of_axes(tmp_path):
    from tfcompress.utils.plotting import png_figure
    with png_figure(tmp_path / "two.png", ncols=2, figsize=(4, 2),
                    dpi=50) as (fig, axes):
        assert len(axes) == 2


def test_png_figure_failing_drawing_leaves_no_file_and_no_figure(tmp_path):
    from tfcompress.utils.plotting import png_figure
    before = _open_figures()
    with pytest.raises(ValueError, match="bad data"):
        with png_figure(tmp_path / "bad.png") as (fig, ax):
            raise ValueError("bad data")
    assert os.listdir(tmp_path) == []
    assert _open_figures() == before


def test_tune_pareto_plot_is_a_png(tmp_path):
    from tfcompress.tune.report import plot
    candidates = [{"label": f"c{i}", "val_accuracy": 0.8 + i / 100,
                   "gzip_bytes": 1000 * (i + 1)} for i in range(3)]
    result = types.SimpleNamespace(
        objective="size", candidates=candidates, budget=1.0,
        reference={"val_accuracy": 0.83}, chosen=candidates[1])
    path = plot(result, str(tmp_path / "pareto.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_recipe_pareto_plot_is_a_png(tmp_path):
    from tfcompress.recipes.report import pareto
    rows = [{"variant": "int8", "gzip_bytes": 2000, "p50_ms": 0.5,
             "tflite_accuracy": 0.8},
            {"variant": "float32", "gzip_bytes": 8000, "p50_ms": None,
             "tflite_accuracy": 0.81}]
    path = tmp_path / "pareto.png"
    pareto(rows, str(path))
    assert path.read_bytes()[:4] == b"\x89PNG"
