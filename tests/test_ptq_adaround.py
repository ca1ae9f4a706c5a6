"""AdaRound and batch-norm re-estimation: rounded weights lie on the grid
and reach the flatbuffer bit for bit (int8 and packed INT4)."""

import re

import keras
import numpy as np

from tfcompress import ptq
from tfcompress.convert import convert
from tfcompress.inspect import model_reader
from test_ptq import X, assert_unchanged, tflite_outputs, unbalanced_net, \
    weights_of

KERNELS = ("conv1", "conv2", "fc")


def flatbuffer_ints(tflite_bytes, layer):
    """Integer kernel of ``layer`` in the flatbuffer, in Keras layout."""
    r = model_reader.read_model(tflite_bytes)
    pattern = re.compile(rf"/(quant_)?{layer}(_\d+)?/")
    (t,) = [t for t in r["subgraphs"][0]["tensors"]
            if pattern.search(t["name"].split(";")[0])
            and len(t["shape"]) >= 2 and t["dtype"] in ("INT8", "INT4")
            and t["buffer"] and r["buffers"][t["buffer"]]]
    v = model_reader.tensor_values(t, r["buffers"])
    # TFLite: conv (out, h, w, in), fully connected (out, in)
    return np.moveaxis(v, 0, -1)


def keras_ints(model, layer, bits, per_tensor=False):
    k = model.get_layer(layer).kernel.numpy()
    q = 2 ** (bits - 1) - 1
    axes = None if per_tensor else tuple(range(k.ndim - 1))
    s = np.abs(k).max(axis=axes) / q
    ints = k / s
    np.testing.assert_allclose(ints, np.round(ints), atol=1e-3)   # on grid
    return np.round(ints).astype(int)


def test_adaround_8bit_weights_are_on_the_grid_and_bit_exact_in_tflite():
    model = unbalanced_net()
    before = weights_of(model)
    rounded = ptq.adaround(model, X, bits=8, iterations=60)
    result = convert(rounded, "int8", representative_data=X, strict=True)
    for name in KERNELS:
        np.testing.assert_array_equal(
            flatbuffer_ints(result.tflite_bytes, name),
            keras_ints(rounded, name, 8), err_msg=name)
    assert_unchanged(model, before)


def test_adaround_4bit_converts_to_int4_with_the_same_integers():
    model = unbalanced_net()
    rounded = ptq.adaround(model, X, bits=4, iterations=60)
    wrapped = ptq.for_conversion(rounded, X, bits=4)
    result = convert(wrapped, "int8", representative_data=X, strict=True)
    for name in KERNELS:
        got = flatbuffer_ints(result.tflite_bytes, name)
        want = keras_ints(rounded, name, 4, per_tensor=name == "fc")
        np.testing.assert_array_equal(got, want, err_msg=name)
    kinds = {w["dtype"] for w in __import__("tfcompress").inspect.inspect(
        result.tflite_bytes)["weights"] if len(w["shape"]) >= 2}
    assert kinds == {"INT4"}


def test_adaround_4bit_beats_nearest_rounding_on_layer_outputs():
    from tfcompress.ptq.bias_correction import quantized_kernel
    model = ptq.fold_batchnorm(unbalanced_net())
    ref = np.asarray(model(X))
    nearest = ptq.fold_batchnorm(model)
    for name in KERNELS:
        layer = nearest.get_layer(name)
        layer.kernel.assign(quantized_kernel(
            layer, layer.kernel.numpy(), 4, True))
    rounded = ptq.adaround(model, X, bits=4, iterations=300)
    err_nearest = np.square(np.asarray(nearest(X)) - ref).mean()
    err_ada = np.square(np.asarray(rounded(X)) - ref).mean()
    assert err_ada < 0.8 * err_nearest, (err_nearest, err_ada)


def test_adaround_reconstructs_through_the_relu_after_a_folded_batchnorm():
    # conv1 -> bn1 -> relu1: once bn1 is folded (an identity left in its
    # place), the ReLU after it is still the layer's activation
    from tfcompress.ptq.adaround import _following_activation
    folded = ptq.fold_batchnorm(unbalanced_net())
    assert _following_activation(folded) == {
        "conv1": "relu", "conv2": "relu", "fc": "linear"}


def test_reestimate_batchnorm_sets_moving_stats_to_the_batch_statistics():
    model = unbalanced_net()
    bn = model.get_layer("bn1")
    bn.moving_mean.assign(np.full(8, 3.0, np.float32))   # stale
    before = weights_of(model)
    new = ptq.reestimate_batchnorm(model, X)
    feats = np.asarray(keras.Model(model.inputs[0], bn.input)(X), np.float64)
    feats = feats.reshape(-1, 8)
    nbn = new.get_layer("bn1")
    np.testing.assert_allclose(nbn.moving_mean.numpy(), feats.mean(0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(nbn.moving_variance.numpy(), feats.var(0),
                               rtol=1e-4, atol=1e-6)
    # in inference mode the new model normalises like training mode does
    np.testing.assert_allclose(new(X, training=False), new(X, training=True),
                               rtol=1e-3, atol=1e-3)
    assert_unchanged(model, before)
