"""Default8BitScheme(activation_percentile=...): QAT activation ranges that
follow a percentile of each batch instead of its min and max."""

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import quantize
from tfcompress.errors import InputError
from tfcompress.quantize import fake_quant as fq


def _outlier_batch():
    """Values in [0, 1), but for one input row (4 of 256 values) 100x
    larger."""
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    x[0] *= 100.0
    return x


def _identity_dense_qat(scheme):
    inp = keras.Input((4,), name="x")
    model = keras.Model(inp, L.Dense(4, name="fc", kernel_initializer=
                                     "identity")(inp))
    qat = quantize.quantize_model(model, scheme)
    qat(_outlier_batch(), training=True)     # one range update
    return qat


def _range(qat, name):
    lo, hi, _ = qat.get_layer(name).range
    return float(lo.numpy()), float(hi.numpy())


def test_batch_range_at_a_percentile_leaves_out_the_outliers():
    x = np.r_[np.linspace(0.0, 1.0, 999), 50.0].astype("float32")
    assert float(fq.batch_range(x)[1]) == 50.0
    lo, hi = fq.batch_range(x, 99.0)
    assert float(lo) == pytest.approx(0.01, abs=1e-3)
    assert float(hi) == pytest.approx(0.99, abs=2e-3)
    assert float(fq.batch_range(x, 100.0)[1]) == 50.0


def test_percentile_scheme_gives_every_quantizer_a_range_without_outliers():
    plain = _identity_dense_qat(quantize.Default8BitScheme())
    clipped = _identity_dense_qat(
        quantize.Default8BitScheme(activation_percentile=98.0))
    for name in ("quant_input_x", "quant_fc"):
        assert _range(plain, name)[1] > 50.0          # the outlier row
        assert _range(clipped, name)[1] < 1.5, name   # the other rows
    assert clipped.get_layer("quant_fc").activation_percentile == 98.0


def test_percentile_survives_save_and_load(tmp_path):
    qat = _identity_dense_qat(
        quantize.Default8BitScheme(activation_percentile=99.5))
    path = tmp_path / "qat.keras"
    qat.save(path)
    with quantize.quantize_scope():
        back = keras.models.load_model(path)
    assert back.get_layer("quant_fc").activation_percentile == 99.5
    assert back.get_layer("quant_input_x").activation_percentile == 99.5


@pytest.mark.parametrize("bad", [50, 100.5, True, "99"])
def test_a_percentile_outside_50_to_100_is_refused(bad):
    with pytest.raises(InputError, match="activation_percentile must be"):
        quantize.Default8BitScheme(activation_percentile=bad)

