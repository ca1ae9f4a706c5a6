"""prune_low_magnitude on layers and models; strip, summary, save/resume."""

import keras
import numpy as np
import pytest

from tfcompress import prune
from tfcompress.errors import InputError
from tfcompress.models import mobilenet_small
from tfcompress.utils.layer_map import iter_layers


def _sequential():
    return keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", name="fc1"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.Dense(4, name="fc2"),
    ])


def _nested():
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, keras.layers.Dense(8, name="inner_fc")(
        inner_in), name="inner")
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(
        inner(inputs)), name="outer")


def _fit(model, x, y, epochs=2, **kwargs):
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[prune.UpdatePruningStep()], **kwargs)
    return model


def _xy(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 6)).astype("float32"),
            rng.normal(size=(n, 4)).astype("float32"))


SCHEDULE = prune.PolynomialDecay(0.0, 0.5, 0, 6, frequency=2)


class ScaledDense(keras.layers.Layer):
    """A subclassed layer that opts in with ``get_prunable_weights``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 name="w")
        self.scale = self.add_weight(shape=(), initializer="ones",
                                     name="scale")

    def call(self, x):
        return (x @ self.w) * self.scale

    def get_prunable_weights(self):
        return [self.w]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class Opaque(keras.layers.Layer):
    """A subclassed layer with weights but no pruning protocol."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 4), name="w")

    def call(self, x):
        return x @ self.w


# the layers with prunable kernels, by hand (depthwise kernels are left
# dense unless named; batch norm, activations and pooling have none)
EXPECTED_WRAPPED = {
    "_sequential": {"fc1", "fc2"},
    "_nested": {"inner_fc", "head"},
    "mobilenet_small": {"stem_conv", "block1_pw", "block2_pw", "block3_pw",
                        "logits"},
}


@pytest.mark.parametrize("build", [_sequential, _nested, mobilenet_small])
def test_wraps_every_prunable_layer_and_leaves_the_rest(build):
    model = build()
    pruned = prune.prune_low_magnitude(model, SCHEDULE)
    assert prune.is_pruned(pruned) and not prune.is_pruned(model)
    wrapped = {w.layer.name for w in prune.collect_wrappers(pruned)}
    assert wrapped == EXPECTED_WRAPPED[build.__name__]
    x = np.random.default_rng(0).random(
        (2,) + tuple(model.input_shape[1:])).astype("float32")
    # before training the masks are all ones: same function
    np.testing.assert_allclose(pruned(x), model(x), rtol=1e-5, atol=1e-6)


def test_nested_model_trains_and_strips_back_to_plain_layers():
    x, y = _xy()
    pruned = prune.prune_low_magnitude(_nested(), SCHEDULE)
    pruned.compile("adam", "mse")
    _fit(pruned, x, y)
    stripped = prune.strip_pruning(pruned)
    assert not prune.is_pruned(stripped)
    assert [type(l).__name__ for l in iter_layers(stripped)] == [
        "Dense", "Dense"]
    assert isinstance(stripped.layers[1], keras.Model)   # nesting kept
    np.testing.assert_allclose(stripped.predict(x, verbose=0),
                               pruned.predict(x, verbose=0), atol=1e-6)
    for layer in iter_layers(stripped):
        assert (layer.kernel.numpy() == 0).mean() == 0.5


def test_frozen_nested_base_stays_frozen_and_can_be_unfrozen(tmp_path):
    # transfer learning: train the head with the base frozen, then set
    # base.trainable = True to fine-tune it (the Keras guide's two steps)
    x, y = _xy()
    model = _nested()
    model.get_layer("inner").trainable = False

    def trainable(m):
        return sorted(w.path for w in m.trainable_weights)
    pruned = prune.prune_low_magnitude(model, SCHEDULE)
    pruned.compile("adam", "mse")
    _fit(pruned, x, y, epochs=1)
    pruned.save(tmp_path / "p.keras")
    for m in (pruned, keras.models.load_model(tmp_path / "p.keras"),
              prune.strip_pruning(pruned)):
        assert not m.get_layer("inner").trainable
        assert trainable(m) == ["head/bias", "head/kernel"]
        m.get_layer("inner").trainable = True
        assert trainable(m) == ["head/bias", "head/kernel",
                                "inner_fc/bias", "inner_fc/kernel"]


def test_layers_frozen_in_a_flat_model_can_be_unfrozen_after_wrapping():
    # freeze the first layers, train the head, set them trainable again
    model = _sequential()
    model.get_layer("fc1").trainable = False
    pruned = prune.prune_low_magnitude(model, SCHEDULE)
    wrapper = prune.collect_wrappers(pruned)[0]
    assert not wrapper.trainable        # as frozen as the layer it wraps
    assert {w.path.split("/")[0] for w in pruned.trainable_weights} == {
        "bn", "fc2"}
    for layer in pruned.layers:
        layer.trainable = True
    assert wrapper.layer.kernel in pruned.trainable_weights


