"""Recipe keys ``qat.layer_bits``, ``qat.freeze_bn_delay``, ``qat.ema_decay``
and ``qat.activation_percentile`` (also under the stage name
``quantize``)."""

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import quantize
from tfcompress.errors import InputError
from tfcompress.recipes import stages
from tfcompress.recipes.schema import RecipeError, load_recipe_text


def _recipe(stage):
    return ("model: lenet_300_100\nvariants:\n  - name: v\n    stages:\n"
            f"      - {stage}\n")


def _qat_params(text):
    return load_recipe_text(text, "r.yaml")["variants"][0]["stages"][0]


def test_layer_bits_mapping_is_validated_and_kept():
    stage = _qat_params(_recipe("qat: {scheme: n_bit, weight_bits: 8, "
                                "layer_bits: {fc1: 4, fc2: 8}}"))
    assert stage["qat"]["layer_bits"] == {"fc1": 4, "fc2": 8}


def test_layer_bits_default_is_unset():
    assert _qat_params(_recipe("qat: {}"))["qat"]["layer_bits"] is None


def test_quantize_is_another_name_for_the_qat_stage():
    stage = _qat_params(_recipe("quantize: {layer_bits: {fc1: 4}}"))
    assert list(stage) == ["qat"]
    assert stage["qat"]["layer_bits"] == {"fc1": 4}


@pytest.mark.parametrize("value,words", [
    ("{fc1: 9}", ["r.yaml:5", "layer_bits.fc1", "[2, 8]", "found 9"]),
    ("{fc1: four}", ["layer_bits.fc1", "expected int", "'four'"]),
    ("[fc1, 4]", ["layer_bits", "expected a mapping"]),
])
def test_bad_layer_bits_name_file_line_and_field(value, words):
    with pytest.raises(RecipeError) as e:
        load_recipe_text(_recipe(f"qat: {{layer_bits: {value}}}"), "r.yaml")
    for w in words:
        assert w in str(e.value), str(e.value)


def _tiny_data():
    rng = np.random.default_rng(0)
    x = rng.random((16, 6)).astype("float32")
    y = rng.integers(0, 2, 16)
    return (x, y), (x, y)


def _tiny_model():
    inp = keras.Input((6,))
    x = L.Dense(5, activation="relu", name="fc1")(inp)
    return keras.Model(inp, L.Dense(2, name="fc2")(x))


def _params(layer_bits):
    return {"scheme": "default_8bit", "weight_bits": 8,
            "activation_bits": 8, "layer_bits": layer_bits, "epochs": 1,
            "learning_rate": 1e-4}


TRAIN = {"optimizer": "adam", "batch_size": 8}


def test_qat_stage_applies_layer_bits():
    qat = stages.run_qat(_tiny_model(), _params({"fc1": 4}), _tiny_data(),
                         TRAIN)
    bits = {r["wraps"]: r["weight_bits"]
            for r in quantize.summary(qat, print_fn=None) if "wraps" in r}
    assert bits == {"fc1": 4, "fc2": 8}


def test_qat_stage_with_an_unknown_layer_name_says_which():
    with pytest.raises(InputError, match="fc7.*valid names: fc1, fc2"):
        stages.run_qat(_tiny_model(), _params({"fc7": 4}), _tiny_data(),
                       TRAIN)


def test_freeze_bn_delay_defaults_to_never_and_rejects_negatives():
    assert _qat_params(_recipe("qat: {}"))["qat"]["freeze_bn_delay"] is None
    with pytest.raises(RecipeError, match="freeze_bn_delay"):
        load_recipe_text(_recipe("qat: {freeze_bn_delay: -3}"), "r.yaml")


def test_qat_stage_with_freeze_bn_delay_zero_keeps_moving_statistics():
    inp = keras.Input((6, 6, 2))
    x = L.BatchNormalization(name="bn")(L.Conv2D(3, 3, name="conv")(inp))
    model = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    rng = np.random.default_rng(0)
    x = rng.random((16, 6, 6, 2)).astype("float32") * 5
    data = ((x, rng.integers(0, 2, 16)),) * 2
    params = dict(_params(None), freeze_bn_delay=0)
    qat = stages.run_qat(model, params, data, TRAIN)
    bn = [l for l in qat.layers if isinstance(l, quantize.QuantizeFused)
          and l.batchnorm is not None][0].batchnorm
    np.testing.assert_array_equal(bn.moving_mean, np.zeros(3))
    params["freeze_bn_delay"] = None     # the check can fail
    qat = stages.run_qat(model, params, data, TRAIN)
    bn = [l for l in qat.layers if isinstance(l, quantize.QuantizeFused)
          and l.batchnorm is not None][0].batchnorm
    assert np.abs(np.asarray(bn.moving_mean)).max() > 1e-3


def test_ema_decay_is_read_checked_and_given_to_the_scheme():
    assert _qat_params(_recipe("qat: {}"))["qat"]["ema_decay"] == 0.999
    assert _qat_params(_recipe("qat: {ema_decay: 0.99}"))["qat"][
        "ema_decay"] == 0.99
    with pytest.raises(RecipeError, match="ema_decay"):
        load_recipe_text(_recipe("qat: {ema_decay: 1.5}"), "r.yaml")
    with pytest.raises(InputError, match="ema_decay must be in"):
        quantize.Default8BitScheme(ema_decay=1.0)
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="fc")(inp))
    rng = np.random.default_rng(0)
    data = ((rng.random((8, 4)).astype("float32"),
             rng.integers(0, 2, 8)),) * 2
    qat = stages.run_qat(model, dict(_params(None), ema_decay=0.9), data,
                         TRAIN)
    assert qat.quantize_scheme.ema_decay == 0.9


def test_activation_percentile_is_read_checked_and_given_to_the_scheme():
    assert _qat_params(_recipe("qat: {}"))["qat"][
        "activation_percentile"] is None
    assert _qat_params(_recipe("qat: {activation_percentile: 99.9}"))[
        "qat"]["activation_percentile"] == 99.9
    with pytest.raises(RecipeError, match="activation_percentile"):
        load_recipe_text(_recipe("qat: {activation_percentile: 20}"),
                         "r.yaml")
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2, name="fc")(inp))
    rng = np.random.default_rng(0)
    data = ((rng.random((8, 4)).astype("float32"),
             rng.integers(0, 2, 8)),) * 2
    qat = stages.run_qat(
        model, dict(_params(None), activation_percentile=99.9), data, TRAIN)
    assert qat.quantize_scheme.activation_percentile == 99.9
