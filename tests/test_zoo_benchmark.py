"""benchmarks/zoo.py: its options, the aims it derives from measured
figures, and (heavy) one ``--quick`` run end to end."""

import json
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)
import zoo  # noqa: E402


def test_quick_sets_small_defaults_and_explicit_options_win():
    default = zoo.parse_args([]).epochs   # explicit, equal to the default
    args = zoo.parse_args(["--quick", "--epochs", str(default)])
    assert args.models == "mobilenet_v2"
    assert args.train_samples == zoo.QUICK["train_samples"]
    assert args.test_samples >= zoo.AGREEMENT_SAMPLES
    assert args.epochs == default != zoo.QUICK["epochs"]
    assert args.name == "zoo_quick"


def test_unknown_model_is_refused_with_the_choices():
    with pytest.raises(SystemExit):
        zoo.parse_args(["--models", "resnet18"])


def _row(qat_ops, qat_p50=1.0, agreement=0.99):
    conv_ops = {"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1}
    return {"float_fair_accuracy": 0.80, "paths": {
        "float32": {"size_bytes": 400, "gzip_bytes": 380,
                    "p50_ms_xnnpack": 4.0, "p50_ms_no_xnnpack": 8.0},
        "ptq_int8": {"size_bytes": 100, "gzip_bytes": 90,
                     "tflite_accuracy": 0.79, "p50_ms_xnnpack": 2.0,
                     "p50_ms_no_xnnpack": 4.0},
        "qat_int8": {"size_bytes": 100, "gzip_bytes": 90,
                     "tflite_accuracy": 0.797, "op_counts": qat_ops,
                     "p50_ms_xnnpack": qat_p50, "p50_ms_no_xnnpack": 2.0,
                     "agreement": {"top1_agreement": agreement,
                                   "samples": 200}},
        "converter_ptq_int8": {"size_bytes": 100, "gzip_bytes": 90,
                               "op_counts": conv_ops,
                               "p50_ms_xnnpack": 1.0,
                               "p50_ms_no_xnnpack": 2.0},
        "channel_int8": {"size_bytes": 50, "gzip_bytes": 45,
                         "tflite_accuracy": 0.78, "p50_ms_xnnpack": 1.0,
                         "p50_ms_no_xnnpack": 2.0}}}


def test_same_ops_and_latency_as_the_converter_meets_the_aims():
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1})
    zoo.finish(row)
    aims = row["aims"]
    assert aims["qat_p50_within_5pct_of_converter_ptq"]["met"] is True
    assert aims["qat_p50_within_5pct_of_converter_ptq"][
        "op_difference"] == {}
    assert aims["qat_top1_agreement_98"]["met"] is True
    assert aims["qat_within_0.5_points"]["met"] is True
    assert aims["channel_1.5x_at_1.5_points"]["speedup"] == 2.0


def test_extra_quantize_pairs_and_slower_qat_miss_the_aims():
    row = _row({"CONV_2D": 10, "QUANTIZE": 3, "DEQUANTIZE": 3, "MUL": 1},
               qat_p50=1.2, agreement=0.9)
    zoo.finish(row)
    aim = row["aims"]["qat_p50_within_5pct_of_converter_ptq"]
    assert aim["met"] is False
    assert aim["op_difference"] == {"QUANTIZE": 2, "DEQUANTIZE": 2,
                                    "MUL": 1}
    assert row["aims"]["qat_top1_agreement_98"]["met"] is False
    assert "MISSED" in "\n".join(zoo.aim_lines({"m": row}))


