"""benchmarks/qat_activation_groups.py: its groups and its table."""

import os
import sys

import keras

BENCH = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)
import qat_activation_groups as groups  # noqa: E402


def test_each_kind_of_block_layer_forms_one_group():
    model = keras.applications.EfficientNetB0(
        input_shape=(32, 32, 3), weights=None, classes=10)
    found = {}
    for layer in model.layers:
        found.setdefault(groups.group_of("quant_" + layer.name), []).append(
            layer.name)
    assert len(found["add"]) == 9            # the residual sums
    assert len(found["project_conv"]) == 16  # one per block
    assert found["stem_conv"] == ["stem_conv"]


def test_table_orders_groups_by_cost_and_gives_points():
    args = groups.parse_args(["--models", "efficientnet_b0"])
    row = {"float_start": 0.69, "quantizers": 3, "int16": 0.74,
           "int8_ema_ranges": 0.72,
           "int8_percentile_ranges": {"99.99": 0.73},
           "groups": {"dwconv": {"quantizers": 1, "accuracy": 0.745},
                      "add": {"quantizers": 2, "accuracy": 0.731}}}
    text = groups.markdown({"efficientnet_b0": row}, args)
    assert text.index("| add | 2 | 0.7310 | -0.90 |") < text.index(
        "| dwconv | 1 | 0.7450 | +0.50 |")
    assert "0.7300 (p99.99 ranges)" in text