def test_strip_bakes_masks_and_leaves_unpruned_models_alone():
    model = _sequential()
    assert prune.strip_pruning(model) is model
    pruned = prune.prune_low_magnitude(model, SCHEDULE)
    wrapper = prune.collect_wrappers(pruned)[0]
    wrapper.masks[0].assign(np.zeros(wrapper.masks[0].shape))
    stripped = prune.strip_pruning(pruned)
    assert (stripped.get_layer("fc1").kernel.numpy() == 0).all()
    assert [type(l).__name__ for l in stripped.layers] == [
        "Dense", "BatchNormalization", "Dense"]


def test_single_layer_and_protocol_layers():
    wrapper = prune.prune_low_magnitude(keras.layers.Dense(3), SCHEDULE)
    assert isinstance(wrapper, prune.PruneLowMagnitude)
    custom = ScaledDense(4, name="scaled")
    custom.build((None, 6))
    assert isinstance(custom, prune.PrunableLayer)
    wrapper = prune.prune_low_magnitude(
        custom, prune.ConstantSparsity(0.75, 0, frequency=1))
    wrapper.pruning_step.assign(0)
    wrapper(np.ones((1, 6), "float32"), training=True)
    assert wrapper.weight_keys() == ["w"]
    assert wrapper.sparsity() == [0.75]
    assert custom.scale.numpy() == 1.0


def test_unsupported_layers_are_reported_and_refused_when_named():
    inputs = keras.Input((6,))
    x = Opaque(name="opaque")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    pruned = prune.prune_low_magnitude(model, SCHEDULE)
    rows = {r["layer"]: r for r in prune.summary(pruned, print_fn=print)}
    assert rows["opaque"]["status"] == "dense (unsupported)"
    assert rows["fc"]["status"] == "pruned"
    with pytest.raises(ValueError, match="opaque.*PrunableLayer"):
        prune.prune_low_magnitude(model, SCHEDULE, include=["opaque"])
    with pytest.raises(ValueError, match="PrunableLayer"):
        prune.prune_low_magnitude(keras.layers.BatchNormalization())


def test_include_and_exclude():
    model = _sequential()
    only = prune.prune_low_magnitude(model, SCHEDULE, include=["fc2"])
    assert [w.layer.name for w in prune.collect_wrappers(only)] == ["fc2"]
    rest = prune.prune_low_magnitude(model, SCHEDULE, exclude=["fc2"])
    assert [w.layer.name for w in prune.collect_wrappers(rest)] == ["fc1"]
    rows = {r["layer"]: r["status"] for r in prune.summary(
        rest, print_fn=lambda s: None)}
    assert rows["fc2"] == "dense (excluded)"
    with pytest.raises(ValueError, match="nope"):
        prune.prune_low_magnitude(model, SCHEDULE, include=["nope"])


def test_exclude_naming_unknown_layers_is_an_error():
    # a typo in exclude would otherwise prune the layer the user meant to
    # keep dense, silently
    with pytest.raises(InputError, match=r"exclude.*'fc_2'.*fc1.*fc2"):
        prune.prune_low_magnitude(_sequential(), SCHEDULE,
                                  exclude=["fc_2"])
    nested = prune.prune_low_magnitude(_nested(), SCHEDULE,
                                       exclude=["inner_fc"])
    assert [w.layer.name for w in prune.collect_wrappers(nested)] == ["head"]


def _trained_summary():
    """``(pruned model, summary rows, printed lines)`` after a short fit."""
    x, y = _xy()
    pruned = prune.prune_low_magnitude(_sequential(), SCHEDULE)
    pruned.compile("adam", "mse")
    _fit(pruned, x, y)
    lines = []
    rows = prune.summary(pruned, print_fn=lines.append)
    return pruned, rows, lines


def test_summary_rows_and_table():
    _, rows, lines = _trained_summary()
    fc1 = next(r for r in rows if r["layer"] == "fc1")
    assert fc1["target_sparsity"] == 0.5 and fc1["sparsity"] == 0.5
    assert fc1["params"] == 48 and fc1["weights"] == ["kernel"]
    assert "fc1" in lines[0] and "unstructured" in lines[0]


def test_summary_totals_the_whole_model():
    # the rows covered each layer only, and a pruned layer's row its pruned
    # weights only: the model's sparsity had to be worked out by hand
    pruned, rows, lines = _trained_summary()
    assert [r["layer"] for r in rows] == ["fc1", "bn", "fc2"]
    plain = [np.asarray(w) for w in prune.strip_pruning(pruned).weights]
    params = sum(w.size for w in plain)
    assert rows.total["params"] == params == 124
    assert rows.total["sparsity"] == round(
        sum(int((w == 0).sum()) for w in plain) / params, 4)
    # 48 + 32 kernel weights at 0.5 of 124
    assert rows.total["target_sparsity"] == round(40 / 124, 4)
    assert rows.total["status"] == "2 of 3 layers pruned"
    assert set(rows.total) == set(rows[0])
    table = lines[0].splitlines()
    assert table[-1].split()[:2] == ["total", "-"]
    assert set(table[-2]) == {"-", " "}