def test_qat_p50_aim_is_judged_on_the_pair_timed_side_by_side():
    """The all-flatbuffer round gave QAT 1.2x the converter's p50; the
    pair timed alternately on its own (more rounds) gives 1.02x: the aim
    reads the pair, and both ratios are kept."""
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1}, qat_p50=1.2)
    row["paths"]["qat_int8"]["pair_p50_ms"] = {"xnnpack": 1.02,
                                               "no_xnnpack": 2.0}
    row["paths"]["converter_ptq_int8"]["pair_p50_ms"] = {
        "xnnpack": 1.0, "no_xnnpack": 2.0}
    zoo.finish(row)
    aim = row["aims"]["qat_p50_within_5pct_of_converter_ptq"]
    assert aim["met"] is True
    assert aim["ratio_xnnpack"] == 1.02 and aim["timing"] == "pair"
    assert row["paths"]["qat_int8"]["p50_vs_converter_ptq"]["xnnpack"] == \
        pytest.approx(1.2)


def test_pair_timing_times_qat_and_converter_flatbuffers_alternately(
        monkeypatch):
    calls = []

    def p50(paths, runs, repeats, xnnpack=True):
        calls.append((tuple(paths), repeats, xnnpack))
        return {p: 1.0 + i for i, p in enumerate(paths)}
    monkeypatch.setattr(zoo.common, "alternating_p50", p50)
    row = {"paths": {"qat_int8": {"path": "q.tflite"},
                     "converter_ptq_int8": {"path": "c.tflite"},
                     "ptq_int8": {"path": "p.tflite"}}}
    zoo.time_pairs({"m": row}, runs=50)
    assert calls == [(("q.tflite", "c.tflite"), zoo.PAIR_REPEATS, True),
                     (("q.tflite", "c.tflite"), zoo.PAIR_REPEATS, False)]
    assert row["paths"]["qat_int8"]["pair_p50_ms"] == {"xnnpack": 1.0,
                                                       "no_xnnpack": 1.0}
    assert row["paths"]["converter_ptq_int8"]["pair_p50_ms"] == {
        "xnnpack": 2.0, "no_xnnpack": 2.0}


def test_agreement_aim_is_judged_as_keras_evaluates_and_shows_device_rounding():
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1},
               agreement=0.97)
    row["paths"]["qat_int8"]["agreement"]["device_rounding"] = {
        "top1_agreement": 0.995, "mean_error_steps": 0.05}
    zoo.finish(row)
    aim = row["aims"]["qat_top1_agreement_98"]
    assert aim["met"] is False and aim["with_device_rounding"] == 0.995
    line = next(l for l in zoo.aim_lines({"m": row}) if "agrees" in l)
    assert "**MISSED** (97.00% of 200 inputs; inside " \
        "quantize.device_rounding: 99.50%)" in line


@pytest.mark.slow
@pytest.mark.heavy
def test_quick_run_writes_every_path(tmp_path, monkeypatch):
    """The --quick run end to end (minutes): every tfcompress path of
    MobileNetV2 gives a fully integer flatbuffer, timed and checked."""
    import common
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    zoo.main(["--quick", "--no-tfmot", "--runs", "3",
              "--keep", str(tmp_path / "fb")])
    out = json.loads((tmp_path / "zoo_quick.json").read_text())
    paths = out["models"]["mobilenet_v2"]["paths"]
    for key in ("ptq_int8", "qat_int8", "pruned_pqat_int8", "channel_int8",
                "converter_ptq_int8"):
        assert "error" not in paths[key], paths[key]
        assert paths[key]["fully_integer"], key
        assert paths[key]["p50_ms_xnnpack"] > 0
    assert paths["qat_int8"]["agreement"]["samples"] >= 200
    secs = out["models"]["mobilenet_v2"]["path_seconds"]
    assert {"float_training", "qat_int8", "channel_int8"} <= set(secs)
    assert all(v > 0 for v in secs.values()), secs
    assert (tmp_path / "fb" / "mobilenet_v2_qat_int8.tflite").exists()
    assert "### Aims" in (tmp_path / "zoo_quick.md").read_text()


def test_paths_option_chooses_paths_and_refuses_unknown_ones():
    args = zoo.parse_args(["--paths", "channel_int8,ptq_int8"])
    assert args.paths.split(",") == ["channel_int8", "ptq_int8"]
    assert zoo.parse_args([]).paths.split(",") == zoo.PATH_KEYS
    with pytest.raises(SystemExit):
        zoo.parse_args(["--paths", "channel"])


