import keras
import numpy as np
import pytest

from tfcompress import prune
from tfcompress.errors import InputError
from tfcompress.models import compile_classifier, mobilenet_small, seed_cnn


def _train_with_channel_pruning(model, sparsity=0.5, norm="l1", **kw):
    rng = np.random.default_rng(0)
    x = rng.random((48, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 48)
    compile_classifier(model)
    cb = prune.ChannelPruning(prune.ConstantSparsity(sparsity, 0,
                                                     frequency=2),
                              norm=norm, **kw)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[cb])
    return x, cb


@pytest.mark.parametrize("build,norm", [(seed_cnn, "l1"),
                                        (mobilenet_small, "l2")])
def test_shrunk_model_equals_masked_model(build, norm):
    keras.utils.set_random_seed(0)
    model = build()
    x, cb = _train_with_channel_pruning(model, norm=norm)
    for row in cb.summary():
        assert row["kept"] == row["channels"] - row["channels"] // 2
    small = prune.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert small.count_params() < 0.4 * model.count_params()
    assert prune.count_macs(small) < 0.35 * prune.count_macs(model)


def test_residual_add_channels_pruned_together():
    spaces = prune.channel_spaces(mobilenet_small())
    merged = [s for s in spaces if len(s.producers) == 2]
    assert len(merged) == 1
    assert merged[0].names() == ["block2_pw", "block3_pw"]
    keras.utils.set_random_seed(1)
    model = mobilenet_small()
    _train_with_channel_pruning(model)
    a = np.asarray(model.get_layer("block2_pw").kernel)
    b = np.asarray(model.get_layer("block3_pw").kernel)
    dead_a = np.all(a.reshape(-1, a.shape[-1]) == 0, axis=0)
    dead_b = np.all(b.reshape(-1, b.shape[-1]) == 0, axis=0)
    np.testing.assert_array_equal(dead_a, dead_b)
    small = prune.shrink(model)
    assert small.get_layer("block2_pw").filters == 32
    assert small.get_layer("block3_dw").kernel.shape[2] == 32


def test_flatten_dense_rows_rewired():
    keras.utils.set_random_seed(2)
    model = seed_cnn()
    _train_with_channel_pruning(model)
    small = prune.shrink(model)
    assert small.get_layer("conv2").filters == 32
    assert small.get_layer("fc1").kernel.shape == (7 * 7 * 32, 512)
    assert small.get_layer("logits").kernel.shape == (512, 10)


def test_output_layer_is_never_pruned():
    spaces = prune.channel_spaces(seed_cnn())
    out = [s for s in spaces if s.names() == ["logits"]][0]
    assert not out.prunable and "model output" in out.frozen


def test_unrewirable_consumer_is_a_clear_error():
    inp = keras.Input((8,))
    h = keras.layers.Dense(8, name="producer")(inp)
    h = keras.layers.Reshape((2, 4), name="reshape")(h)
    out = keras.layers.Flatten()(h)
    out = keras.layers.Dense(2, name="head")(out)
    model = keras.Model(inp, out)
    k = model.get_layer("producer").kernel
    k.assign(np.asarray(k) * np.array([0, 1] * 4, "float32"))
    model.get_layer("producer").bias.assign(np.zeros(8, "float32"))
    with pytest.raises(ValueError, match="producer.*reshape"):
        prune.shrink(model)


def test_excluded_layers_keep_channels():
    keras.utils.set_random_seed(3)
    model = seed_cnn()
    _train_with_channel_pruning(model, exclude=["conv1"])
    small = prune.shrink(model)
    assert small.get_layer("conv1").filters == 32
    assert small.get_layer("conv2").filters == 32


def test_bad_norm():
    with pytest.raises(ValueError, match="norm"):
        prune.ChannelPruning(prune.ConstantSparsity(0.5, 0), norm="l3")