def test_summary_names_layers_n_of_m_left_dense_for_not_fitting():
    # a conv with 1 input channel cannot hold 2 zeros in 4: N:M pruning
    # leaves it unwrapped, and the summary called it excluded though
    # nothing was excluded
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="stem"),
        keras.layers.Conv2D(4, 3, name="conv"), keras.layers.Flatten(),
        keras.layers.Dense(2, name="fc")])
    pruned = prune.prune_low_magnitude(model, SCHEDULE,
                                       sparsity_m_by_n=(2, 4))
    status = {r["layer"]: r["status"]
              for r in prune.summary(pruned, print_fn=None)}
    assert status == {"stem": "dense (N:M does not fit)", "conv": "pruned",
                      "fc": "pruned"}
    kept = prune.prune_low_magnitude(model, SCHEDULE, exclude=["conv"])
    assert prune.summary(kept, print_fn=None)[1]["status"] == \
        "dense (excluded)"


def test_a_block_spanning_the_whole_kernel_is_refused_or_left_dense():
    # a (16, 4) block over an (8, 2) kernel is one block, which ranking
    # always keeps: the layer was wrapped and never pruned
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(64, name="hidden"),
                              keras.layers.Dense(2, name="fc")])
    # named on its own (a layer, or in include): refused
    with pytest.raises(InputError, match="^layer 'fc': block_size "
                       r"\(80, 4\) spans all of kernel \(shape \(64, 2\), "
                       r"viewed as 64x2\), so no block can be pruned; use a "
                       "smaller block_size or exclude the layer"):
        prune.prune_low_magnitude(model, SCHEDULE, block_size=(80, 4),
                                  include=["hidden", "fc"])
    with pytest.raises(InputError, match="^layer 'fc': block_size"):
        prune.prune_low_magnitude(model.layers[1], SCHEDULE,
                                  block_size=(80, 4))
    # a whole model: the layer is left dense, as N:M leaves layers it
    # cannot group, and summary says why
    wrapped = prune.prune_low_magnitude(model, SCHEDULE, block_size=(80, 4))
    assert [w.layer.name for w in prune.collect_wrappers(wrapped)] == [
        "hidden"]
    rows = {r["layer"]: r for r in prune.summary(wrapped, print_fn=None)}
    assert rows["fc"]["status"] == "dense (block does not fit)"
    # a block wider than the kernel still leaves several to rank
    wrapped = prune.prune_low_magnitude(model, SCHEDULE, block_size=(1, 4))
    assert len(prune.collect_wrappers(wrapped)) == 2


def test_a_file_pruned_with_a_spanning_block_still_loads(tmp_path):
    # saved before such blocks were refused
    old = keras.Sequential([keras.Input((8,)), prune.PruneLowMagnitude(
        keras.layers.Dense(2, name="fc"), SCHEDULE, block_size=(16, 4),
        refuse_spanning_block=False)])   # as tfcompress built it then
    path = str(tmp_path / "old.keras")
    old.save(path)
    loaded = keras.saving.load_model(path)
    assert prune.collect_wrappers(loaded)[0].block_size == (16, 4)


def test_keras_file_round_trips_masks_step_and_schedule(tmp_path):
    x, y = _xy()
    pruned = prune.prune_low_magnitude(_nested(), SCHEDULE,
                                       block_size=(1, 4))
    pruned.compile("adam", "mse")
    _fit(pruned, x, y)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    assert prune.is_pruned(loaded)
    for a, b in zip(prune.collect_wrappers(pruned),
                    prune.collect_wrappers(loaded)):
        assert a.step == b.step > 0
        np.testing.assert_array_equal(a.masks[0].numpy(), b.masks[0].numpy())
        assert b.block_size == (1, 4)
        assert b.pruning_schedule.get_config() == SCHEDULE.get_config()
        assert a.thresholds == b.thresholds
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               pruned.predict(x, verbose=0), atol=1e-6)


def _resumable_run(tmp_path, interrupt_after=None, epochs=4):
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = rng.normal(size=(48, 4)).astype("float32")
    model = prune.prune_low_magnitude(
        _nested(), prune.PolynomialDecay(0.0, 0.8, 0, 20, frequency=3))
    model.compile(keras.optimizers.Adam(0.01), "mse")
    if interrupt_after is None:
        return _fit(model, x, y, epochs=epochs)
    _fit(model, x, y, epochs=interrupt_after)
    path = tmp_path / "checkpoint.keras"
    model.save(path)
    del model
    resumed = keras.models.load_model(path)
    return _fit(resumed, x, y, epochs=epochs, initial_epoch=interrupt_after)


