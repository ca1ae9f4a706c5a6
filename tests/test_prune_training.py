import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import prune
from tfcompress.models import compile_classifier


def _data(n=128, shape=(16,), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype("float32")
    y = rng.integers(0, 4, n).astype("int32")
    return x, y


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((16,)),
                             keras.layers.Dense(32, activation="relu",
                                                name="d1"),
                             keras.layers.Dense(4, name="d2")])


def _compile(m):
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


def _fit(m, x, y, epochs=1, **kw):
    return m.fit(x, y, batch_size=16, epochs=epochs, verbose=0, shuffle=False,
                 callbacks=[prune.UpdatePruningStep()], **kw)


def test_polynomial_decay_reaches_target_within_1pct():
    x, y = _data()
    p = _compile(prune.prune_low_magnitude(
        _mlp(), prune.PolynomialDecay(0.0, 0.8, 0, 12, frequency=4)))
    _fit(p, x, y, epochs=2)   # 16 steps
    for row in prune.summary(p, print_fn=lambda s: None):
        assert row["status"] == "pruned"
        assert abs(row["sparsity"] - 0.8) <= 0.01, row
    # Masked weights stay zero after further optimizer steps.
    w = p.layers[0]
    before = np.asarray(w.masks[0])
    _fit(p, x, y)
    kernel = np.asarray(w.pruned_weights[0])
    assert np.all(kernel[before == 0] == 0)


def test_two_of_four_exact_in_every_group():
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((8, 8, 4)),
                          keras.layers.Conv2D(8, 3, name="c"),
                          keras.layers.Flatten(),
                          keras.layers.Dense(4, name="d")])
    p = _compile(prune.prune_low_magnitude(
        m, prune.ConstantSparsity(0.5, 0, frequency=2),
        sparsity_m_by_n=(2, 4)))
    x = np.random.default_rng(0).normal(size=(32, 8, 8, 4)).astype("float32")
    y = np.zeros(32, "int32")
    _fit(p, x, y)
    conv = np.asarray(prune.strip_pruning(p).get_layer("c").kernel)
    groups = np.moveaxis(conv, 2, -1).reshape(-1, 4)   # input channels
    assert np.all((groups == 0).sum(axis=1) == 2)
    dense = np.asarray(prune.strip_pruning(p).get_layer("d").kernel)
    groups = dense.T.reshape(-1, 4)
    assert np.all((groups == 0).sum(axis=1) == 2)


def test_n_of_m_rejects_bad_axis_length():
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="multiple of 4"):
        prune.prune_low_magnitude(m, sparsity_m_by_n=(2, 4))


def test_block_sparsity_prunes_whole_blocks():
    x, y = _data()
    p = _compile(prune.prune_low_magnitude(
        _mlp(), prune.ConstantSparsity(0.5, 0, frequency=3),
        block_size=(1, 4)))
    _fit(p, x, y)
    k = np.asarray(p.layers[0].pruned_weights[0])     # (16, 32)
    blocks = (k.reshape(16, 8, 4) == 0).sum(axis=2)
    assert set(np.unique(blocks)) <= {0, 4}
    assert abs((k == 0).mean() - 0.5) < 0.02


def test_global_pruning_one_threshold_and_min_density():
    keras.utils.set_random_seed(2)
    m = _mlp()
    m.layers[1].kernel.assign(m.layers[1].kernel * 0.01)   # tiny layer
    p = _compile(prune.prune_low_magnitude(
        m, prune.ConstantSparsity(0.9, 0, frequency=100),
        global_pruning=True, min_density=0.1))
    x, y = _data()
    cb = prune.UpdatePruningStep()
    cb.set_model(p)
    cb.on_train_begin()
    cb.on_train_batch_begin(0)
    k1 = np.asarray(p.layers[0].pruned_weights[0])
    k2 = np.asarray(p.layers[1].pruned_weights[0])
    # One threshold over 640 weights keeps the 64 largest, all in the big
    # layer; the 100x smaller layer keeps only its 10% floor (13 of 128).
    assert np.sum(k1 != 0) == 64
    assert np.sum(k2 != 0) == 13
    kept2 = np.abs(np.asarray(m.layers[1].kernel))
    assert set(np.flatnonzero(k2)) == set(np.argsort(kept2.ravel())[-13:])


def test_nested_functional_model_prunes_and_strips():
    keras.utils.set_random_seed(3)
    inner_in = keras.Input((16,))
    inner = keras.Model(inner_in, keras.layers.Dense(16, name="inner_d")(
        inner_in), name="inner")
    i = keras.Input((16,))
    h = keras.layers.Dense(16, activation="relu", name="outer_d")(i)
    h = keras.layers.Add()([h, inner(h)])
    o = keras.layers.Dense(4, name="head")(h)
    model = keras.Model(i, o)
    p = _compile(prune.prune_low_magnitude(
        model, prune.ConstantSparsity(0.75, 0, frequency=1)))
    pruned_names = [r["layer"] for r in prune.summary(p, print_fn=str)
                    if r["status"] == "pruned"]
    assert sorted(pruned_names) == ["head", "inner_d", "outer_d"]
    x, y = _data()
    _fit(p, x, y)
    s = prune.strip_pruning(p)
    assert not prune.is_pruned(s)
    np.testing.assert_allclose(s(x[:8]), p(x[:8]), atol=1e-6)
    assert abs((np.asarray(s.get_layer("inner").get_layer("inner_d").kernel)
                == 0).mean() - 0.75) < 0.01