def _inception_like():
    """Two branches concatenated on channels (with the image itself), then
    BatchNorm, ReLU and a conv consume the concatenation."""
    i = keras.Input((28, 28, 1))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                            name="branch_a")(i)
    b = keras.layers.Conv2D(6, 1, activation="relu", name="branch_b")(i)
    x = keras.layers.Concatenate(name="concat")([a, i, b])
    x = keras.layers.BatchNormalization(name="concat_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(10, 3, strides=2, name="mix")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(i, keras.layers.Dense(10, name="logits")(x))


def test_concatenate_channels_removed_at_their_offsets():
    keras.utils.set_random_seed(3)
    model = _inception_like()
    spaces = {tuple(s.names()): s for s in prune.channel_spaces(model)}
    assert spaces[("branch_a",)].prunable and spaces[("branch_b",)].prunable
    bn_b = dict((l.name, off) for l, off in
                spaces[("branch_b",)].iter_followers())
    assert bn_b == {"concat_bn": 9}          # after 8 + 1 channels
    x, cb = _train_with_channel_pruning(model)
    small = prune.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert small.get_layer("branch_a").filters == 4
    assert small.get_layer("branch_b").filters == 3
    # the image channel in the middle stays: 4 + 1 + 3 channels
    assert small.get_layer("concat_bn").gamma.shape == (8,)
    assert small.get_layer("mix").kernel.shape == (3, 3, 8, 5)


def test_concatenate_into_unrewirable_layer_is_frozen():
    i = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(4, 1, name="a")(i)
    b = keras.layers.Conv2D(4, 1, name="b")(i)
    x = keras.layers.Concatenate(name="cat")([a, b])
    x = keras.layers.Reshape((8, 8, 2, 4), name="reshape")(x)
    model = keras.Model(i, keras.layers.Flatten()(x))
    spaces = {tuple(s.names()): s for s in prune.channel_spaces(model)}
    for name in ("a", "b"):
        assert not spaces[(name,)].prunable
        assert "reshape" in spaces[(name,)].frozen


def _graph_features_model():
    """Rescaling, SeparableConv, a squeeze-excitation gate (GAP -> Reshape
    -> Conv -> Conv(sigmoid) -> Multiply), a keras.ops call (x * 0.5) and
    a nested model."""
    i = keras.Input((12, 12, 3))
    x = keras.layers.Rescaling(1 / 255.0, offset=-1.0)(i)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="a")(x)
    b = keras.layers.SeparableConv2D(8, 3, activation="relu", name="b")(x)
    g = keras.layers.GlobalAveragePooling2D()(b)
    g = keras.layers.Reshape((1, 1, 8), name="se_reshape")(g)
    g = keras.layers.Conv2D(4, 1, activation="relu", name="se_reduce")(g)
    g = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_expand")(g)
    x = keras.layers.Multiply(name="se_mul")([b, g])
    x = x * 0.5
    x = keras.layers.Conv2D(6, 3, name="c")(x)
    inner = keras.Sequential([keras.Input((6, 6, 6)),
                              keras.layers.Conv2D(4, 1, name="inner")],
                             name="nested")
    x = keras.layers.GlobalAveragePooling2D()(inner(x))
    return keras.Model(i, keras.layers.Dense(10, name="logits")(x))


def test_gates_ops_separable_and_nested_models_in_channel_graph():
    keras.utils.set_random_seed(4)
    model = _graph_features_model()
    spaces = {tuple(s.names()): s for s in prune.channel_spaces(model)}
    assert spaces[("a",)].prunable and spaces[("se_reduce",)].prunable
    b = spaces[("b",)]
    assert b.prunable and [l.name for l in b.passengers] == ["se_expand"]
    assert [l.name for l in b.reshapes] == ["se_reshape"]
    assert "nested model nested" in spaces[("c",)].frozen
    x = np.random.default_rng(0).random((4, 12, 12, 3), "float32") * 255
    model.compile("sgd", "mse")
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))
    model.fit(x, np.zeros((4, 10)), verbose=0, callbacks=[cb])
    small = prune.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert small.get_layer("b").filters == 4
    assert small.get_layer("se_expand").filters == 4
    assert small.get_layer("se_reshape").target_shape == (1, 1, 4)
    assert small.get_layer("c").kernel.shape == (3, 3, 4, 6)
    assert small.get_layer("b").depthwise_kernel.shape == (3, 3, 4, 1)