def test_interrupted_and_resumed_run_ends_with_the_same_masks(tmp_path):
    straight = _resumable_run(tmp_path)
    resumed = _resumable_run(tmp_path, interrupt_after=2)
    for a, b in zip(prune.collect_wrappers(straight),
                    prune.collect_wrappers(resumed)):
        assert a.step == b.step == 24
        np.testing.assert_array_equal(a.masks[0].numpy(), b.masks[0].numpy())
        np.testing.assert_allclose(a.pruned_weights[0].numpy(),
                                   b.pruned_weights[0].numpy(), atol=1e-6)
        size = a.masks[0].numpy().size
        assert a.masks[0].numpy().sum() == int(
            prune.masks.keep_count(size, 0.8))


def test_already_pruned_layers_are_refused():
    pruned = prune.prune_low_magnitude(_sequential(), SCHEDULE)
    with pytest.raises(ValueError, match="strip_pruning"):
        prune.prune_low_magnitude(pruned, SCHEDULE)


class DenseOnlyPolicy:
    """A tfmot-style pruning policy: prune Dense layers, refuse no model."""

    def __init__(self):
        self.checked = []

    def ensure_model_supports_pruning(self, model):
        self.checked.append(model.name)

    def allow_pruning(self, layer):
        return isinstance(layer, keras.layers.Dense)


def test_pruning_policy_decides_per_layer():
    policy = DenseOnlyPolicy()
    model = mobilenet_small()
    pruned = prune.prune_low_magnitude(model, SCHEDULE,
                                       pruning_policy=policy)
    assert policy.checked == [model.name]
    assert [w.layer.name for w in prune.collect_wrappers(pruned)] == [
        "logits"]


def test_wrapping_layers_while_defining_models_tfmot_style(tmp_path):
    schedule = prune.ConstantSparsity(0.5, 0, frequency=1)
    inputs = keras.Input((6,))
    x = prune.prune_low_magnitude(keras.layers.Dense(8), schedule)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    model.compile("sgd", "mse")
    _fit(model, *_xy(16), epochs=1)
    (wrapper,) = prune.collect_wrappers(model)
    assert wrapper.sparsity() == [0.5]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(
        prune.collect_wrappers(loaded)[0].masks[0].numpy(),
        wrapper.masks[0].numpy())


@pytest.mark.parametrize("m_by_n,zeros_per_group", [((1, 4), 1),
                                                    ((3, 4), 3),
                                                    ((2, 4), 2)])
def test_sparsity_m_by_n_counts_zeros_as_tfmot(m_by_n, zeros_per_group,
                                               tmp_path):
    # tfmot: "(m, n) indicates m zeros in every n consecutive values"
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, name="fc")])
    pruned = prune.prune_low_magnitude(
        model, prune.ConstantSparsity(0.9, 0, frequency=1),
        sparsity_m_by_n=m_by_n)
    pruned.compile("sgd", "mse")
    _fit(pruned, np.ones((8, 8), np.float32), np.zeros((8, 4), np.float32),
         epochs=1)
    kernel = prune.strip_pruning(pruned).get_layer("fc").kernel.numpy()
    groups = (kernel.reshape(2, 4, 4) == 0).sum(axis=1)   # along inputs
    assert (groups == zeros_per_group).all()
    pruned.save(tmp_path / "p.keras")
    loaded = prune.collect_wrappers(keras.models.load_model(
        tmp_path / "p.keras"))[0]
    assert loaded.sparsity_m_by_n == m_by_n


def test_a_file_saved_with_n_kept_of_m_loads_with_the_same_pattern():
    # files written when sparsity_m_by_n counted the weights kept
    wrapper = prune.PruneLowMagnitude(keras.layers.Dense(4),
                                      sparsity_m_by_n=(1, 4))
    config = wrapper.get_config()
    config.pop("m_by_n_counts_zeros")
    config["sparsity_m_by_n"] = [1, 4]          # 1 kept of 4
    assert prune.PruneLowMagnitude.from_config(
        config).sparsity_m_by_n == (3, 4)


def test_two_of_four_on_a_model_skips_layers_it_cannot_group():
    from tfcompress.models import seed_cnn
    model = seed_cnn()
    pruned = prune.prune_low_magnitude(model, SCHEDULE,
                                       sparsity_m_by_n=(2, 4))
    wrapped = [w.layer.name for w in prune.collect_wrappers(pruned)]
    assert wrapped == ["conv2", "fc1", "logits"]     # conv1: 1 channel in
    rows = {r["layer"]: r["status"] for r in prune.summary(
        pruned, print_fn=lambda s: None)}
    assert rows["conv1"] == "dense (N:M does not fit)"
    with pytest.raises(ValueError, match="multiple of 4"):
        prune.prune_low_magnitude(model, SCHEDULE, sparsity_m_by_n=(2, 4),
                                  include=["conv1"])


