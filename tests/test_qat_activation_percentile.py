"""Default8BitScheme(activation_percentile=...): QAT activation ranges that
follow a percentile of each batch instead of its min and max."""

import keras
import numpy as np
import pytest
import tensorflow as tf
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



def _kth_from_each_end(x, percentile):
    """The reference: the k-th smallest and largest of ``x`` by sorting,
    k = the share of values the percentile leaves out on each side."""
    flat = np.sort(np.asarray(x, np.float32).ravel())
    k = max(1, int(np.float32(flat.size) *
                   np.float32(1.0 - percentile / 100.0)))
    return flat[k - 1], flat[-k]


@pytest.mark.parametrize("shape, percentile, where", [
    ((16, 8, 8, 12), 99.99, "spread"),
    ((16, 8, 8, 12), 99.0, "one_row"),      # every outlier in one row
    ((16, 8, 8, 12), 99.0, "one_channel"),
    ((16, 8, 8, 12), 90.0, "spread"),       # more left out than rows hold
    ((64, 300), 99.9, "one_row"),
    ((5000,), 99.0, "spread"),
    ((32, 6, 6, 1), 99.5, "ties"),
])
def test_batch_range_is_exactly_the_kth_value_from_each_end(shape, percentile,
                                                            where):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype("float32")
    if where == "one_row":
        x.reshape(-1, shape[-1])[3] *= 100.0
    elif where == "one_channel":
        x[..., 5] *= 100.0
    elif where == "ties":
        x = np.clip(np.round(x * 2), -3, 6).astype("float32")
    lo, hi = fq.batch_range(x, percentile)
    want_lo, want_hi = _kth_from_each_end(x, percentile)
    assert (float(lo), float(hi)) == (want_lo, want_hi)
    traced = tf.function(lambda t: fq.batch_range(t, percentile),
                         input_signature=[tf.TensorSpec(
                             (None,) + shape[1:], tf.float32)])
    assert [float(v) for v in traced(x)] == [want_lo, want_hi]


def test_batch_range_sorts_candidates_not_the_whole_batch():
    """The percentile of a (batch, ..., channels) activation: only the
    rows holding the largest and smallest values are searched."""
    shape = (128, 16, 16, 96)
    graph = tf.function(lambda t: fq.batch_range(t, 99.99)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32)).graph
    searched = [op.inputs[0].shape for op in graph.get_operations()
                if op.type == "TopKV2"]
    assert searched
    size = int(np.prod(shape))
    for s in searched:
        assert s.num_elements() is None or s.num_elements() < size // 10, s


def test_batch_range_compiles_with_xla():
    x = np.random.default_rng(2).standard_normal((8, 4, 4, 6)).astype(
        "float32")
    compiled = tf.function(lambda t: fq.batch_range(t, 99.0),
                           jit_compile=True)
    assert [float(v) for v in compiled(x)] == [
        float(v) for v in _kth_from_each_end(x, 99.0)]


@pytest.mark.parametrize("percentile", [None, 99.0])
def test_range_update_passes_no_gradient_to_the_batch(percentile):
    # as in tfmot, the batch's range only moves the stored range: a
    # gradient through min, max or a percentile's top_k (whose gradient
    # is a scatter the size of the batch) costs tracing and step time
    x = tf.constant(_outlier_batch())
    lo, hi, seen = (tf.Variable(0.0), tf.Variable(6.0), tf.Variable(0.0))
    with tf.GradientTape() as tape:
        tape.watch(x)
        new_lo, new_hi = fq.update_range(x, lo, hi, seen, 0.999, percentile)
    assert tape.gradient([new_lo, new_hi], x) is None
