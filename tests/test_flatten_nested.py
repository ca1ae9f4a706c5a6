"""flatten_nested: a model that nests others (the transfer-learning
pattern, a keras.applications base inside a Sequential) becomes one flat
Functional model computing the same function, without touching the
original."""

import keras
import numpy as np
import pytest

from tfcompress import prune
from tfcompress.errors import InputError
from tfcompress.utils.flatten import flatten_nested
from tfcompress.utils.layer_map import is_container


def _base(name="base"):
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name=f"{name}_conv")(i)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    y = keras.layers.Conv2D(8, 1, name=f"{name}_conv2")(
        keras.layers.ReLU(name=f"{name}_relu")(x))
    return keras.Model(i, keras.layers.Add(name=f"{name}_add")([x, y]),
                       name=name)


def _transfer_sequential():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), _base(),
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(4, name="head")])


def _assert_flat_and_same_outputs(model):
    flat = flatten_nested(model)
    assert not any(is_container(l) for l in flat.layers)
    x = np.random.default_rng(0).random((5, 8, 8, 3), np.float32)
    np.testing.assert_allclose(flat.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)


def test_flat_model_has_no_nested_model_and_same_outputs():
    _assert_flat_and_same_outputs(_transfer_sequential())


def test_functional_outer_with_sequential_and_functional_inside():
    keras.utils.set_random_seed(1)
    inner_seq = keras.Sequential([keras.Input((8, 8, 8)),
                                  keras.layers.Conv2D(8, 1, name="s_conv")])
    i = keras.Input((8, 8, 3))
    x = inner_seq(_base()(i))
    x = keras.layers.GlobalAveragePooling2D()(x)
    _assert_flat_and_same_outputs(
        keras.Model(i, keras.layers.Dense(2, name="head")(x)))


def _rescaled_base_model(seed):
    """The transfer-learning guide's model: preprocessing, then the base."""
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="pre")(i)
    x = keras.layers.GlobalAveragePooling2D()(_base()(x))
    return keras.Model(i, keras.layers.Dense(2, name="head")(x))


def test_base_called_on_a_layer_output_rescaling_in_front():
    model = _rescaled_base_model(2)
    _assert_flat_and_same_outputs(model)
    assert [l.name for l in flatten_nested(model).layers][1:3] == [
        "pre", "base_conv"]


def test_quantize_model_of_a_base_after_preprocessing_converts():
    from tfcompress import quantize
    from tfcompress.convert import convert
    qat = quantize.quantize_model(_rescaled_base_model(3))
    x = np.random.default_rng(0).uniform(0, 255, (16, 8, 8, 3)).astype(
        np.float32)
    qat.compile("sgd", "mse")
    qat.fit(x, np.zeros((16, 2)), batch_size=8, epochs=1, verbose=0)
    r = convert(qat, "int8", check_data=x)
    assert r.report["fully_integer"]
    assert r.report["numerical_check"]["top1_agreement"] >= 0.9


def test_original_model_and_its_layers_are_untouched():
    model = _transfer_sequential()
    before = [w.copy() for w in model.get_weights()]
    base = model.layers[0]
    flat = flatten_nested(model)
    flat.layers[1].kernel.assign(np.zeros_like(flat.layers[1].kernel))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # the flat model calls copies, never the base's own layers
    assert flat.get_layer("base_conv") is not base.get_layer("base_conv")


def test_channel_pruning_reaches_inside_a_flattened_base():
    model = _transfer_sequential()
    assert not [s for s in prune.channel_spaces(model) if s.prunable]
    flat = flatten_nested(model)
    assert [s for s in prune.channel_spaces(flat) if s.prunable]


def test_channel_pruning_on_a_nested_model_says_to_flatten_it():
    model = _transfer_sequential()
    model.compile("sgd", "mse")
    x = np.zeros((4, 8, 8, 3), np.float32)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))
    with pytest.raises(InputError, match="flatten_nested"):
        model.fit(x, np.zeros((4, 4)), epochs=1, verbose=0, callbacks=[cb])


def test_channel_pruning_of_a_head_after_a_nested_base_warns_to_flatten():
    # a head with a prunable space of its own: ChannelPruning prunes it and
    # says that the base keeps every channel
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), _base(),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(16, name="fc"),
                              keras.layers.Dense(4, name="head")])
    model.compile("sgd", "mse")
    x = np.zeros((4, 8, 8, 3), np.float32)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))
    with pytest.warns(UserWarning, match=r"nested model\(s\) base .*"
                      r"flatten_nested"):
        model.fit(x, np.zeros((4, 4)), epochs=1, verbose=0, callbacks=[cb])
    assert [row["producers"] for row in cb.summary()] == [["fc"]]


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def call(self, x):
            return x
    with pytest.raises(InputError, match="subclassed"):
        flatten_nested(Net())


def test_keras_applications_base_in_a_sequential_channel_prunes_flattened():
    base = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
    model = keras.Sequential([keras.Input((32, 32, 3)), base,
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    flat = flatten_nested(model)
    assert sum(s.prunable for s in prune.channel_spaces(flat)) == 25
    flat.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 32, 32, 3), np.float32)
    flat.fit(x, np.zeros((8, 10)), batch_size=8, epochs=1, verbose=0,
             callbacks=[prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))])
    small = prune.shrink(flat)
    assert small.count_params() < 0.4 * model.count_params()
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               flat.predict(x, verbose=0), atol=1e-4)


def test_a_layer_name_repeated_across_nested_models_is_an_input_error():
    j = keras.Input((4,))
    inner = keras.Model(j, keras.layers.Dense(3, name="fc")(j))
    i = keras.Input((4,))
    model = keras.Model(i, keras.layers.Dense(2, name="fc")(inner(i)))
    with pytest.raises(InputError, match="fc.*unique names"):
        flatten_nested(model)


def test_a_base_shared_by_two_inputs_stays_one_set_of_layers():
    # siamese: one base called on two inputs; the flat model calls the
    # same copied layers twice (shared weights), as the nested one does
    keras.utils.set_random_seed(0)
    base = _base()
    a, b = keras.Input((8, 8, 3), name="left"), keras.Input((8, 8, 3),
                                                            name="right")
    pool = keras.layers.GlobalAveragePooling2D(name="gap")
    joined = keras.layers.Concatenate(name="join")([pool(base(a)),
                                                    pool(base(b))])
    model = keras.Model([a, b], keras.layers.Dense(4, name="head")(joined))
    flat = flatten_nested(model)
    assert not any(is_container(l) for l in flat.layers)
    # one copy of each layer, called twice
    assert flat.count_params() == model.count_params()
    rng = np.random.default_rng(0)
    x = [rng.random((5, 8, 8, 3), np.float32) for _ in range(2)]
    np.testing.assert_allclose(flat.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
    # QAT, which needs each layer called once, says which layer is shared
    from tfcompress import quantize
    with pytest.raises(InputError, match="base_conv.*shared"):
        quantize.quantize_model(model)


def test_flat_model_keeps_the_input_layer_name_of_an_unnamed_input():
    # the flat model's input was named after the tensor (keras_tensor_N),
    # so quantize_model renamed the user's input layer
    i = keras.Input((8, 8, 3))
    outer = keras.Model(i, keras.layers.Dense(2, name="head")(
        keras.layers.Flatten()(_base()(i))))
    flat = flatten_nested(outer)
    assert [layer.name for layer in flat.layers
            if isinstance(layer, keras.layers.InputLayer)] == [
        outer.layers[0].name]