@pytest.mark.parametrize("make,shape,keys", [
    (lambda: keras.layers.Conv1D(4, 3), (2, 8, 4), ["kernel"]),
    (lambda: keras.layers.Conv3D(4, 3), (1, 5, 5, 5, 4), ["kernel"]),
    (lambda: keras.layers.Conv2DTranspose(4, 3), (1, 6, 6, 4), ["kernel"]),
    (lambda: keras.layers.DepthwiseConv2D(3), (1, 6, 6, 4), ["kernel"]),
    (lambda: keras.layers.SeparableConv2D(4, 3), (1, 6, 6, 4),
     ["pointwise_kernel"]),
    (lambda: keras.layers.EinsumDense("ab,bc->ac", output_shape=8), (2, 4),
     ["kernel"]),
    (lambda: keras.layers.Embedding(20, 8), None, ["embeddings"]),
])
def test_builtin_prunable_layers(make, shape, keys):
    if shape is None:
        x = np.random.default_rng(0).integers(0, 20, (2, 5))
    else:
        x = np.random.default_rng(0).random(shape).astype("float32")
    layer = make()
    layer(x)
    wrapper = prune.prune_low_magnitude(
        layer, prune.ConstantSparsity(0.5, 0, frequency=1))
    wrapper.pruning_step.assign(0)
    wrapper(x, training=True)
    assert wrapper.weight_keys() == keys
    assert wrapper.sparsity() == [0.5]


