"""quantize_* and strip_clustering leave the caller's model unchanged."""

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import cluster, quantize
from tfcompress.utils.layer_map import iter_layers

SIMPLE = (str, int, float, bool, type(None))


def _snapshot(model):
    """Layer names, configs, simple attributes, and every variable's
    name, trainability and value."""
    layers = []
    for layer in [model, *iter_layers(model)]:
        attrs = {k: v for k, v in vars(layer).items()
                 if isinstance(v, SIMPLE)}
        config = layer.get_config() if layer is not model else None
        weights = [(v.path, bool(v.trainable), np.array(v.numpy()))
                   for v in layer.weights]
        layers.append((type(layer).__name__, layer.name, id(layer), attrs,
                       config, weights))
    return layers


def _assert_same(before, after):
    assert len(before) == len(after)
    for b, a in zip(before, after):
        assert b[:3] == a[:3]
        assert b[3] == a[3], (b[1], {k: (v, a[3].get(k))
                                     for k, v in b[3].items()
                                     if a[3].get(k) != v} or
                              set(a[3]) - set(b[3]))
        assert b[4] == a[4], b[1]
        assert len(b[5]) == len(a[5]), b[1]
        for (bp, bt, bv), (ap, at, av) in zip(b[5], a[5]):
            assert (bp, bt) == (ap, at)
            np.testing.assert_array_equal(bv, av)


def _cnn():
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, use_bias=False, name="conv")(i)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="relu")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(i, L.Dense(3, name="head")(x), name="cnn")


X = np.random.default_rng(0).random((4, 8, 8, 1)).astype(np.float32)


def test_quantize_model_leaves_caller_model_unchanged():
    m = _cnn()
    y = np.array(m(X))
    before = _snapshot(m)
    qat = quantize.quantize_model(m)
    qat.compile("adam", "mse")
    qat.fit(X, np.zeros((4, 3)), epochs=1, verbose=0)
    _assert_same(before, _snapshot(m))
    np.testing.assert_allclose(np.array(m(X)), y, rtol=1e-6)


def test_quantize_annotate_model_leaves_caller_model_unchanged():
    m = _cnn()
    before = _snapshot(m)
    annotated = quantize.quantize_annotate_model(m)
    _assert_same(before, _snapshot(m))
    assert annotated is not m
    qat = quantize.quantize_apply(annotated)
    assert quantize.has_fake_quant(qat)
    _assert_same(before, _snapshot(m))


def test_quantize_annotate_layer_leaves_the_layer_unchanged():
    m = _cnn()
    layer = m.get_layer("relu")
    before = _snapshot(m)
    annotated = quantize.quantize_annotate_layer(
        layer, quantize.NoOpQuantizeConfig())
    _assert_same(before, _snapshot(m))
    assert annotated is not layer and annotated.name == layer.name


def test_annotated_custom_layer_is_quantized_by_its_config():
    class Double(L.Layer):
        def call(self, x):
            return x * 2.0

    i = keras.Input((4,))
    x = quantize.quantize_annotate_layer(Double(name="double"),
                                         quantize.OutputQuantizeConfig())(i)
    m = keras.Model(i, L.Dense(2)(x))
    q = quantize.quantize_model(m)
    row = [r for r in q.quantize_report if r["layer"] == "double"][0]
    assert "annotated" in row["quantized"]
    # annotations survive quantize_annotate_model's copy
    q2 = quantize.quantize_apply(quantize.quantize_annotate_model(m))
    row = [r for r in q2.quantize_report if r["layer"] == "double"][0]
    assert "annotated" in row["quantized"]


@pytest.mark.parametrize("update_assignments", [False, True])
def test_strip_clustering_leaves_clustered_model_unchanged(
        update_assignments):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), L.Dense(8, name="d1"),
                          L.Dense(2, name="d2")])
    clustered = cluster.cluster_weights(
        m, 3, update_assignments=update_assignments)
    x = X.reshape(4, -1)[:, :6]
    clustered.compile("sgd", "mse")
    clustered.fit(x, np.ones((4, 2)), epochs=1, verbose=0)
    y = np.array(clustered(x))
    before = _snapshot(clustered)
    stripped = cluster.strip_clustering(clustered)
    _assert_same(before, _snapshot(clustered))
    np.testing.assert_allclose(np.array(clustered(x)), y, rtol=1e-6)
    # the stripped copy computes the same and shares no variable
    np.testing.assert_allclose(np.array(stripped(x)), y, rtol=1e-5,
                               atol=1e-6)
    ids = {id(v) for v in clustered.weights}
    assert not ids & {id(v) for v in stripped.weights}
    assert len(np.unique(stripped.get_layer("d1").kernel.numpy())) <= 3


def test_cluster_weights_leaves_caller_model_unchanged():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), L.Dense(8, name="d1")])
    before = _snapshot(m)
    cluster.cluster_weights(m, 3)
    _assert_same(before, _snapshot(m))


def test_strip_clustering_returns_unclustered_model_itself():
    m = keras.Sequential([keras.Input((6,)), L.Dense(2)])
    assert cluster.strip_clustering(m) is m
