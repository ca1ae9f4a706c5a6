"""benchmarks/zoo_coverage.py: the cell-level --merge and the header that
names the command behind every cell (tiny fake tables, no models)."""

import os
import sys

BENCH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)
import zoo_coverage as zc  # noqa: E402

OLD = {"command": "old run", "seconds": 10.0}
PREVIOUS = {
    "columns": ["prune", "PTQ int8"],
    "rows": {"A": {"prune": "ok (old A)", "PTQ int8": "old A int8"},
             "B": {"prune": "ok (old B)", "PTQ int8": "old B int8"}},
    "sources": {"A": {"prune": 0, "PTQ int8": 0},
                "B": {"prune": 0, "PTQ int8": 0}},
    "commands": [OLD],
}
NEW = {"command": "new run", "seconds": 2.0}


def test_merge_replaces_only_the_cells_run_and_keeps_the_others():
    table = zc.merge(PREVIOUS, {"A": {"PTQ int8": "ok (new)"}}, ["A"],
                     ["PTQ int8"], ["prune", "PTQ int8"], ["A", "B"], NEW)
    assert table["rows"] == {
        "A": {"prune": "ok (old A)", "PTQ int8": "ok (new)"},
        "B": {"prune": "ok (old B)", "PTQ int8": "old B int8"}}
    assert table["commands"] == [OLD, NEW]
    assert table["sources"] == {"A": {"prune": 0, "PTQ int8": 1},
                                "B": {"prune": 0, "PTQ int8": 0}}


def test_merge_marks_a_selected_cell_not_reached_as_not_run():
    table = zc.merge(PREVIOUS, {}, ["A"], ["PTQ int8"],
                     ["prune", "PTQ int8"], ["A", "B"], NEW)
    assert table["rows"]["A"]["PTQ int8"] == zc.NOT_RUN
    assert table["rows"]["A"]["prune"] == "ok (old A)"


def test_merge_drops_a_command_whose_cells_were_all_rerun():
    table = zc.merge(PREVIOUS, {"A": {"prune": "p", "PTQ int8": "q"},
                                "B": {"prune": "p", "PTQ int8": "q"}},
                     ["A", "B"], ["prune", "PTQ int8"],
                     ["prune", "PTQ int8"], ["A", "B"], NEW)
    assert table["commands"] == [NEW]
    assert {i for row in table["sources"].values()
            for i in row.values()} == {0}


def test_a_table_without_sources_counts_as_earlier_invocations():
    legacy = {"command": "old run", "columns": ["prune", "PTQ int8"],
              "rows": {"A": {"prune": "ok", "PTQ int8": zc.NOT_RUN_OLD}}}
    table = zc.merge(legacy, {"B": {"PTQ int8": "ok"}}, ["B"],
                     ["PTQ int8"], ["prune", "PTQ int8"], ["A", "B"], NEW)
    assert table["commands"][0]["earlier"] is True
    assert table["sources"]["A"] == {"prune": 0, "PTQ int8": None}
    # a row new in this run has no earlier cells to keep
    assert table["rows"]["B"] == {"prune": zc.NOT_RUN_OLD,
                                  "PTQ int8": "ok"}
    assert table["sources"]["B"] == {"prune": None, "PTQ int8": 1}


def test_header_names_each_command_with_the_cells_it_wrote():
    table = zc.merge(PREVIOUS, {"A": {"PTQ int8": "ok (new)"}}, ["A"],
                     ["PTQ int8"], ["prune", "PTQ int8"], ["A", "B"], NEW)
    lines = zc.provenance_lines(table, ["prune", "PTQ int8"])
    assert lines == ["- `old run` (10 s): prune of A; all columns of B.",
                     "- `new run` (2 s): PTQ int8 of A."]


def test_int8_cell_names_the_layers_of_the_float_ops_and_kept_float():
    kinds = {"ln_1": "LayerNormalization", "ln_2": "LayerNormalization",
             "ln_3": "LayerNormalization", "ls_1": "LayerScale"}
    status = {"status": "float_ops", "ops": {"NEG": 3, "ADD": 4},
              "float_ops": ["NEG (ln_1)", "NEG (ln_2)", "NEG (ln_3)"],
              "float_op_count": 3,
              "kept_float": ["ln_1", "ln_2", "ln_3", "ls_1"]}
    assert zc._int8_cell(status, kinds) == (
        "strict fails: 3 float ops: NEG in 3 LayerNormalization (ln_1, "
        "ln_2, ... 1 more); kept float by QAT: 4 layers (3 "
        "LayerNormalization, 1 LayerScale); strict=False converts (7 ops) "
        "and lists them")


def test_int8_cell_counts_every_float_op_not_each_op_and_layer_once():
    # a LayerNormalization kept float is several MUL and ADD ops: the
    # status names "MUL (ln_1)" once but the flatbuffer has two
    kinds = {"ln_1": "LayerNormalization"}
    status = {"status": "float_ops", "ops": {"MUL": 2, "ADD": 2, "NEG": 1},
              "float_ops": ["ADD (ln_1)", "MUL (ln_1)", "NEG (ln_1)"],
              "float_op_count": 5, "kept_float": ["ln_1"]}
    assert zc._int8_cell(status, kinds).startswith(
        "strict fails: 5 float ops: ADD in 1 LayerNormalization (ln_1); ")


def test_header_of_gathered_cells_names_the_run_that_made_them():
    gathered = {"command": "collect", "seconds": None,
                "gathered": ["the run"]}
    table = zc.merge({}, {"A": {"PTQ int8": "ok"}}, ["A"], ["PTQ int8"],
                     ["PTQ int8"], ["A"], gathered)
    assert zc.provenance_lines(table, ["PTQ int8"]) == [
        "- `collect` gathering the results of `the run`: all columns of A."]


def test_operations_train_a_model_with_feature_map_outputs():
    """include_top=False, pooling=None: the one training step fits the
    feature maps instead of failing on class labels."""
    import keras
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(i)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    model = keras.Model(i, x)
    assert zc.prune_op(model) == "ok (2 layers at 50%)"
    assert zc.channel_op(keras.models.clone_model(model)).startswith(
        "ok (1/2 spaces")


def test_channel_op_compares_outputs_without_xla_rounding():
    """MobileNetV2 at alpha 1.3, batch norms set from data: predict()'s
    XLA rounding put the shrunk model 0.1% from the masked one; computed
    directly they agree within zc.SHRINK_TOLERANCE (7.8e-4 on one CPU,
    under 1e-4 on another)."""
    import keras
    from tfcompress.quantize import zoo
    from tfcompress.utils.zoo import build
    keras.utils.set_random_seed(0)
    model = build("MobileNetV2", alpha=1.3)
    zoo.calibrate_batchnorm(model, zoo.zoo_inputs(model, 8, 1, False))
    assert zc.channel_op(model).startswith("ok (")