def test_speed_size_takes_a_list_of_sides_of_at_least_32():
    assert zoo.parse_args(["--speed-size", "96,224"]).speed_sizes == \
        [96, 224]
    assert zoo.parse_args([]).speed_sizes == [96]
    assert zoo.parse_args(["--speed-size", ""]).speed_sizes == []
    with pytest.raises(SystemExit):
        zoo.parse_args(["--speed-size", "16"])


def test_only_the_speed_models_are_timed_at_the_speed_sizes():
    assert zoo.parse_args([]).speed_models == ["mobilenet_v2"]
    assert zoo.parse_args(["--speed-models", "all"]).speed_models == \
        zoo.parse_args([]).models.split(",")
    assert zoo.parse_args(["--speed-models", ""]).speed_models == []
    with pytest.raises(SystemExit):
        zoo.parse_args(["--speed-models", "mobilenet_v9"])
    args = zoo.parse_args(["--speed-models", "resnet20"])
    assert zoo.speed_sizes_of("resnet20", args) == [96]
    assert zoo.speed_sizes_of("mobilenet_v2", args) == []


def test_channel_aim_is_judged_at_the_trained_and_at_each_speed_size():
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1})
    row["size"] = 32
    row["speed"] = {"96": {
        "ptq_int8": {"macs": 100, "p50_ms_xnnpack": 3.0,
                     "p50_ms_no_xnnpack": 6.0},
        "channel_int8": {"macs": 40, "p50_ms_xnnpack": 1.5,
                         "p50_ms_no_xnnpack": 2.0}}}
    row["paths"]["channel_int8"]["p50_ms_xnnpack"] = 1.6   # 1.25x at 32
    zoo.finish(row)
    at32 = row["aims"]["channel_1.5x_at_1.5_points"]
    at96 = row["aims"]["channel_1.5x_at_1.5_points_96px"]
    assert (at32["met"], at32["size"]) == (False, 32)
    assert (at96["met"], at96["speedup"], at96["size"]) == (True, 2.0, 96)
    assert at96["drop_points"] == at32["drop_points"] == 1.0
    assert row["speed"]["96"]["channel_int8"]["mac_ratio"] == 0.4
    text = "\n".join(zoo.aim_lines({"m": row}))
    assert "at 32x32" in text and "at 96x96" in text
    assert "accuracy measured at the trained size" in text
    assert "speed-up missed, accuracy met" in text
    assert "speed-up met, accuracy met" in text


def test_channel_counts_sum_the_pruned_spaces():
    counts = zoo.channel_counts([{"channels": 8, "kept": 4},
                                 {"channels": 16, "kept": 8}])
    assert counts["prunable_channels"] == 24
    assert counts["kept_channels"] == 12
    assert counts["removed_channel_fraction"] == 0.5