def test_multi_head_attention_kernels_in_a_functional_model(tmp_path):
    inputs = keras.Input((3, 8))
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    pruned = prune.prune_low_magnitude(
        model, prune.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x = rng.random((8, 3, 8)).astype("float32")
    _fit(pruned, x, rng.random((8, 3, 2)).astype("float32"), epochs=1)
    mha = next(w for w in prune.collect_wrappers(pruned)
               if w.layer.name == "mha")
    assert mha.weight_keys() == ["query/kernel", "key/kernel",
                                 "value/kernel", "attention_output/kernel"]
    assert mha.sparsity() == [0.5] * 4
    pruned.save(tmp_path / "mha.keras")
    loaded = keras.models.load_model(tmp_path / "mha.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               pruned.predict(x, verbose=0), atol=1e-6)


def test_depthwise_left_dense_unless_included():
    from tfcompress.models import mobilenet_small
    sched = prune.ConstantSparsity(0.5, 0)
    pruned = prune.prune_low_magnitude(mobilenet_small(), sched)
    wrapped = {w.layer.name for w in prune.collect_wrappers(pruned)}
    assert "block1_pw" in wrapped and "logits" in wrapped
    assert not any(n.endswith("_dw") for n in wrapped)
    named = prune.prune_low_magnitude(mobilenet_small(), sched,
                                      include=["block1_dw"])
    assert {w.layer.name for w in prune.collect_wrappers(named)} == {
        "block1_dw"}


def test_summary_prints_by_default_and_print_fn_none_is_silent(capsys):
    # as quantize.summary and cluster.summary
    pruned = prune.prune_low_magnitude(
        keras.Sequential([keras.Input((4,)), keras.layers.Dense(2,
                                                                name="fc")]),
        SCHEDULE)
    rows = prune.summary(pruned, print_fn=None)
    assert rows[0]["layer"] == "fc" and capsys.readouterr().out == ""
    prune.summary(pruned)
    assert "fc" in capsys.readouterr().out


def test_tfmot_guide_sequential_with_input_shape_on_a_wrapped_layer():
    # tfmot's guides: Sequential([wrap(Dense(20, input_shape=(20,))), ...])
    import warnings
    from tfcompress import cluster, quantize
    x = np.random.rand(8, 20).astype("float32")

    def dense():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return keras.layers.Dense(20, input_shape=(20,))
    pruned = keras.Sequential([prune.prune_low_magnitude(dense()),
                               keras.layers.Flatten()])
    clustered = keras.Sequential([cluster.cluster_weights(dense(), 3),
                                  keras.layers.Flatten()])
    annotated = keras.Sequential([quantize.quantize_annotate_layer(dense()),
                                  keras.layers.Flatten()])
    for model in (pruned, clustered, annotated):
        assert model.built and model.input_shape == (None, 20)
    pruned.compile("adam", "mse")
    pruned.fit(x, x, epochs=1, verbose=0,
               callbacks=[prune.UpdatePruningStep()])
    assert quantize.has_fake_quant(quantize.quantize_apply(annotated))
    assert len(np.unique(cluster.strip_clustering(clustered)
                         .layers[0].kernel.numpy())) == 3


def test_prunable_layer_with_no_prunable_weights_is_wrapped_and_kept():
    # tfmot's idiom for "supported, nothing to prune"
    class Scale(keras.layers.Layer, prune.PrunableLayer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

        def get_prunable_weights(self):
            return []

    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(8, name="fc"),
                              Scale(name="scale")])
    pruned = prune.prune_low_magnitude(model, prune.ConstantSparsity(0.5, 0))
    pruned.compile("adam", "mse")
    x = np.random.rand(16, 8).astype("float32")
    pruned.fit(x, x, epochs=1, verbose=0,
               callbacks=[prune.UpdatePruningStep()])
    stripped = prune.strip_pruning(pruned)
    assert np.mean(stripped.get_layer("fc").kernel.numpy() == 0) == 0.5
    assert (stripped.get_layer("scale").w.numpy() != 0).all()


@pytest.mark.parametrize("make", [
    lambda: keras.layers.LSTM(8, name="rnn"),
    lambda: keras.layers.GRU(8, name="rnn"),
    lambda: keras.layers.SimpleRNN(8, name="rnn"),
    lambda: keras.layers.Bidirectional(keras.layers.LSTM(8), name="rnn"),
], ids=["LSTM", "GRU", "SimpleRNN", "Bidirectional"])
def test_recurrent_kernels_are_pruned_as_tfmot_does(make):
    keras.utils.set_random_seed(3)
    x = np.random.rand(16, 5, 6).astype("float32")
    model = keras.Sequential([keras.Input((5, 6)), make(),
                              keras.layers.Dense(3)])
    pruned = prune.prune_low_magnitude(model, prune.ConstantSparsity(0.75, 0))
    pruned.compile("adam", "mse")
    pruned.fit(x, np.zeros((16, 3)), epochs=1, batch_size=8, verbose=0,
               callbacks=[prune.UpdatePruningStep()])
    wrapper = pruned.layers[0]
    kernels = prune.get_prunable_weights(wrapper.layer)
    assert len(kernels) == (4 if "Bidirectional" in
                            type(wrapper.layer).__name__ else 2)
    # the forward pass reads the masked kernels: refilling the zeros
    # changes nothing until the masks are applied again
    before = pruned(x)
    for w in kernels:
        w.assign(np.where(w.numpy() == 0, 1.0, w.numpy()))
    np.testing.assert_allclose(pruned(x), before, atol=1e-6)
    stripped = prune.strip_pruning(pruned)
    for w in prune.get_prunable_weights(stripped.get_layer("rnn")):
        assert np.mean(w.numpy() == 0) == 0.75
    np.testing.assert_allclose(stripped(x), before, atol=1e-6)


def _xnnpack_sparse_net(first_padding="valid", pad=True, extra=None):
    L = keras.layers
    i = keras.Input((16, 16, 3))
    x = L.ZeroPadding2D(1)(i) if pad else i
    x = L.Conv2D(8, 3, strides=2, padding=first_padding, name="stem")(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.Conv2D(8, 1, name="project")(y)
    x = L.Add()([x, y])
    if extra is not None:
        x = extra(x)
    x = L.Conv2D(16, 1, name="expand")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    return keras.Model(i, L.Flatten()(L.Conv2D(4, 1, name="head")(x)))


def test_prune_for_latency_on_xnnpack_prunes_1x1_convs_of_a_sparse_net():
    policy = prune.PruneForLatencyOnXNNPack()
    pruned = prune.prune_low_magnitude(_xnnpack_sparse_net(), SCHEDULE,
                                       pruning_policy=policy)
    assert sorted(w.layer.name for w in prune.collect_wrappers(pruned)) == [
        "expand", "head", "project"]
    for model, words in (
            (_xnnpack_sparse_net(first_padding="same", pad=False),
             "Conv2D 3x3 with strides 2"),
            (_xnnpack_sparse_net(extra=keras.layers.MaxPooling2D()),
             "'max_pooling2d.*' .*MaxPooling2D.* not run sparse")):
        with pytest.raises(InputError, match=words):
            prune.prune_low_magnitude(model, SCHEDULE, pruning_policy=policy)
    # keras.applications.MobileNetV2 starts with a 'same' convolution
    mnv2 = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
    with pytest.raises(InputError, match="ZeroPadding2D"):
        prune.prune_low_magnitude(mnv2, SCHEDULE, pruning_policy=policy)


def test_lists_of_layers_and_layer_keywords_as_tfmot():
    from tfcompress import cluster
    dense = [keras.layers.Dense(4), keras.layers.Dense(2)]
    wrapped = prune.prune_low_magnitude(dense, SCHEDULE)
    assert [type(w).__name__ for w in wrapped] == ["PruneLowMagnitude"] * 2
    named = prune.prune_low_magnitude(keras.layers.Dense(4), SCHEDULE,
                                      name="pruned_fc")
    assert named.name == "pruned_fc"
    clustered = cluster.cluster_weights([keras.layers.Dense(4)], 3)
    assert type(clustered[0]).__name__ == "ClusterWeights"
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(InputError, match="single layer"):
        prune.prune_low_magnitude(model, SCHEDULE, name="x")
    with pytest.raises(InputError, match="list of Keras layers"):
        prune.prune_low_magnitude([model], SCHEDULE)


def test_block_pooling_type_max_ranks_blocks_by_their_largest_weight(
        tmp_path):
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(4, name="fc")])
    model.get_layer("fc").kernel.assign(
        np.array([[7, 0, 0, 0], [2, 2, 2, 2]], "float32"))
    masks = {}
    for pooling in ("AVG", "MAX"):
        pruned = prune.prune_low_magnitude(
            model, prune.ConstantSparsity(0.5, 0), block_size=(1, 4),
            block_pooling_type=pooling)
        pruned.compile("sgd", "mse")
        pruned.fit(np.zeros((2, 2)), np.zeros((2, 4)), epochs=1, verbose=0,
                   callbacks=[prune.UpdatePruningStep()])
        masks[pooling] = pruned.layers[0].masks[0].numpy()[:, 0].tolist()
    # row blocks: mean |w| 1.75 < 2, largest |w| 7 > 2
    assert masks == {"AVG": [0.0, 1.0], "MAX": [1.0, 0.0]}
    path = str(tmp_path / "p.keras")
    pruned.save(path)
    assert keras.models.load_model(path).layers[0].block_pooling_type == \
        "MAX"
    with pytest.raises(InputError, match="'AVG' or 'MAX'"):
        prune.prune_low_magnitude(model, block_pooling_type="MIN")


