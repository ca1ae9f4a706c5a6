"""tfcompress.utils.layer_map: rebuilding models layer by layer."""

import keras
import numpy as np
import pytest

from tfcompress.utils.layer_map import iter_layers, map_layers


def _sequential():
    return keras.Sequential([keras.Input((6,)),
                             keras.layers.Dense(5, name="a"),
                             keras.layers.Dense(3, name="b")])


def _residual():
    inputs = keras.Input((6,))
    x = keras.layers.Dense(6, name="a")(inputs)
    y = keras.layers.Dense(6, name="b")(x)
    x = keras.layers.Add(name="add")([x, y])
    return keras.Model(inputs, keras.layers.Dense(2, name="c")(x))


def _nested():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(4, name="inner_a")(inputs)
    inner = keras.Model(inputs, keras.layers.Dense(4, name="inner_b")(h),
                        name="inner")
    return keras.Sequential([keras.Input((6,)), inner,
                             keras.layers.Dense(2, name="head")])


class Scale(keras.layers.Layer):
    """Multiplies by a constant: a layer ``fn`` adds in ``map_layers``."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor


@pytest.mark.parametrize("build,names", [
    (_sequential, ["a", "b"]),
    (_residual, ["a", "b", "add", "c"]),
    (_nested, ["inner_a", "inner_b", "head"]),
])
def test_identity_map_copies_weights_and_outputs(build, names):
    model = build()
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    clone = map_layers(model, lambda layer: layer)
    assert [l.name for l in iter_layers(clone)] == names
    np.testing.assert_allclose(clone(x), model(x), rtol=1e-6)
    # a copy, not shared weights
    first = next(iter_layers(clone))
    first.kernel.assign(np.zeros(first.kernel.shape))
    assert np.abs(next(iter_layers(model)).kernel.numpy()).sum() > 0


def test_iter_layers_skips_inputs_and_recurses():
    assert [type(l).__name__ for l in iter_layers(_nested())] == [
        "Dense", "Dense", "Dense"]


def test_replacing_a_layer_changes_the_output():
    model = _residual()
    x = np.ones((2, 6), "float32")

    def double_c(layer):
        if layer.name != "c":
            return layer
        return keras.Sequential([layer, Scale(2.0)], name="c_doubled")

    clone = map_layers(model, double_c)
    np.testing.assert_allclose(clone(x), 2 * model(x), rtol=1e-5)


def test_nested_model_layers_are_mapped():
    seen = []
    map_layers(_nested(), lambda l: seen.append(l.name) or l)
    assert seen == ["inner_a", "inner_b", "head"]


def test_subclassed_model_is_refused_with_advice():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="Functional"):
        map_layers(net, lambda l: l)


@pytest.mark.parametrize("function", ["lambda", "preprocess_input"])
def test_lambda_preprocessing_in_front_of_a_base_is_kept(function):
    # Lambda(preprocess_input) before a keras.applications base: its
    # function does not come back from its config, so it is not rebuilt
    from keras.applications import mobilenet_v2
    from tfcompress import cluster, prune
    fn = {"lambda": lambda t: t / 127.5 - 1.0,
          "preprocess_input": mobilenet_v2.preprocess_input}[function]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    x = keras.layers.Lambda(fn, name="pre")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="top")(
        _nested()(x)))
    x = np.random.default_rng(0).uniform(0, 255, (4, 6)).astype("float32")
    want = model.predict(x, verbose=0)
    for copy in (map_layers(model, lambda layer: layer),
                 prune.strip_pruning(prune.prune_low_magnitude(
                     model, prune.ConstantSparsity(0.0, 0))),
                 prune.flatten_nested(model)):
        np.testing.assert_allclose(copy.predict(x, verbose=0), want,
                                   rtol=1e-5, atol=1e-5)
    assert cluster.strip_clustering(cluster.cluster_weights(model, 4))