def test_at_input_size_keeps_the_weights_at_a_larger_input():
    import keras
    import numpy as np
    m = zoo.build("mobilenet_v2", keras, 32)
    big = zoo.at_input_size(m, 64)
    assert tuple(big.input.shape) == (None, 64, 64, 3)
    assert len(big.weights) == len(m.weights)
    for a, b in zip(big.weights, m.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_markdown_shows_the_channel_steps_and_the_speed_sizes():
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1})
    row.update({"size": 32, "float_accuracy": 0.7, "params": 100,
                "speed": {"96": {
                    "ptq_int8": {"macs": 100, "size_bytes": 10,
                                 "p50_ms_xnnpack": 3.0,
                                 "p50_ms_no_xnnpack": 6.0},
                    "channel_int8": {"macs": 40, "size_bytes": 5,
                                     "p50_ms_xnnpack": 1.5,
                                     "p50_ms_no_xnnpack": 2.0}}}})
    row["paths"]["channel_int8"].update({
        "sparsity": 0.5, "kept_channels": 12, "prunable_channels": 24,
        "mac_ratio": 0.31, "params": 50, "params_ratio": 0.5,
        "masked_keras_accuracy": 0.7, "shrunk_keras_accuracy": 0.7,
        "shrink_max_abs_logit_difference": 1e-6,
        "shrunk_bn_reestimated_keras_accuracy": 0.69,
        "keras_accuracy": 0.75})
    zoo.finish(row)
    del row["paths"]["qat_int8"]   # not chosen with --paths
    args = zoo.parse_args(["--paths", "ptq_int8,channel_int8"])
    args.command = "zoo.py"
    text = zoo.markdown({"mobilenet_v2": row}, args)
    assert "| mobilenet_v2 | 50% | 12 / 24 | 31.0% |" in text
    assert "| mobilenet_v2 | 96x96 | channel-pruned int8 | 40 |" in text
    assert "2.00 / 3.00" in text
    assert "QAT int8 | failed" not in text
    assert "batch norm frozen after 0 steps (freeze_bn_delay)" in text
    assert "channel path's QAT with batch statistics throughout" in text
    args = zoo.parse_args(["--qat-freeze-bn-delay", "-1"])
    args.command = "zoo.py"
    text = zoo.markdown({"mobilenet_v2": row}, args)
    assert "freeze_bn_delay" not in text and "channel path's QAT" not in text


@pytest.mark.parametrize("steps", [8, 94, 188, 469])
def test_channel_schedule_reaches_its_sparsity_on_an_update_step(steps):
    import tensorflow as tf
    s = zoo.channel_schedule(0.5, steps)
    last = max(t for t in range(steps) if s.should_update(t))
    assert float(s(tf.constant(last, tf.int64))[1]) == 0.5


def test_a_path_left_out_with_paths_has_no_aim():
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1})
    del row["paths"]["qat_int8"]
    zoo.finish(row)
    assert not any(a.startswith("qat") for a in row["aims"])
    assert "channel_1.5x_at_1.5_points" in row["aims"]


def test_channel_ranking_options_are_parsed_and_reported():
    args = zoo.parse_args(["--channel-norm", "bn_gamma",
                           "--channel-distill"])
    assert (args.channel_norm, args.channel_distill) == ("bn_gamma", True)
    assert zoo.parse_args([]).channel_norm == "bn_gamma"
    with pytest.raises(SystemExit):
        zoo.parse_args(["--channel-norm", "gamma"])
    note = zoo.ranking_note([("m", {"norm": "bn_gamma", "distill": True})])
    assert "bn_gamma" in note and "distillation" in note


def test_channel_finetune_is_qat_by_default_and_reported():
    assert zoo.parse_args([]).channel_finetune == "qat"
    assert zoo.parse_args(["--channel-finetune", "float"]
                          ).channel_finetune == "float"
    with pytest.raises(SystemExit):
        zoo.parse_args(["--channel-finetune", "int8"])
    assert "with QAT" in zoo.ranking_note(
        [("m", {"norm": "l1", "finetune": "qat"})])
    assert "post-training int8" in zoo.ranking_note(
        [("m", {"norm": "l1", "finetune": "float"})])


def test_channel_allocation_is_parsed_and_reported():
    assert zoo.parse_args([]).channel_allocation == "uniform"
    assert zoo.parse_args(["--channel-allocation", "global"]
                          ).channel_allocation == "global"
    with pytest.raises(SystemExit):
        zoo.parse_args(["--channel-allocation", "layer"])
    assert "global allocation" in zoo.ranking_note(
        [("m", {"norm": "bn_gamma", "allocation": "global"})])
    assert "global" not in zoo.ranking_note([("m", {"norm": "bn_gamma"})])