def test_op_mapping_zero_to_nonzero_freezes_its_channels():
    i = keras.Input((8,))
    h = keras.layers.Dense(8, name="shifted")(i)
    out = keras.layers.Dense(2, name="head")(h + 1.0)
    spaces = {tuple(s.names()): s
              for s in prune.channel_spaces(keras.Model(i, out))}
    assert "maps 0 to non-zero" in spaces[("shifted",)].frozen


def test_shared_layer_freezes_its_inputs():
    i = keras.Input((8,))
    h = keras.layers.Dense(8, name="producer")(i)
    shared = keras.layers.Dense(8, name="shared")
    out = keras.layers.Dense(2, name="head")(shared(shared(h)))
    spaces = {tuple(s.names()): s
              for s in prune.channel_spaces(keras.Model(i, out))}
    assert "shared" in spaces[("producer",)].frozen


@pytest.mark.parametrize("name", ["tfcompress.prune.channels",
                                  "tfcompress.prune.channels.graph",
                                  "tfcompress.prune.channels.shrink",
                                  "tfcompress.utils.graph"])
def test_channel_docstring_examples(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted and result.failed == 0


def _dense_blocks():
    """DenseNet-style: each block concatenates its new channels onto the
    running concatenation; BatchNorm + ReLU + conv read each
    concatenation, the last one a concatenation of concatenations."""
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="stem")(i)
    for n in range(3):
        h = keras.layers.BatchNormalization(name=f"b{n}_bn")(x)
        h = keras.layers.ReLU()(h)
        h = keras.layers.Conv2D(4, 3, padding="same", name=f"b{n}_conv")(h)
        x = keras.layers.Concatenate(name=f"b{n}_concat")([x, h])
    x = keras.layers.BatchNormalization(name="final_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(i, keras.layers.Dense(10, name="logits")(x))


def test_concatenation_of_concatenations_shrinks_at_every_reader():
    keras.utils.set_random_seed(5)
    model = _dense_blocks()
    spaces = {tuple(s.names()): s for s in prune.channel_spaces(model)}
    # the stem's channels reach every block's BatchNorm at offset 0, the
    # first block's at offset 6 of the 2nd and 3rd blocks' and the last
    follows = {name: dict((l.name, off) for l, off in
                          spaces[(name,)].iter_followers())
               for name in ("stem", "b0_conv", "b2_conv")}
    assert follows["stem"] == {"b0_bn": 0, "b1_bn": 0, "b2_bn": 0,
                               "final_bn": 0}
    assert follows["b0_conv"] == {"b1_bn": 6, "b2_bn": 6, "final_bn": 6}
    assert follows["b2_conv"] == {"final_bn": 14}
    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 8, 3), dtype=np.float32)
    compile_classifier(model)
    model.fit(x, rng.integers(0, 10, 8), batch_size=8, epochs=1, verbose=0,
              callbacks=[prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))])
    small = prune.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    # 3 of 6 stem channels and 2 of 4 per block remain: 3 + 3 * 2
    assert small.get_layer("final_bn").gamma.shape == (9,)
    assert small.get_layer("b2_bn").gamma.shape == (7,)


def test_add_of_a_concatenation_and_a_conv_freezes_both():
    """NASNet adjust blocks: Add(Concatenate([a, b]), c): the channels of
    c line up with the concatenation's, so neither side can shrink."""
    i = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 1, name="a")(i)
    b = keras.layers.Conv2D(4, 1, name="b")(i)
    c = keras.layers.Conv2D(8, 1, name="c")(i)
    x = keras.layers.Add(name="add")([keras.layers.Concatenate()([a, b]), c])
    x = keras.layers.Conv2D(4, 1, name="mix")(x)
    model = keras.Model(i, x)
    spaces = {tuple(s.names()): s for s in prune.channel_spaces(model)}
    for name in ("a", "b", "c"):
        assert not spaces[(name,)].prunable
        assert "add" in spaces[(name,)].frozen


def test_count_macs_sees_through_pruning_quantize_and_cluster_wrappers():
    from tfcompress import cluster, quantize
    model = mobilenet_small()
    macs = prune.count_macs(model)
    assert macs > 0
    wrapped = {
        "pruned": prune.prune_low_magnitude(
            model, prune.ConstantSparsity(0.5, 0)),
        "qat": quantize.quantize_model(model),
        "clustered": cluster.cluster_weights(model, number_of_clusters=4),
    }
    for kind, m in wrapped.items():
        assert prune.count_macs(m) == macs, kind