def test_keras_save_load_round_trips_masks_and_step(tmp_path):
    x, y = _data()
    p = _compile(prune.prune_low_magnitude(
        _mlp(), prune.PolynomialDecay(0.0, 0.6, 0, 20, frequency=2)))
    _fit(p, x, y)
    path = tmp_path / "p.keras"
    p.save(path)
    q = keras.models.load_model(path)
    assert q.layers[0].step == p.layers[0].step == 8
    np.testing.assert_array_equal(q.layers[0].masks[0], p.layers[0].masks[0])
    assert q.layers[0].pruning_schedule.get_config() == \
        p.layers[0].pruning_schedule.get_config()
    np.testing.assert_allclose(q(x), p(x), atol=1e-6)


def test_resumed_run_equals_uninterrupted(tmp_path):
    x, y = _data()
    sched = prune.PolynomialDecay(0.0, 0.8, 0, 30, frequency=3)

    def make():
        return _compile(prune.prune_low_magnitude(_mlp(seed=5), sched))

    full = make()
    _fit(full, x, y, epochs=4)
    part = make()
    _fit(part, x, y, epochs=2)
    part.save(tmp_path / "ckpt.keras")
    resumed = keras.models.load_model(tmp_path / "ckpt.keras")
    _fit(resumed, x, y, epochs=2)
    for a, b in zip(full.layers, resumed.layers):
        assert a.step == b.step == 32
        for ma, mb in zip(a.masks, b.masks):
            np.testing.assert_array_equal(ma, mb)


def test_missing_callback_is_a_clear_error():
    x, y = _data()
    p = _compile(prune.prune_low_magnitude(_mlp()))
    with pytest.raises(Exception, match="UpdatePruningStep"):
        p.fit(x, y, epochs=1, verbose=0)


def test_custom_training_loop_with_gradient_tape():
    x, y = _data()
    p = prune.prune_low_magnitude(
        _mlp(), prune.PolynomialDecay(0.0, 0.5, 0, 6, frequency=2))
    opt = keras.optimizers.SGD(0.1)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, p(xb, training=True))
        grads = tape.gradient(loss, p.trainable_variables)
        opt.apply_gradients(zip(grads, p.trainable_variables))
        return loss

    step = prune.UpdatePruningStep()
    step.set_model(p)
    step.on_train_begin()
    for i in range(8):
        step.on_train_batch_begin(i)
        train_step(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16])
        step.on_train_batch_end(i)
    for row in prune.summary(p, print_fn=str):
        assert abs(row["sparsity"] - 0.5) < 0.02


class _Scale(keras.layers.Layer):
    """A subclassed layer opting in through the PrunableLayer protocol."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1], 8), name="w")

    def call(self, x):
        return x @ self.w

    def get_prunable_weights(self):
        return [self.w]


def test_prunable_layer_protocol_and_unsupported_layers():
    m = keras.Sequential([keras.Input((16,)), _Scale(name="custom"),
                          keras.layers.LayerNormalization(name="ln"),
                          keras.layers.Dense(4, name="d")])
    p = prune.prune_low_magnitude(m, prune.ConstantSparsity(0.5, 0))
    rows = {r["layer"]: r["status"] for r in prune.summary(p, print_fn=str)}
    assert rows == {"custom": "pruned", "ln": "dense (unsupported)",
                    "d": "pruned"}
    with pytest.raises(ValueError, match="PrunableLayer"):
        prune.prune_low_magnitude(m, include=["ln"])
    with pytest.raises(ValueError, match="PrunableLayer"):
        prune.prune_low_magnitude(keras.layers.LayerNormalization())


def test_include_and_exclude():
    m = _mlp()
    p = prune.prune_low_magnitude(m, exclude=["d2"])
    assert [type(l).__name__ for l in p.layers] == ["PruneLowMagnitude",
                                                   "Dense"]
    p = prune.prune_low_magnitude(m, include=["d2"])
    assert [type(l).__name__ for l in p.layers] == ["Dense",
                                                   "PruneLowMagnitude"]


def test_mixed_float16_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = _data()
        p = _compile(prune.prune_low_magnitude(
            _mlp(), prune.ConstantSparsity(0.7, 0, frequency=2)))
        _fit(p, x, y)
        for row in prune.summary(p, print_fn=str):
            assert abs(row["sparsity"] - 0.7) < 0.01
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_pruning_summaries_write_events(tmp_path):
    x, y = _data()
    p = _compile(prune.prune_low_magnitude(_mlp()))
    p.fit(x, y, batch_size=16, epochs=1, verbose=0,
          callbacks=[prune.UpdatePruningStep(),
                     prune.PruningSummaries(str(tmp_path), update_freq=2)])
    files = os.listdir(tmp_path)
    assert any(f.startswith("events.out.tfevents") for f in files)


def test_original_model_untouched():
    m = _mlp()
    before = [w.copy() for w in m.get_weights()]
    x, y = _data()
    p = _compile(prune.prune_low_magnitude(m, prune.ConstantSparsity(0.9, 0)))
    _fit(p, x, y)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