def test_finetune_learning_rate_is_parsed_passed_on_and_reported():
    args = zoo.parse_args(["--finetune-lr", "0.001"])
    assert args.finetune_lr == 0.001
    with pytest.raises(SystemExit):
        zoo.parse_args(["--finetune-lr", "0"])
    cmd = zoo.model_side_command("resnet20", args, "/tmp/out")
    assert cmd[cmd.index("--finetune-lr") + 1] == "0.001"
    assert "fine-tune learning rate 0.001" in zoo.markdown({}, args)


def test_cosine_schedule_decays_each_stage_to_zero_and_is_reported():
    import keras
    args = zoo.parse_args(["--finetune-schedule", "cosine"])
    rate = zoo.finetune_rate(args, keras, 1000, 2)   # 8 batches x 2 epochs
    assert float(rate(0)) == pytest.approx(args.finetune_lr)
    assert float(rate(8)) == pytest.approx(args.finetune_lr / 2)
    assert float(rate(16)) == pytest.approx(0.0, abs=1e-9)
    cmd = zoo.model_side_command("resnet20", args, "/tmp/out")
    assert cmd[cmd.index("--finetune-schedule") + 1] == "cosine"
    assert "cosine decay to 0 within each stage" in zoo.markdown({}, args)
    assert zoo.parse_args([]).finetune_schedule == "cosine"
    constant = zoo.parse_args(["--finetune-schedule", "constant"])
    assert zoo.finetune_rate(constant, keras, 1000, 2) == constant.finetune_lr
    assert "cosine" not in zoo.markdown({}, constant)
    with pytest.raises(SystemExit):
        zoo.parse_args(["--finetune-schedule", "linear"])


def test_channel_schedule_overrides_the_finetune_schedule_for_that_path():
    import keras
    args = zoo.parse_args(["--finetune-schedule", "cosine",
                           "--channel-schedule", "constant"])
    cmd = zoo.model_side_command("resnet20", args, "/tmp/out")
    assert cmd[cmd.index("--channel-schedule") + 1] == "constant"
    assert zoo.finetune_rate(args, keras, 1000, 2, args.channel_schedule) \
        == args.finetune_lr
    assert not isinstance(zoo.finetune_rate(args, keras, 1000, 2), float)
    assert "the channel path's: constant" in zoo.markdown({}, args)
    default = zoo.parse_args([])
    assert default.channel_schedule == "constant"
    assert "the channel path's: constant" in zoo.markdown({}, default)
    same = zoo.parse_args(["--channel-schedule", "cosine"])
    assert "channel path's:" not in zoo.markdown({}, same)
    with pytest.raises(SystemExit):
        zoo.parse_args(["--channel-schedule", "linear"])


def test_qat_ema_decay_is_parsed_passed_on_and_reported():
    args = zoo.parse_args(["--qat-ema-decay", "0.99"])
    assert args.qat_ema_decay == 0.99
    cmd = zoo.model_side_command("resnet20", args, "/tmp/out")
    assert cmd[cmd.index("--qat-ema-decay") + 1] == "0.99"
    assert "ema_decay 0.99" in zoo.markdown({}, args)
    assert zoo.parse_args([]).qat_ema_decay == 0.999
    assert "ema_decay" not in zoo.markdown({}, zoo.parse_args([]))


def test_qat_activation_percentile_is_parsed_passed_on_and_reported():
    args = zoo.parse_args([])
    assert args.qat_activation_percentile == 99.99
    assert zoo.range_percentile(args.qat_activation_percentile) == 99.99
    cmd = zoo.model_side_command("resnet20", args, "/tmp/out")
    assert cmd[cmd.index("--qat-activation-percentile") + 1] == "99.99"
    assert "99.99th percentile" in zoo.markdown({}, args)
    minmax = zoo.parse_args(["--qat-activation-percentile", "100"])
    assert zoo.range_percentile(minmax.qat_activation_percentile) is None
    assert "th percentile" not in zoo.markdown({}, minmax)
    for bad in ("50", "100.5"):
        with pytest.raises(SystemExit):
            zoo.parse_args(["--qat-activation-percentile", bad])


