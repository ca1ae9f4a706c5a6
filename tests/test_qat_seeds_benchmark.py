"""benchmarks/qat_seeds.py: its options, per-seed summary and table."""

import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)
import qat_seeds  # noqa: E402


def test_summary_is_mean_and_sample_sd_in_points():
    s = qat_seeds.summary([0.02, 0.0, -0.005])
    assert s["mean_points"] == pytest.approx(0.5)
    assert s["sd_points"] == pytest.approx(1.3228757, rel=1e-6)
    assert s["runs"] == 3
    assert qat_seeds.summary([0.01])["sd_points"] == 0.0


def test_unknown_model_and_zero_seeds_are_refused():
    with pytest.raises(SystemExit):
        qat_seeds.parse_args(["--models", "resnet18"])
    with pytest.raises(SystemExit):
        qat_seeds.parse_args(["--seeds", "0"])


def test_table_lists_every_seed_and_the_signed_mean():
    args = qat_seeds.parse_args(["--models", "resnet20", "--seeds", "2"])
    row = {"float_start_accuracy": 0.8, "seeds": [
        {"seed": 1, "float": 0.85, "qat_int8": 0.84},
        {"seed": 2, "float": 0.86, "qat_int8": 0.87}]}
    row.update(qat_seeds.summary([-0.01, 0.01]))
    text = qat_seeds.markdown({"resnet20": row}, args)
    assert "| resnet20 | 0.8000 | 0.8500 / 0.8400; 0.8600 / 0.8700 | " \
           "+0.00 | 1.41 |" in text


def test_finetune_learning_rate_follows_the_zoo_and_is_reported():
    import zoo
    assert qat_seeds.parse_args([]).finetune_lr == zoo.parse_args(
        []).finetune_lr
    args = qat_seeds.parse_args(["--finetune-lr", "0.002"])
    assert args.finetune_lr == 0.002
    assert "learning rate 0.002" in qat_seeds.markdown({}, args)


def test_ema_decay_follows_the_zoo_and_is_reported():
    import zoo
    assert qat_seeds.parse_args([]).ema_decay == zoo.parse_args(
        []).qat_ema_decay
    args = qat_seeds.parse_args(["--ema-decay", "0.99"])
    assert "QAT ema_decay 0.99" in qat_seeds.markdown({}, args)


def test_activation_percentile_follows_the_zoo_and_is_reported():
    import zoo
    default = qat_seeds.parse_args([])
    assert default.activation_percentile == zoo.parse_args(
        []).qat_activation_percentile == 99.99
    assert zoo.range_percentile(default.activation_percentile) == 99.99
    assert "activation_percentile 99.99" in qat_seeds.markdown({}, default)
    minmax = qat_seeds.parse_args(["--activation-percentile", "100"])
    assert zoo.range_percentile(minmax.activation_percentile) is None
    assert "activation_percentile" not in qat_seeds.markdown({}, minmax)


def test_schedule_and_freeze_bn_delay_follow_the_zoo_and_are_reported():
    import zoo
    default = qat_seeds.parse_args([])
    assert default.finetune_schedule == zoo.parse_args([]).finetune_schedule
    assert default.freeze_bn_delay == zoo.parse_args([]).qat_freeze_bn_delay
    text = qat_seeds.markdown({}, default)
    assert "cosine decay to 0" in text and "freeze_bn_delay 0" in text
    args = qat_seeds.parse_args(["--finetune-schedule", "constant",
                                 "--freeze-bn-delay", "-1"])
    text = qat_seeds.markdown({}, args)
    assert "cosine" not in text and "freeze_bn_delay" not in text


def test_float_freeze_bn_freezes_every_batchnorm_and_is_reported():
    import keras
    assert qat_seeds.parse_args([]).float_freeze_bn is False
    args = qat_seeds.parse_args(["--float-freeze-bn"])
    assert "float with batch norm frozen" in qat_seeds.markdown({}, args)
    assert "float with batch norm frozen" not in qat_seeds.markdown(
        {}, qat_seeds.parse_args([]))
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.BatchNormalization()])
    outer = keras.Sequential([keras.Input((4,)), inner,
                              keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    qat_seeds.freeze_batchnorm(outer)
    bns = [l for l in [*outer.layers, *inner.layers]
           if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 2 and not any(l.trainable for l in bns)
    assert outer.layers[-1].trainable and inner.layers[0].trainable