@pytest.mark.parametrize("kwargs,name", [
    (dict(block_size=(0, 4)), "block_size"),          # was a ZeroDivision
    (dict(block_size=(-1, 4)), "block_size"),
    (dict(block_size=(1, 4, 1)), "block_size"),
    (dict(block_size=4), "block_size"),
    (dict(block_size="1x4"), "block_size"),
    (dict(sparsity_m_by_n="2:4"), "sparsity_m_by_n"),
    (dict(sparsity_m_by_n=(2, 4, 1)), "sparsity_m_by_n"),
    (dict(sparsity_m_by_n=2), "sparsity_m_by_n"),
    (dict(global_pruning=True, min_density=2), "min_density"),
    (dict(global_pruning=True, min_density=-0.1), "min_density"),
])
def test_malformed_granularity_options_are_one_line_input_errors(kwargs,
                                                                  name):
    for target in (_sequential(), keras.layers.Dense(3)):
        with pytest.raises(InputError, match=name) as info:
            prune.prune_low_magnitude(target, SCHEDULE, **kwargs)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("structure", [dict(block_size=(1, 4)),
                                       dict(sparsity_m_by_n=(2, 4))])
def test_global_pruning_with_blocks_or_n_of_m_is_refused(structure):
    # global ranking thresholds single weights: the structure was ignored
    with pytest.raises(InputError, match="global_pruning") as info:
        prune.prune_low_magnitude(_sequential(), SCHEDULE,
                                  global_pruning=True, **structure)
    assert "\n" not in str(info.value)


def test_include_and_exclude_take_a_single_name_as_cluster_does():
    model = _sequential()
    only = prune.prune_low_magnitude(model, SCHEDULE, include="fc2")
    assert [w.layer.name for w in prune.collect_wrappers(only)] == ["fc2"]
    rest = prune.prune_low_magnitude(model, SCHEDULE, exclude="fc2")
    assert [w.layer.name for w in prune.collect_wrappers(rest)] == ["fc1"]


def test_pruning_policy_that_is_not_a_policy_object_is_an_input_error():
    model = _sequential()
    with pytest.raises(InputError, match=r"PruneForLatencyOnXNNPack\(\)"):
        prune.prune_low_magnitude(
            model, SCHEDULE, pruning_policy=prune.PruneForLatencyOnXNNPack)
    with pytest.raises(InputError, match="pruning_policy must be"):
        prune.prune_low_magnitude(model, SCHEDULE, pruning_policy="xnnpack")


def test_two_of_four_groups_multi_head_attention_kernels_by_input_features():
    # query/key/value kernels are (d_model, heads, key_dim): the groups run
    # along d_model (they ran along the heads); the output kernel is
    # (heads, key_dim, d_model) and sums over heads * key_dim
    inputs = keras.Input((3, 16))
    x = keras.layers.MultiHeadAttention(4, 8, name="mha")(inputs, inputs)
    pruned = prune.prune_low_magnitude(
        keras.Model(inputs, x), prune.ConstantSparsity(0.5, 0),
        sparsity_m_by_n=(2, 4))
    (mha,) = prune.collect_wrappers(pruned)
    mha.update_masks(0.5)
    masks = [m.numpy() for m in mha.masks]
    for mask in masks[:3]:                                 # (16, 4, 8)
        groups = mask.reshape(4, 4, 4 * 8)                 # along d_model
        assert (groups.sum(axis=1) == 2).all()
    flat = masks[3].reshape(4 * 8, 16)                     # (heads*key, out)
    assert (flat.reshape(8, 4, 16).sum(axis=1) == 2).all()