def test_qat_freezes_batch_norm_and_the_channel_path_keeps_batch_statistics():
    args = zoo.parse_args([])
    assert zoo.freeze_delay(args.qat_freeze_bn_delay) == 0
    assert zoo.freeze_delay(args.channel_freeze_bn_delay) is None
    cmd = zoo.model_side_command("resnet20", args, "/tmp/out")
    assert cmd[cmd.index("--channel-freeze-bn-delay") + 1] == "-1"
    both = zoo.parse_args(["--channel-freeze-bn-delay", "0"])
    text = zoo.markdown({}, both)
    assert "frozen after 0 steps" in text
    assert "channel path's QAT" not in text
    late = zoo.parse_args(["--channel-freeze-bn-delay", "50"])
    assert "channel path's QAT with batch norm frozen after 50 steps" \
        in zoo.markdown({}, late)


def test_qat_aim_compares_with_the_float_model_trained_as_long():
    # QAT fine-tunes F epochs from the E-epoch float model: its baseline is
    # the float model after E + F epochs, not the fair float after E + 2F
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1})
    row["float_accuracy_plus_f"] = 0.799
    zoo.finish(row)
    aim = row["aims"]["qat_within_0.5_points"]
    assert aim["drop_points"] == pytest.approx(0.2)
    assert aim["baseline"] == "float_accuracy_plus_f"


def test_a_drop_of_exactly_the_tolerance_meets_the_aims():
    # accuracies are counts over the test images: 0.7155 - 0.7105 is ten
    # images of 2,000, exactly 0.5 points, though 100 * the float
    # difference is 0.5000000000000004
    row = _row({"CONV_2D": 10, "QUANTIZE": 1, "DEQUANTIZE": 1})
    row["float_accuracy_plus_f"] = 0.7155
    row["paths"]["qat_int8"]["tflite_accuracy"] = 0.7105
    row["paths"]["ptq_int8"]["tflite_accuracy"] = 0.7335
    row["paths"]["channel_int8"]["tflite_accuracy"] = 0.7185
    zoo.finish(row)
    assert row["aims"]["qat_within_0.5_points"]["met"] is True
    assert row["aims"]["channel_1.5x_at_1.5_points"]["met"] is True


def test_converter_ptq_prints_nothing(capsys):
    import keras
    import numpy as np
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D()])
    calib = np.random.default_rng(0).random((4, 8, 8, 3), np.float32)
    tflite_bytes, _ = zoo.converter_int8(model, calib)
    assert tflite_bytes[4:8] == b"TFL3"
    assert capsys.readouterr().out == ""


def test_tfmot_side_starts_from_the_same_float_weights(tmp_path):
    # tfmot's tf_keras model loads tfcompress's E-epoch float weights, so
    # both sides compress the same float model
    import keras
    import numpy as np
    import tf_keras
    ours = zoo.build("resnet20", keras, 32)
    theirs = zoo.build("resnet20", tf_keras, 32)
    path = zoo.start_weights_path(str(tmp_path), "resnet20")
    zoo.save_start_weights(ours, path)
    assert zoo.load_start_weights(theirs, path)
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    np.testing.assert_allclose(theirs(x).numpy(),
                               np.asarray(ours(x)), atol=1e-5)


