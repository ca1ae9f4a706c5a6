"""Prune- and cluster-preserving QAT with packed 4-bit weights."""

import keras
import numpy as np
from keras import layers as L

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.inspect import model_reader


def _dense(kernel):
    model = keras.Sequential([keras.Input((kernel.shape[0],)),
                              L.Dense(kernel.shape[1], name="fc")])
    model.layers[-1].set_weights([kernel, np.zeros(kernel.shape[1],
                                                   "float32")])
    return model


def _train_and_int4_kernel(model, scheme):
    """A few QAT steps, int8 conversion; the INT4 kernel as Keras lays it
    out (in, out) and the report."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, model.inputs[0].shape[1])).astype("float32")
    y = rng.normal(size=(64, model.outputs[0].shape[1])).astype("float32")
    qat = quantize.quantize_model(model, scheme)
    qat.compile(keras.optimizers.Adam(1e-2), "mse")
    qat.fit(x, y, batch_size=16, epochs=1, verbose=0)
    flatbuffer = convert(qat, "int8", representative_data=x).tflite_bytes
    r = model_reader.read_model(flatbuffer)
    (t,) = [t for t in r["subgraphs"][0]["tensors"]
            if t["dtype"] == "INT4"]
    return model_reader.tensor_values(t, r["buffers"]).T, qat


def test_prune_preserving_4_bit_weights_keep_every_zero():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(16, 8)).astype("float32")
    kernel[rng.random(kernel.shape) < 0.6] = 0.0
    q, qat = _train_and_int4_kernel(
        _dense(kernel), quantize.PrunePreservingScheme(weight_bits=4))
    assert q.shape == kernel.shape
    assert np.all(q[kernel == 0] == 0)
    # training moved the kept weights, which stay mostly non-zero
    assert np.count_nonzero(q[kernel != 0]) >= 0.8 * np.count_nonzero(kernel)
    (row,) = [r for r in quantize.summary(qat, print_fn=None)
              if r.get("wraps") == "fc"]
    assert row["weight_bits"] == 4 and row["preserve_sparsity"]


def test_16_clusters_with_4_bit_weights_share_one_int4_value_per_cluster():
    rng = np.random.default_rng(0)
    centroids = np.linspace(-1, 1, 16).astype("float32")
    centroids[7] = 0.0                           # 16 clusters, one is zero
    idx = rng.integers(0, 16, size=(16, 8))
    kernel = centroids[idx]
    q, qat = _train_and_int4_kernel(
        _dense(kernel), quantize.ClusterPreservingScheme(weight_bits=4))
    assert len(np.unique(q)) <= 16
    for k in range(16):
        assert len(np.unique(q[idx == k])) == 1, k     # weight sharing kept
    assert np.all(q[kernel == 0] == 0)                  # zeros stay zero
    (row,) = [r for r in quantize.summary(qat, print_fn=None)
              if r.get("wraps") == "fc"]
    assert row["weight_bits"] == 4 and row["preserve_clusters"] == 16
