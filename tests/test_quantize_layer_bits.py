"""Per-layer weight bit widths: ``quantize_model(..., layer_bits=...)``."""

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.errors import InputError


def _conv_dense():
    inp = keras.Input((8, 8, 2))
    x = L.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = L.Flatten()(x)
    x = L.Dense(16, activation="relu", name="fc1")(x)
    return keras.Model(inp, L.Dense(3, name="fc2")(x))


def _x(shape, n=32):
    return np.random.default_rng(0).random((n,) + shape).astype("float32")


def _kernel_dtypes(report, layers):
    """dtype of each named layer's kernel tensor (rank >= 2)."""
    out = {}
    for w in report["weights"]:
        for name in layers:
            if f"quant_{name}" in w["name"] and len(w["shape"]) >= 2:
                out[name] = w["dtype"]
    return out


def _fused_rows(qat):
    return {r["wraps"]: r for r in quantize.summary(qat, print_fn=None)
            if "wraps" in r}


def test_unknown_layer_names_are_an_input_error_naming_them_and_the_valid_ones():
    with pytest.raises(InputError) as e:
        quantize.quantize_model(_conv_dense(), layer_bits={"fc9": 4,
                                                           "conv1": 4})
    msg = str(e.value)
    assert "fc9" in msg and "conv1, fc1, fc2" in msg


def test_a_layer_without_weights_is_not_a_valid_layer_bits_name():
    model = _conv_dense()
    flatten = [l.name for l in model.layers if isinstance(l, L.Flatten)][0]
    with pytest.raises(InputError, match=flatten):
        quantize.quantize_model(model, layer_bits={flatten: 4})


@pytest.mark.parametrize("bits", [1, 9, 4.0, "4", True])
def test_bits_outside_2_to_8_or_not_int_are_an_input_error(bits):
    with pytest.raises(InputError, match="between 2 and 8"):
        quantize.quantize_model(_conv_dense(), layer_bits={"fc1": bits})


def test_numpy_integer_bits_are_accepted_as_ints():
    # e.g. bits picked per layer from a NumPy array of sensitivities
    bits = np.array([4, 8])
    qat = quantize.quantize_model(_conv_dense(),
                                  quantize.NBitScheme(weight_bits=bits[1]),
                                  layer_bits={"fc1": bits[0]})
    rows = _fused_rows(qat)
    assert (rows["fc1"]["weight_bits"], rows["conv1"]["weight_bits"]) == \
        (4, 8)
    assert type(qat.quantize_scheme.weight_bits) is int


def test_layer_bits_set_one_layers_weights_and_leave_the_rest_at_the_scheme():
    qat = quantize.quantize_model(_conv_dense(), layer_bits={"fc1": 4})
    rows = _fused_rows(qat)
    assert {n: r["weight_bits"] for n, r in rows.items()} == \
        {"conv1": 8, "fc1": 4, "fc2": 8}
    assert {r["activation_bits"] for r in rows.values()} == {8}
    assert not any("note" in r for r in rows.values())


def test_layer_bits_override_an_n_bit_scheme_both_ways():
    qat = quantize.quantize_model(_conv_dense(), quantize.NBitScheme(4, 8),
                                  layer_bits={"fc2": 8})
    assert {n: r["weight_bits"] for n, r in _fused_rows(qat).items()} == \
        {"conv1": 4, "fc1": 4, "fc2": 8}


def test_only_the_4_bit_layer_is_stored_as_packed_int4():
    model = _conv_dense()
    x = _x((8, 8, 2))
    qat = quantize.quantize_model(model, layer_bits={"fc1": 4})
    qat(x, training=True)
    r = convert(qat, "int8", representative_data=x)
    assert _kernel_dtypes(r.report, ["conv1", "fc1", "fc2"]) == \
        {"conv1": "INT8", "fc1": "INT4", "fc2": "INT8"}


def test_annotate_config_weight_bits_quantizes_a_layer_with_those_bits():
    inp = keras.Input((6,))
    x = quantize.quantize_annotate_layer(
        L.Dense(5, name="fc1"), quantize.QuantizeConfig(weight_bits=4))(inp)
    model = keras.Model(inp, L.Dense(2, name="fc2")(x))
    qat = quantize.quantize_apply(quantize.quantize_annotate_model(model))
    assert {n: r["weight_bits"] for n, r in _fused_rows(qat).items()} == \
        {"fc1": 4, "fc2": 8}


def test_layer_bits_reach_layers_of_a_nested_model():
    inner = keras.Sequential([keras.Input((6,)), L.Dense(5, name="inner_fc")],
                             name="inner")
    inp = keras.Input((6,))
    model = keras.Model(inp, L.Dense(2, name="outer_fc")(inner(inp)))
    qat = quantize.quantize_model(model, layer_bits={"inner_fc": 4})
    assert {n: r["weight_bits"] for n, r in _fused_rows(qat).items()} == \
        {"inner_fc": 4, "outer_fc": 8}


def test_transpose_conv_asked_for_4_bits_stays_8_bit_says_so_and_converts():
    inp = keras.Input((4, 4, 2))
    model = keras.Model(inp, L.Conv2DTranspose(3, 3, name="up")(inp))
    qat = quantize.quantize_model(model, quantize.NBitScheme(4, 8))
    row = _fused_rows(qat)["up"]
    assert row["weight_bits"] == 8
    assert "TRANSPOSE_CONV" in row["note"] and "INT4" in row["note"]
    x = _x((4, 4, 2), 8)
    qat(x, training=True)
    r = convert(qat, "int8", representative_data=x)
    assert _kernel_dtypes(r.report, ["up"]) == {"up": "INT8"}