def test_start_weights_of_another_architecture_are_refused(tmp_path):
    import keras
    import numpy as np
    path = zoo.start_weights_path(str(tmp_path), "resnet20")
    zoo.save_start_weights(zoo.resnet20(keras, (32, 32, 3)), path)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    before = [w.copy() for w in other.get_weights()]
    assert not zoo.load_start_weights(other, path)
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_model_process_gets_every_option_run_model_reads():
    args = zoo.parse_args(["--epochs", "3", "--finetune-epochs", "2",
                           "--train-samples", "500", "--size", "48",
                           "--paths", "qat_int8,ptq_int8",
                           "--channel-norm", "l1", "--channel-distill",
                           "--speed-size", "96", "--channel-sparsity", "0.3",
                           "--speed-models", "resnet20,mobilenet_v2",
                           "--qat-freeze-bn-delay", "0"])
    cmd = zoo.model_side_command("resnet20", args, "/tmp/x")
    child = zoo.parse_args(cmd[2:])
    assert child.model_side == "resnet20" and child.models == "resnet20"
    assert child.jobs == 1 and child.out == "/tmp/x"
    for key in zoo.MODEL_SIDE_OPTIONS + ("test_samples",
                                         "calibration_samples"):
        assert getattr(child, key) == getattr(args, key), key
    assert child.speed_sizes == [96]
    assert child.speed_models == ["resnet20", "mobilenet_v2"]
    assert child.qat_freeze_bn_delay == 0


def test_jobs_must_be_positive():
    with pytest.raises(SystemExit):
        zoo.parse_args(["--jobs", "0"])


def test_one_model_runs_in_this_process():
    assert zoo.parse_args(["--models", "resnet20"]).jobs == 1
    assert zoo.parse_args(["--models", "resnet20,mobilenet_v2",
                           "--jobs", "4"]).jobs == 2


def test_training_processes_get_the_thread_count():
    args = zoo.parse_args(["--models", "resnet20,mobilenet_v2",
                           "--threads", "1"])
    assert zoo.parse_args(["--models", "resnet20"]).threads == 0
    for side, options in (("model-side", zoo.MODEL_SIDE_OPTIONS),
                          ("tfmot-side", zoo.TFMOT_SIDE_OPTIONS)):
        cmd = zoo.side_command(side, "resnet20", args, "/tmp/x", options)
        assert cmd[cmd.index("--threads") + 1] == "1"
    with pytest.raises(SystemExit):
        zoo.parse_args(["--threads", "-1"])


def test_training_processes_get_the_onednn_setting(monkeypatch):
    # TensorFlow reads TF_ENABLE_ONEDNN_OPTS at import: each training
    # process, tfcompress's and tfmot's, gets it in its environment
    import subprocess
    seen = []

    class Done:
        returncode, stdout, stderr = 0, "{}\n", ""

    def popen(cmd, env=None, **kw):
        seen.append(env.get("TF_ENABLE_ONEDNN_OPTS"))
        raise RuntimeError("not started")

    def run(cmd, env=None, **kw):
        seen.append(env.get("TF_ENABLE_ONEDNN_OPTS"))
        return Done()
    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "as set")
    for choice, want in (("on", "1"), ("off", "0"), ("default", "as set")):
        args = zoo.parse_args(["--models", "efficientnet_b0,resnet20",
                               "--onednn", choice])
        seen.clear()
        with pytest.raises(RuntimeError):
            zoo.run_model_side("resnet20", args, "/tmp/x")
        zoo.run_tfmot("resnet20", args, "/tmp/x")
        assert seen == [want, want], choice
    assert zoo.parse_args([]).onednn == "default"
    with pytest.raises(SystemExit):
        zoo.parse_args(["--onednn", "maybe"])


def test_the_report_names_the_onednn_setting_each_model_trained_with():
    args = zoo.parse_args(["--models", "resnet20"])
    text = zoo.markdown({"resnet20": {"onednn": "on", "error": "x"}}, args)
    assert "oneDNN (TF_ENABLE_ONEDNN_OPTS) while training: resnet20 on" \
        in text


def test_one_process_run_takes_the_onednn_setting(monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "as set")
    zoo.use_onednn_here(zoo.parse_args(["--models", "resnet20"]))
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "as set"
    zoo.use_onednn_here(zoo.parse_args(["--models", "resnet20",
                                        "--onednn", "off"]))
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_tfmot_process_gets_the_options_its_side_reads():
    args = zoo.parse_args(["--epochs", "3", "--finetune-epochs", "2",
                           "--train-samples", "500", "--size", "48",
                           "--calibration-samples", "50"])
    cmd = zoo.side_command("tfmot-side", "resnet20", args, "/tmp/x",
                           zoo.TFMOT_SIDE_OPTIONS)
    child = zoo.parse_args(cmd[2:])
    assert child.tfmot_side == "resnet20" and child.out == "/tmp/x"
    for key in zoo.TFMOT_SIDE_OPTIONS:
        assert getattr(child, key) == getattr(args, key), key


