import keras
import numpy as np
import pytest

from tfcompress.analyze import (SensitivityResult, layers_to_keep_float,
                                propose_sparsities, sensitivity)
from tfcompress.errors import InputError


@pytest.fixture(scope="module")
def trained():
    """A small MLP trained to separate 4 Gaussian blobs."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3, size=(4, 10))
    y = rng.integers(0, 4, 800)
    x = (centers[y] + rng.normal(size=(800, 10))).astype("float32")
    m = keras.Sequential([keras.Input((10,)),
                          keras.layers.Dense(64, activation="relu",
                                             name="wide"),
                          keras.layers.Dense(4, name="head")])
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    m.fit(x, y, epochs=5, verbose=0)
    return m, x, y


def test_sensitivity_measures_and_restores(trained, tmp_path):
    m, x, y = trained
    before = [w.copy() for w in m.get_weights()]
    r = sensitivity(m, (x, y), sparsities=(0.5, 0.99), bits=(8, 2))
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert r.baseline > 0.9
    assert set(r.pruned) == {"wide", "head"}
    # zeroing 99% of the 4-unit head must hurt more than 50% of it
    assert r.pruned["head"][0.99] < r.pruned["head"][0.5]
    assert abs(r.quantized["wide"][8] - r.baseline) < 0.02
    assert r.quantized["head"][2] <= r.quantized["head"][8]
    # manual check of one cell
    k = m.get_layer("head").kernel
    orig = k.numpy()
    w = orig.copy()
    thr = np.sort(np.abs(w).ravel())[int(round(w.size * 0.5)) - 1]
    w[np.abs(w) <= thr] = 0
    k.assign(w)
    manual = float(np.mean(m.predict(x, verbose=0).argmax(1) == y))
    k.assign(orig)
    assert manual == pytest.approx(r.pruned["head"][0.5])
    assert "wide" in r.table()
    path = r.plot(tmp_path / "s.png")
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_proposals_follow_the_budget(trained):
    m, x, y = trained
    r = sensitivity(m, (x, y), sparsities=(0.5, 0.9, 0.99), bits=(8, 2))
    proposal = propose_sparsities(r, max_drop=1.0)
    assert set(proposal) == {"wide", "head"}
    assert any(proposal.values())
    refused = 0
    for name, s in proposal.items():
        if s:
            assert s in r.sparsities
            assert (r.baseline - r.pruned[name][s]) * 100 <= 1.0
        # the proposal is the highest within budget: every analysed
        # sparsity above it costs more than the budget
        for t in [t for t in r.sparsities if t > s]:
            assert (r.baseline - r.pruned[name][t]) * 100 > 1.0, (name, t)
            refused += 1
    assert refused            # the budget bound something


def test_layers_to_keep_float_are_those_over_the_budget():
    # drops in points: a 0.1 at 8 bits, 40 at 2 bits; b 5 and 70; c 0 and 1
    r = SensitivityResult(
        metric="accuracy", baseline=0.9, sparsities=[], bits=[8, 2],
        pruned={}, samples=100,
        quantized={"a": {8: 0.899, 2: 0.5}, "b": {8: 0.85, 2: 0.2},
                   "c": {8: 0.9, 2: 0.89}})
    assert layers_to_keep_float(r, bits=8, max_drop=1.0) == ["b"]
    assert layers_to_keep_float(r, bits=8, max_drop=10.0) == []
    assert layers_to_keep_float(r, bits=2, max_drop=1.5) == ["a", "b"]
    assert layers_to_keep_float(r, bits=2, max_drop=50.0) == ["b"]
    assert layers_to_keep_float(r, bits=2, max_drop=0.5) == ["a", "b", "c"]


def test_8_bit_weights_of_the_trained_mlp_cost_under_a_point(trained):
    m, x, y = trained
    r = sensitivity(m, (x, y), sparsities=(0.5,), bits=(8,))
    assert layers_to_keep_float(r, bits=8, max_drop=1.0) == []


def test_bad_input(trained):
    m, x, y = trained
    with pytest.raises(InputError, match="labels"):
        sensitivity(m, (x, y[:5]))
    with pytest.raises(InputError, match="not prunable"):
        sensitivity(m, (x, y), layers=["nope"])
    with pytest.raises(InputError, match=r"\(0, 1\)"):
        sensitivity(m, (x, y), sparsities=(1.5,))


@pytest.mark.parametrize("layer", [
    # a depthwise kernel (1, 1, 2, 1): the converter gives each of the
    # C * M outputs its own int8 scale
    lambda: keras.layers.DepthwiseConv2D(1, use_bias=False, name="k"),
    # a Conv2DTranspose kernel (h, w, out, in) = (1, 1, 2, 1): each output
    # channel (axis -2) its own scale, not the one input channel on the
    # last axis
    lambda: keras.layers.Conv2DTranspose(2, 1, use_bias=False, name="k"),
], ids=["depthwise", "conv_transpose"])
def test_kernels_are_rounded_per_output_channel(layer):
    # output channel 0 at 100, channel 1 at 0.3: one scale for the whole
    # kernel (100 / 127) rounds channel 1, the one the head reads, to zero
    layer = layer()
    channels_in = 2 if isinstance(layer, keras.layers.DepthwiseConv2D) \
        else 1
    m = keras.Sequential([
        keras.Input((1, 1, channels_in)), layer,
        keras.layers.Flatten(),
        keras.layers.Dense(2, use_bias=False, name="head")])
    m.get_layer("k").kernel.assign(
        np.array([100.0, 0.3], "float32").reshape(1, 1, 2, 1))
    m.get_layer("head").kernel.assign(
        np.array([[0, 0], [1, -1]], "float32"))
    x = np.random.default_rng(0).normal(
        size=(64, 1, 1, channels_in)).astype("float32")
    y = np.argmax(m(x), axis=-1)
    r = sensitivity(m, (x, y), sparsities=(0.5,), bits=(8,),
                    layers=["k"])
    assert r.baseline == 1.0
    assert r.quantized["k"][8] == 1.0


def test_bad_labels_bits_and_single_values(trained):
    m, x, y = trained
    # one-hot labels: was "800 inputs and 3200 labels"
    with pytest.raises(InputError, match=r"argmax"):
        sensitivity(m, (x, np.eye(4)[y]))
    # 1 bit has no level but 0 (the weights became NaN), 8.5 is no width
    for b in (1, 8.5, 0):
        with pytest.raises(InputError, match="bits must be integer"):
            sensitivity(m, (x, y), sparsities=(0.5,), bits=(b,))
    # one name, one sparsity, one width: was a layer per letter, a
    # TypeError
    r = sensitivity(m, (x, y), sparsities=0.5, bits=8, layers="head")
    assert list(r.pruned) == ["head"] and r.sparsities == [0.5]
    assert list(r.quantized["head"]) == [8]


def test_every_prunable_weight_of_a_layer_is_pruned():
    # an LSTM has an input and a recurrent kernel; pruning the layer
    # prunes both, and so must its sensitivity (it pruned the first only)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((5, 3)),
                          keras.layers.LSTM(8, name="lstm"),
                          keras.layers.Dense(4, name="head")])
    x = np.random.default_rng(0).normal(size=(128, 5, 3)).astype("float32")
    y = np.argmax(m(x), axis=-1)
    r = sensitivity(m, (x, y), sparsities=(0.5,), bits=(), layers="lstm",
                    metric="loss")
    layer = m.get_layer("lstm")
    kernels = [layer.cell.kernel, layer.cell.recurrent_kernel]
    before = [k.numpy() for k in kernels]
    for k, w in zip(kernels, before):
        w = w.copy()
        w[np.abs(w) <= np.median(np.abs(w))] = 0
        k.assign(w)
    logp = keras.ops.log_softmax(m(x)).numpy()
    manual = float(np.mean(logp[np.arange(len(y)), y]))
    for k, b in zip(kernels, before):
        k.assign(b)
    assert r.pruned["lstm"][0.5] == pytest.approx(manual, rel=1e-5)


def test_repeated_layer_names_in_nested_models_are_an_input_error():
    # two bases of the same architecture: their layers share names, and
    # one row per name held the second layer's figures only
    def base(name):
        i = keras.Input((4,))
        return keras.Model(i, keras.layers.Dense(3, name="fc")(i),
                           name=name)
    i = keras.Input((4,))
    m = keras.Model(i, keras.layers.Average()([base("a")(i), base("b")(i)]))
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    with pytest.raises(InputError, match=r"\['fc'\] occur more than once"):
        sensitivity(m, (x, np.zeros(16)))
    r = sensitivity(m, (x, np.zeros(16)), sparsities=(0.5,), bits=(8,),
                    layers=[])
    assert r.pruned == {}


def test_model_wrapped_for_pruning_is_an_input_error(trained):
    # the wrappers hide the layers: the result was an empty table
    from tfcompress import prune
    m, x, y = trained
    wrapped = prune.prune_low_magnitude(m, prune.ConstantSparsity(0.5, 0))
    with pytest.raises(InputError, match="strip_pruning"):
        sensitivity(wrapped, (x, y), sparsities=(0.5,), bits=(8,))


@pytest.mark.parametrize("activation", [None, "sigmoid"])
def test_binary_classifier_with_one_output_unit(activation):
    # Dense(1) on a base, as in binary transfer learning: argmax over one
    # column called every sample class 0 and every layer harmless
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)),
                          keras.layers.Dense(8, activation="relu",
                                             name="hidden"),
                          keras.layers.Dense(1, activation=activation,
                                             name="head")])
    x = np.random.default_rng(0).normal(size=(200, 6)).astype("float32")
    out = m(x).numpy()[:, 0]
    y = (out > (0.5 if activation else 0.0)).astype("int64")
    assert 0.1 < y.mean() < 0.9
    r = sensitivity(m, (x, y), sparsities=(0.99,), bits=(8,))
    assert r.baseline == 1.0
    assert r.pruned["hidden"][0.99] < 0.95
    loss = sensitivity(m, (x, y), sparsities=(0.99,), bits=(),
                       metric="loss")
    z = out if activation is None else np.log(out / (1 - out))
    expected = np.mean(-np.logaddexp(0, np.where(y == 1, -z, z)))
    assert loss.baseline == pytest.approx(expected, rel=1e-4)