def _global_pruning_model():
    """Two channel spaces with their BatchNormalization scales set by
    hand: ``a`` (8 channels) has six weak channels, ``b`` (32 channels)
    none."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="a")(inp)
    x = keras.layers.BatchNormalization(name="a_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, use_bias=False, name="b")(x)
    x = keras.layers.BatchNormalization(name="b_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(4, name="logits")(x))
    gamma_a = np.full(8, 1.0, np.float32)
    gamma_a[:6] = 0.01
    model.get_layer("a_bn").gamma.assign(gamma_a)
    model.get_layer("b_bn").gamma.assign(
        np.linspace(0.8, 1.2, 32).astype(np.float32))
    return model


def _prune_once(model, **kw):
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.25, 0), model=model,
                              **kw)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    return {row["producers"][0]: row["kept"] for row in cb.summary()}


def test_global_allocation_prunes_the_weakest_channels_of_the_model():
    kept = _prune_once(_global_pruning_model(), allocation="global")
    # 25% of 40 channels = 10: the 6 weak channels of a, 4 of b
    assert kept == {"a": 2, "b": 28}
    assert _prune_once(_global_pruning_model()) == {"a": 6, "b": 24}


def test_global_allocation_keeps_max_space_sparsity():
    kept = _prune_once(_global_pruning_model(), allocation="global",
                       max_space_sparsity=0.5)
    assert kept == {"a": 4, "b": 26}


def test_global_allocation_cap_below_the_target_is_input_error():
    # caps 0.1: a loses 0 of 8, b 3 of 32 -> 7.5% of 40, schedule asks 25%
    with pytest.raises(InputError, match="max_space_sparsity 0.1 lets at "
                                         "most 7.5%.*asks for 25%"):
        _prune_once(_global_pruning_model(), allocation="global",
                    max_space_sparsity=0.1)


def test_bad_allocation():
    with pytest.raises(ValueError, match="allocation"):
        prune.ChannelPruning(prune.ConstantSparsity(0.5, 0),
                             allocation="layer")
    with pytest.raises(ValueError, match="max_space_sparsity"):
        prune.ChannelPruning(prune.ConstantSparsity(0.5, 0),
                             max_space_sparsity=1.0)


@pytest.mark.parametrize("center", [True, False])
def test_batchnorm_without_scale_trained_before_pruning_shrinks_exactly(
        center):
    # keras.applications InceptionV3's conv2d_bn: BatchNormalization(
    # scale=False); its moving mean, trained before pruning, reached the
    # output of a zeroed channel. Without beta either, a channel whose
    # moving mean is zeroed outputs 0 too, and goes.
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, use_bias=False, name="conv_a")(i)
    x = keras.layers.BatchNormalization(scale=False, center=center,
                                        name="bn_a")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(i, keras.layers.Dense(10, name="fc")(x))
    compile_classifier(model)
    rng = np.random.default_rng(0)
    x = rng.random((64, 16, 16, 3), dtype=np.float32) * 4 - 1
    y = np.arange(64) % 10
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[
        prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))])
    small = prune.shrink(model)
    assert small.get_layer("conv_a").filters == 8
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)


def test_exclude_must_name_producers_and_schedule_must_be_a_schedule():
    # one name on its own is a list of one, as in prune_low_magnitude
    # (tests/test_argument_errors.py)
    with pytest.raises(ValueError, match="pruning schedule"):
        prune.ChannelPruning(0.5)
    with pytest.raises(ValueError, match="convx"):
        _train_with_channel_pruning(seed_cnn(), exclude=["convx"])


def test_softmax_over_channels_is_not_an_elementwise_gate():
    # x * softmax(conv(gap(x))): removing a channel changes every other
    # channel's softmax value, so neither space may lose channels
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu",
                            name="body")(i)
    g = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
    g = keras.layers.Conv2D(8, 1, name="attend")(g)
    g = keras.layers.Activation("softmax", name="weights")(g)
    y = keras.layers.Multiply()([x, g])
    head_in = keras.layers.Conv2D(4, 1, activation="softmax",
                                  name="soft_conv")(y)
    out = keras.layers.Dense(2, name="head")(
        keras.layers.GlobalAveragePooling2D()(head_in))
    spaces = {tuple(s.names()): s
              for s in prune.channel_spaces(keras.Model(i, out))}
    frozen = {n: s.frozen for names, s in spaces.items() for n in names}
    assert "softmax" in frozen["attend"] and frozen["body"]
    assert "softmax" in frozen["soft_conv"]


def test_batchnorm_or_layers_on_another_axis_freeze_their_channels():
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="a")(i)
    x = keras.layers.BatchNormalization(axis=1, name="bn_rows")(x)
    x = keras.layers.Conv2D(8, 3, name="b")(x)
    x = keras.layers.Conv2D(8, 1, data_format="channels_first",
                            name="cf")(x)
    out = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(x))
    spaces = {tuple(s.names()): s
              for s in prune.channel_spaces(keras.Model(i, out))}
    frozen = {n: s.frozen for names, s in spaces.items() for n in names}
    assert "axis" in frozen["a"]
    assert "channels_first" in frozen["b"]
    assert "channels_first" in frozen["cf"]


def test_channel_spaces_of_a_subclassed_model_is_input_error():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.fc = keras.layers.Dense(2)

        def call(self, x):
            return self.fc(x)

    net = Net()
    net(np.zeros((1, 4), "float32"))
    with pytest.raises(InputError, match="subclassed"):
        prune.channel_spaces(net)


def test_count_macs_of_shared_3d_depthwise_1d_and_transposed_layers():
    i = keras.Input((6, 8))
    shared = keras.layers.Dense(8, name="shared")
    x = shared(shared(i))                                  # 2 * 6 * 8 * 8
    x = keras.layers.DepthwiseConv1D(3, name="dw1")(x)     # 4 * 3 * 8
    x = keras.layers.Conv1DTranspose(2, 3, name="up")(x)   # 4 * 3 * 2 * 8
    assert prune.count_macs(keras.Model(i, x)) == 768 + 96 + 192
    j = keras.Input((4, 4, 4, 2))
    c3 = keras.layers.Conv3D(3, 3, padding="same")(j)  # 64 * 27 * 2 * 3
    assert prune.count_macs(keras.Model(j, c3)) == 64 * 162



def test_count_macs_of_a_base_built_without_input_size():
    # keras.applications(include_top=False) without input_shape takes
    # (None, None, 3): nested, it runs at the caller's size; alone, the
    # size is open and count_macs says how to give it
    i = keras.Input((None, None, 3))
    base = keras.Model(i, keras.layers.Conv2D(4, 3, padding="same",
                                              name="conv")(i))
    nested = keras.Sequential([keras.Input((8, 6, 3)), base,
                               keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(2, name="head")])
    assert prune.count_macs(nested) == 8 * 6 * 27 * 4 + 4 * 2
    assert prune.count_macs(prune.prune_low_magnitude(nested)) == \
        8 * 6 * 27 * 4 + 4 * 2
    with pytest.raises(InputError, match=r"leaves open .*keras\.Input\("
                                         r"\(n, n, 3\)\)"):
        prune.count_macs(base)

def test_count_macs_of_a_base_without_input_size_nested_two_levels_deep():
    def mobilenet_v2(**kw):
        return keras.applications.MobileNetV2(include_top=False,
                                              weights=None, alpha=0.35, **kw)
    i = keras.Input((None, None, 3))
    middle = keras.Model(i, keras.layers.GlobalAveragePooling2D()(
        mobilenet_v2()(i)), name="middle")
    outer = keras.Sequential([keras.Input((32, 32, 3)), middle,
                              keras.layers.Dense(10, name="head")])
    sized = prune.count_macs(mobilenet_v2(input_shape=(32, 32, 3)))
    assert prune.count_macs(outer) == sized + 1280 * 10


def _open_base(name):
    """A base of open size whose layer names every copy repeats."""
    i = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(i)
    return keras.Model(i, keras.layers.GlobalAveragePooling2D()(x),
                       name=name)


def test_count_macs_of_open_bases_repeating_layer_names():
    # two copies of a base in one ensemble cannot be flattened into one
    # graph (their layer names repeat): each is counted at its call's size
    i = keras.Input((None, None, 3))
    a, b = _open_base("a"), _open_base("b")
    ensemble = keras.Model(i, keras.layers.Concatenate()([a(i), b(i)]),
                           name="ensemble")
    outer = keras.Sequential([keras.Input((8, 6, 3)), ensemble,
                              keras.layers.Dense(2, name="head")])
    assert prune.count_macs(outer) == 2 * 8 * 6 * 27 * 4 + 8 * 2
    assert prune.count_macs(prune.prune_low_magnitude(outer)) == \
        2 * 8 * 6 * 27 * 4 + 8 * 2


def test_channel_pruning_follows_a_custom_schedule():
    import tensorflow as tf

    class AtStepTwo(prune.PruningSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.int64)
            return tf.equal(step, 2), tf.constant(0.25, tf.float32)

        def get_config(self):
            return {}

    model = _global_pruning_model()
    cb = prune.ChannelPruning(AtStepTwo(), model=model)
    cb.on_train_begin()
    for step in range(3):
        cb.on_train_batch_begin(step)
        kept = {row["producers"][0]: row["kept"] for row in cb.summary()}
        assert kept == ({"a": 8, "b": 32} if step < 2 else
                        {"a": 6, "b": 24}), step
        cb.on_train_batch_end(step)


def _depth_multiplier_model():
    """conv -> BN -> depthwise x2 -> BN -> depthwise x3 -> BN -> pointwise:
    input channel c of ``dw2`` feeds its outputs 2c and 2c + 1, which feed
    ``dw3``'s outputs 6c .. 6c + 5."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2,
                                     name="dw2")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn2")(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=3,
                                     name="dw3")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn3")(x))
    x = keras.layers.Conv2D(8, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def test_depth_multiplier_outputs_follow_their_input_channel():
    from tfcompress.prune.channels import channel_scores
    model = _depth_multiplier_model()
    space = prune.channel_spaces(model)[0]
    assert space.names() == ["conv"] and space.prunable, space.frozen
    gamma = np.ones(48, np.float32)
    gamma[6 * 5:6 * 6] = 0.0       # the six bn3 channels of conv channel 5
    model.get_layer("bn3").gamma.assign(gamma)
    assert int(np.argmin(channel_scores(space))) == 5
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0, frequency=1))
    model.fit(x, np.zeros((8, 3)), batch_size=4, verbose=0, callbacks=[cb])
    assert prune.dead_channels(space)[5]
    small = prune.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert small.get_layer("conv").filters == 4
    assert small.get_layer("dw2").kernel.shape == (3, 3, 4, 2)
    assert small.get_layer("bn2").gamma.shape == (8,)
    assert small.get_layer("dw3").kernel.shape == (3, 3, 8, 3)
    assert small.get_layer("bn3").gamma.shape == (24,)
    assert small.get_layer("pw").kernel.shape == (1, 1, 24, 4)
    positions = 8 * 8
    assert prune.count_macs(small) == positions * (
        27 * 4 + 9 * 4 * 2 + 9 * 8 * 3 + 24 * 4) + 4 * 3