def test_tfmot_side_is_a_task_of_its_own_once_its_model_is_done(
        tmp_path, monkeypatch):
    # it ran inside its model's pipeline, lengthening the longest one
    # (EfficientNetB0) while the other job's core had nothing left to do
    import threading
    import time
    import common
    events, lock = [], threading.Lock()

    def log(*event):
        with lock:
            events.append(event)

    def model_side(name, args, tmp):
        log("model", name)
        time.sleep(0.3 if name == "efficientnet_b0" else 0.05)
        log("model done", name)
        return {"paths": {}}

    def tfmot_side(name, args, tmp):
        log("tfmot", name)
        return {"wall_seconds": 2.0}
    monkeypatch.setattr(zoo, "run_model_side", model_side)
    monkeypatch.setattr(zoo, "run_tfmot", tfmot_side)
    monkeypatch.setattr(zoo, "time_and_report", lambda *a: None)
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    results = zoo.main(["--models", "mobilenet_v2,resnet20,efficientnet_b0",
                        "--jobs", "2", "--keep", str(tmp_path)])
    assert events[0] == ("model", "efficientnet_b0")   # the longest first
    for name in ("mobilenet_v2", "resnet20", "efficientnet_b0"):
        assert events.index(("tfmot", name)) > events.index(
            ("model done", name))
        assert results[name]["tfmot"] == {"wall_seconds": 2.0}
        assert results[name]["wall_seconds"] >= 2.0
    # the short models' tfmot sides ran while EfficientNetB0 trained
    assert events.index(("tfmot", "resnet20")) < events.index(
        ("model done", "efficientnet_b0"))


def test_channel_path_starts_f_epochs_before_the_float_model_ends():
    args = zoo.parse_args(["--epochs", "6", "--finetune-epochs", "2"])
    assert args.channel_start_epoch == 4
    assert zoo.parse_args(["--epochs", "1", "--finetune-epochs", "2"]
                          ).channel_start_epoch == 0
    with pytest.raises(SystemExit):
        zoo.parse_args(["--epochs", "6", "--channel-start-epoch", "7"])


@pytest.mark.parametrize("epoch", [0, 2, 3])
def test_channel_start_keeps_the_weights_after_that_epoch(epoch):
    import keras
    import numpy as np
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.ones((4, 3), np.float32)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, index, logs=None):
            seen.append(self.model.get_weights()[0].copy())
    initial = model.get_weights()[0].copy()
    start = zoo.channel_start(keras, epoch)
    model.fit(x, np.zeros((4, 2)), epochs=3, verbose=0,
              callbacks=[start, Record()])
    expected = initial if epoch == 0 else seen[epoch - 1]
    np.testing.assert_array_equal(start.weights[0], expected)
    assert len({w.tobytes() for w in [initial] + seen}) == 4


def test_retiming_a_finished_run_finds_its_kept_flatbuffers(tmp_path):
    (tmp_path / "m_qat_int8.tflite").write_bytes(b"x")
    results = {"m": {"paths": {"qat_int8": {"file": "m_qat_int8.tflite"},
                               "float32": {"error": "refused"}},
                     "speed": {"96": {"ptq_int8": {
                         "file": "m_ptq_int8_96.tflite"}}}}}
    missing = zoo.kept_paths(results, str(tmp_path))
    assert results["m"]["paths"]["qat_int8"]["path"] == str(
        tmp_path / "m_qat_int8.tflite")
    assert "path" not in results["m"]["paths"]["float32"]
    assert missing == ["m_ptq_int8_96.tflite"]
