"""Recurrent layers: integer modes refuse a WHILE loop (TensorFlow's
calibrator would crash the process), unrolled layers and float modes
convert, and converter errors come out as one readable line."""

import keras
import numpy as np
import pytest

from tfcompress.convert import convert
from tfcompress.convert.converter import _gist
from tfcompress.errors import InputError


def _sequence_model(layer, batch_size=None):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 4), batch_size=batch_size),
                             layer, keras.layers.Dense(3)])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((16, 8, 4), dtype=np.float32)


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_integer_mode_refuses_a_looping_lstm_instead_of_crashing(x, mode):
    model = _sequence_model(keras.layers.LSTM(6), batch_size=1)
    with pytest.raises(InputError, match=r"lstm\w* \(LSTM\).*unroll=True"):
        convert(model, mode, representative_data=x)


def test_refusal_finds_a_gru_inside_bidirectional(x):
    model = _sequence_model(keras.layers.Bidirectional(
        keras.layers.GRU(3, name="inner_gru")), batch_size=1)
    with pytest.raises(InputError, match="GRU"):
        convert(model, "int8", representative_data=x)


def test_unrolled_lstm_converts_to_int8(x):
    model = _sequence_model(keras.layers.LSTM(6, unroll=True))
    r = convert(model, "int8", representative_data=x, strict=False)
    assert r.report["numerical_check"]["max_abs_error"] < 0.05


def test_looping_lstm_with_fixed_batch_converts_in_float32(x):
    model = _sequence_model(keras.layers.LSTM(6), batch_size=1)
    r = convert(model, "float32", check_data=x)
    assert r.report["numerical_check"]["max_abs_error"] < 1e-5


def test_dynamic_batch_lstm_error_is_one_line_with_the_fix():
    model = _sequence_model(keras.layers.LSTM(6))
    with pytest.raises(RuntimeError) as info:
        convert(model, "float32")
    message = str(info.value)
    assert "\n" not in message and "loc(" not in message
    assert "element_shape to be static" in message
    assert "batch_size=1" in message


def test_gist_drops_the_mlir_location():
    error = RuntimeError(
        '<unknown>:0: error: loc(callsite(fused["Op:", "a/b"] at '
        'fused["Call:", "c"])): \'tf.Op\' op is neither a custom op nor a '
        'flex op\n<unknown>:0: note: loc(fused["Call:", "c"]): called from')
    assert _gist(error) == "'tf.Op' op is neither a custom op nor a flex op"


def test_report_counts_the_weights_inside_the_while_loop():
    # the LSTM's kernels live in the loop body's subgraph: the report (and
    # tfcompress inspect) counted the Dense head's 21 parameters only
    model = _sequence_model(keras.layers.LSTM(6), batch_size=1)
    r = convert(model, "float32")
    lstm = model.layers[0].count_params()
    assert r.report["subgraphs"] > 1
    assert r.report["params"] >= lstm
    kernels = sorted(w["shape"] for w in r.report["weights"])
    assert [6 * 4, 4] in kernels or [4, 6 * 4] in kernels, kernels