def test_a_nested_model_named_in_exclude_or_include_stands_for_its_layers():
    # the transfer-learning case: keep a frozen base dense by its name
    model = _nested()
    kept = prune.prune_low_magnitude(model, SCHEDULE, exclude=["inner"])
    assert [w.layer.name for w in prune.collect_wrappers(kept)] == ["head"]
    only = prune.prune_low_magnitude(model, SCHEDULE, include="inner")
    assert [w.layer.name for w in prune.collect_wrappers(only)] == \
        ["inner_fc"]


def test_custom_schedule_registered_in_a_package_loads_back(tmp_path):
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="prune_api_tests")
    class EveryOther(prune.PruningSchedule):
        def __init__(self, sparsity=0.5):
            self.sparsity = sparsity

        def __call__(self, step):
            return (self._should_prune_in_step(step, 0, -1, 2),
                    tf.constant(self.sparsity, tf.float32))

        def get_config(self):
            return {"sparsity": self.sparsity}

    pruned = prune.prune_low_magnitude(_sequential(), EveryOther(0.25))
    pruned.save(tmp_path / "custom.keras")
    loaded = keras.models.load_model(tmp_path / "custom.keras")
    schedule = prune.collect_wrappers(loaded)[0].pruning_schedule
    assert type(schedule).__name__ == "EveryOther"
    assert schedule.sparsity == 0.25


@pytest.mark.parametrize("returned", ["array", "variable"])
def test_prunable_layer_returning_other_than_a_list_of_variables(returned):
    class Custom(keras.layers.Dense):
        def get_prunable_weights(self):
            # a bare variable was iterated row by row (a StridedSlice error
            # in fit); an array failed on '.name'
            return (self.kernel if returned == "variable"
                    else [self.kernel.numpy()])

    model = keras.Sequential([keras.Input((4,)), Custom(3, name="custom")])
    with pytest.raises(InputError, match=r"'custom'.*get_prunable_weights"
                       r"\(\) must return a list") as info:
        prune.prune_low_magnitude(model, SCHEDULE)
    assert "\n" not in str(info.value)


def test_a_file_saved_with_global_pruning_and_blocks_loads_as_it_pruned():
    # global pruning once ignored block_size and sparsity_m_by_n silently;
    # such files load with the single-weight ranking they were pruned with
    wrapper = prune.PruneLowMagnitude(keras.layers.Dense(4),
                                      global_pruning=True)
    for extra in ({"block_size": [1, 4]}, {"sparsity_m_by_n": [2, 4]}):
        config = dict(wrapper.get_config(), **extra)
        loaded = prune.PruneLowMagnitude.from_config(config)
        assert loaded.global_pruning
        assert (loaded.block_size, loaded.sparsity_m_by_n) == ((1, 1), None)


@pytest.mark.parametrize("transform", ["prune", "quantize", "cluster"])
def test_a_two_output_model_keeps_its_output_names(transform):
    # a main and an auxiliary head compiled with losses keyed by output
    # name: the wrapped model takes the same compile call and history keys
    from tfcompress import cluster, quantize
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="fc")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3, name="main")(h),
                                 keras.layers.Dense(2, name="aux")(h)])
    wrapped = {"prune": lambda m: prune.prune_low_magnitude(m),
               "quantize": quantize.quantize_model,
               "cluster": lambda m: cluster.cluster_weights(m, 4)}[
        transform](model)
    assert wrapped.output_names == ["main", "aux"]
    wrapped.compile("adam", loss={"main": "mse", "aux": "mse"},
                    loss_weights={"main": 1.0, "aux": 0.3})
    x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
    history = wrapped.fit(
        x, {"main": np.zeros((16, 3)), "aux": np.zeros((16, 2))},
        epochs=1, verbose=0, callbacks=[prune.UpdatePruningStep()]
        if transform == "prune" else [])
    assert {"main_loss", "aux_loss"} <= set(history.history)


def test_pruned_and_stripped_model_keeps_the_input_layer_name():
    """Keras' clone_model names a clone's input after the tensor
    (keras_tensor_N for an unnamed keras.Input): pruning and stripping
    keep the user's input layer, so the flatbuffer's signature feeds the
    same name as the unpruned model's and the QAT model's."""
    import keras
    from tfcompress import prune, quantize
    from tfcompress.convert.inputs import signature_input_names
    i = keras.Input((4,))
    model = keras.Model(i, keras.layers.Dense(2)(i))
    layer_name = model.layers[0].name
    pruned = prune.prune_low_magnitude(model, prune.ConstantSparsity(0.5, 0))
    stripped = prune.strip_pruning(pruned)
    for m in (pruned, stripped, quantize.quantize_model(stripped)):
        assert m.layers[0].name == layer_name
        assert signature_input_names(m) == [layer_name]