def test_mobilenet_with_depth_multiplier_loses_its_depthwise_channels():
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNet(
        alpha=0.25, depth_multiplier=2, input_shape=(32, 32, 3),
        weights=None, classes=10, classifier_activation=None)
    spaces = prune.channel_spaces(model)
    assert not any("depth_multiplier" in s.frozen for s in spaces)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0), model=model)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    small = prune.shrink(model)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    masked = model.predict(x, verbose=0)
    scale = np.abs(masked).max()   # untrained: logits of about 1e-19
    np.testing.assert_allclose(small.predict(x, verbose=0) / scale,
                               masked / scale, atol=1e-5)
    # 72.6% of the parameters and 71.4% of the MACs go; while the depthwise
    # inputs stayed whole, 15.5% and 4.1% did
    assert small.count_params() < 0.3 * model.count_params()
    assert prune.count_macs(small) < 0.3 * prune.count_macs(model)


def test_depth_multiplier_outputs_reach_flatten_dense_but_not_concatenate():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    a = keras.layers.Conv2D(4, 3, name="a")(inp)
    a = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="a_dw")(a)
    b = keras.layers.Conv2D(4, 5, name="b")(inp)
    b = keras.layers.DepthwiseConv2D(1, depth_multiplier=2, name="b_dw")(b)
    joined = keras.layers.Concatenate()([b, b])
    x = keras.layers.Flatten()(keras.layers.Add()([a, b]))
    out = keras.layers.Dense(3, name="head")(x)
    joined = keras.layers.GlobalAveragePooling2D()(joined)
    model = keras.Model(inp, [out, keras.layers.Dense(2, name="aux")(joined)])
    spaces = {tuple(s.names()): s for s in prune.channel_spaces(model)}
    assert "concatenates channels repeated by a depth_multiplier" in \
        spaces[("a", "b")].frozen
    model = keras.Model(inp, out)
    space = prune.channel_spaces(model)[0]
    assert space.names() == ["a", "b"] and space.prunable, space.frozen
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((4, 6, 6, 3), dtype=np.float32)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0), norm="l2")
    model.fit(x, np.zeros((4, 3)), verbose=0, callbacks=[cb])
    small = prune.shrink(model)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert small.get_layer("a_dw").kernel.shape == (3, 3, 2, 2)
    assert small.get_layer("head").kernel.shape == (2 * 2 * 4, 3)


def test_steps_per_execution_above_one_is_input_error():
    # the schedule's steps are batches; with steps_per_execution=4 the
    # callback saw one batch in four and stopped far short of the target
    model = seed_cnn()
    model.compile("adam", "sparse_categorical_crossentropy",
                  steps_per_execution=4)
    x = np.random.default_rng(0).random((32, 28, 28, 1), dtype=np.float32)
    cb = prune.ChannelPruning(prune.PolynomialDecay(0.0, 0.5, 0, 3))
    with pytest.raises(InputError, match="steps_per_execution=1"):
        model.fit(x, np.arange(32) % 10, batch_size=8, verbose=0,
                  callbacks=[cb])


def test_resumed_fit_continues_the_schedule(tmp_path):
    # a run resumed at epoch 2 (BackupAndRestore, or initial_epoch=) with
    # a new callback continues its schedule from step 2 * steps_per_epoch
    # instead of restarting at 0, which left fewer channels pruned than
    # before the interruption
    def run(model, epochs, callbacks):
        rng = np.random.default_rng(0)
        x = rng.random((32, 28, 28, 1), dtype=np.float32)
        cb = prune.ChannelPruning(prune.PolynomialDecay(0.0, 0.5, 0, 8, frequency=1),
                                  norm="l1")
        model.fit(x, np.arange(32) % 10, batch_size=8, epochs=epochs,
                  verbose=0, callbacks=[cb] + callbacks)
        return cb

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    keras.utils.set_random_seed(0)
    model = compile_classifier(seed_cnn())
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError):
        run(model, 3, [keras.callbacks.BackupAndRestore(backup),
                       Interrupt()])
    resumed = compile_classifier(seed_cnn())
    cb = run(resumed, 3, [keras.callbacks.BackupAndRestore(backup)])
    assert cb.step == 12
    assert [row["kept"] for row in cb.summary()] == [
        row["channels"] - row["channels"] // 2 for row in cb.summary()]
    # initial_step, when given, is where the schedule starts
    again = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0),
                                 initial_step=3)
    again.set_model(resumed)
    again.set_params({"steps": 4, "epochs": 3})
    again.on_train_begin()
    again.on_epoch_begin(2)
    assert again.step == 3


def test_sequential_without_input_is_input_error():
    # built only by fit's first step, which runs after on_train_begin
    model = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))
    x = np.zeros((8, 4), np.float32)
    with pytest.raises(InputError, match="keras.Input"):
        model.fit(x, np.zeros((8, 3)), verbose=0, callbacks=[cb])
    for analyse in (prune.channel_spaces, prune.shrink, prune.count_macs):
        with pytest.raises(InputError, match="not built"):
            analyse(model)
