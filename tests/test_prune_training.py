"""Training with pruning: schedules driving masks, gradients, loops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import prune


def _data(n=64, shape=(8, 8, 4), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n,) + shape, dtype=np.float32),
            rng.integers(0, classes, n).astype("int32"))


def _small_cnn():
    return keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="logits"),
    ])


def _fit(model, epochs=4, batch_size=8, **kwargs):
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _data()
    return model.fit(x, y, batch_size=batch_size, epochs=epochs,
                     shuffle=False, verbose=0,
                     callbacks=[prune.UpdatePruningStep()], **kwargs)


def _sgd_step(model, learning_rate):
    """A custom tf.function training step (SGD, logits loss) for
    ``model``, as users write with GradientTape."""
    optimizer = keras.optimizers.SGD(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
    return step


def _kernel_sparsity(model):
    return {w.layer.name: w.sparsity()[0]
            for w in prune.collect_wrappers(model)}


def test_polynomial_decay_reaches_target_within_one_percent():
    keras.utils.set_random_seed(0)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.PolynomialDecay(0.0, 0.8, 0, 24, frequency=4))
    _fit(model)
    for name, sparsity in _kernel_sparsity(model).items():
        assert abs(sparsity - 0.8) <= 0.01, (name, sparsity)
    # masks and weights agree: every zero of the mask is a zero weight
    for w in prune.collect_wrappers(model):
        mask = w.masks[0].numpy()
        assert (w.pruned_weights[0].numpy()[mask == 0] == 0).all()
        assert w.step == 32


def test_masks_follow_the_schedule_step_by_step_in_tf_function():
    layer = keras.layers.Dense(10)
    layer.build((None, 20))
    schedule = prune.PolynomialDecay(0.0, 0.8, begin_step=2, end_step=10,
                                     frequency=2)
    wrapper = prune.PruneLowMagnitude(layer, schedule)
    x = tf.ones((3, 20))

    @tf.function
    def train_call():
        return wrapper(x, training=True)

    for step in range(14):
        wrapper.pruning_step.assign(step)
        train_call()
        last_update = min(max(step - (step - 2) % 2, 2), 10) \
            if step >= 2 else None
        expected = (0.0 if last_update is None else
                    float(schedule(last_update)[1]))
        kept = int(prune.masks.keep_count(200, expected))
        assert int(wrapper.masks[0].numpy().sum()) == kept, step


def test_gradients_reach_only_unmasked_entries():
    layer = keras.layers.Dense(6)
    layer.build((None, 12))
    wrapper = prune.PruneLowMagnitude(
        layer, prune.ConstantSparsity(0.5, 0, frequency=1))
    wrapper.pruning_step.assign(0)
    x = tf.random.normal((4, 12), seed=1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapper(x, training=True) ** 2)
    grad = tape.gradient(loss, layer.kernel.value)
    mask = wrapper.masks[0].numpy()
    assert mask.mean() == 0.5
    assert (grad.numpy()[mask == 0] == 0).all()
    assert (grad.numpy()[mask == 1] != 0).any()


def test_custom_training_loop_with_gradient_tape():
    keras.utils.set_random_seed(1)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.PolynomialDecay(0.2, 0.7, 0, 6, frequency=2))
    x, y = _data(32)
    train_step = _sgd_step(model, 0.05)
    step_callback = prune.UpdatePruningStep()
    step_callback.set_model(model)
    step_callback.on_train_begin()
    for epoch in range(2):
        for i in range(0, 32, 8):
            step_callback.on_train_batch_begin(i)
            train_step(x[i:i + 8], y[i:i + 8])
            step_callback.on_train_batch_end(i)
        step_callback.on_epoch_end(epoch)
    step_callback.on_train_end()
    for name, sparsity in _kernel_sparsity(model).items():
        assert abs(sparsity - 0.7) <= 0.01, (name, sparsity)


def test_training_without_the_callback_says_what_to_add():
    model = prune.prune_low_magnitude(_small_cnn())
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _data(8)
    with pytest.raises(Exception, match="UpdatePruningStep"):
        model.fit(x, y, epochs=1, verbose=0)


def test_callback_on_a_model_without_wrappers_is_an_error():
    model = _small_cnn()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="prune_low_magnitude"):
        model.fit(*_data(8), verbose=0,
                  callbacks=[prune.UpdatePruningStep()])


def test_two_of_four_with_polynomial_decay_is_exact():
    keras.utils.set_random_seed(2)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.PolynomialDecay(0.0, 0.8, 0, 24, frequency=4),
        sparsity_m_by_n=(2, 4))
    _fit(model)
    for w in prune.collect_wrappers(model):
        kernel = w.pruned_weights[0].numpy()
        axis = kernel.ndim - 2 if kernel.ndim > 2 else 0
        groups = np.moveaxis(kernel, axis, -1).reshape(-1, 4)
        assert ((groups == 0).sum(axis=-1) == 2).all(), w.name


def test_two_of_four_ramps_with_the_schedule():
    layer = keras.layers.Dense(8)
    layer.build((None, 16))
    wrapper = prune.PruneLowMagnitude(
        layer, prune.PolynomialDecay(0.0, 0.5, 0, 10, power=1, frequency=5),
        sparsity_m_by_n=(2, 4))
    seen = []
    for step in (0, 5, 10):
        wrapper.pruning_step.assign(step)
        wrapper(tf.ones((1, 16)), training=True)
        seen.append(wrapper.sparsity()[0])
    assert seen == [0.0, 0.25, 0.5]


def test_block_sparsity_training():
    keras.utils.set_random_seed(3)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.PolynomialDecay(0.0, 0.75, 0, 24, frequency=4),
        block_size=(1, 4))
    _fit(model)
    for w in prune.collect_wrappers(model):
        mask = w.masks[0].numpy()
        rows = mask.reshape(-1, mask.shape[-1])
        tiles = rows.reshape(rows.shape[0], -1, 4)
        assert (tiles.min(-1) == tiles.max(-1)).all(), w.name
        assert abs(w.sparsity()[0] - 0.75) <= 0.01, w.name


def test_global_pruning_shares_a_threshold_and_keeps_min_density():
    keras.utils.set_random_seed(4)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.PolynomialDecay(0.0, 0.9, 0, 16, frequency=4),
        global_pruning=True, min_density=0.05)
    _fit(model, epochs=3)
    wrappers = prune.collect_wrappers(model)
    kernels = [w.pruned_weights[0].numpy() for w in wrappers]
    total = sum(k.size for k in kernels)
    zeros = sum((k == 0).sum() for k in kernels)
    assert abs(zeros / total - 0.9) <= 0.01
    for w, k in zip(wrappers, kernels):
        assert (k != 0).mean() >= 0.05 - 1e-9, w.name
    thresholds = {w.thresholds["kernel"] for w in wrappers}
    assert len(thresholds) == 1
    # per-layer sparsities differ: the ranking is global, not per layer
    assert len({round(w.sparsity()[0], 3) for w in wrappers}) > 1


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_float16_training(mixed_float16):
    keras.utils.set_random_seed(5)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.PolynomialDecay(0.0, 0.8, 0, 24, frequency=4))
    history = _fit(model)
    assert np.isfinite(history.history["loss"]).all()
    for w in prune.collect_wrappers(model):
        assert w.pruned_weights[0].dtype == "float32"
        assert w.masks[0].dtype == "float32"
        assert abs(w.sparsity()[0] - 0.8) <= 0.01, w.name
    assert model(_data(2)[0]).dtype == "float16"


def _fit_logging_pruning(log_dir, samples, epochs, frequency):
    """A small CNN pruned to 50% fitted ``epochs`` epochs of ``samples``
    images, batches of 8, with PruningSummaries(update_freq=2)."""
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.ConstantSparsity(0.5, 0, frequency=frequency))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _data(samples)
    model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=[
        prune.UpdatePruningStep(),
        prune.PruningSummaries(str(log_dir), update_freq=2)])


def test_pruning_summaries_write_sparsity_and_thresholds(tmp_path):
    keras.utils.set_random_seed(6)
    _fit_logging_pruning(tmp_path, 32, 1, frequency=2)
    values = _scalars(tmp_path / "pruning")
    assert values["prune_low_magnitude_fc/kernel/sparsity"] == 0.5
    assert values["prune_low_magnitude_fc/target_sparsity"] == 0.5
    assert values["prune_low_magnitude_conv/kernel/threshold"] > 0


def test_steps_per_execution_above_one_is_refused_clearly():
    model = prune.prune_low_magnitude(_small_cnn())
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), steps_per_execution=4)
    with pytest.raises(ValueError, match="steps_per_execution=1"):
        model.fit(*_data(16), verbose=0,
                  callbacks=[prune.UpdatePruningStep()])


def _training_graph_ops(model):
    """Op types of ``model(x, training=True)`` traced, nested functions
    (``tf.cond`` branches) included."""
    call = tf.function(lambda x: model(x, training=True))
    graph = call.get_concrete_function(
        tf.TensorSpec((None, 8, 8, 4), tf.float32)).graph.as_graph_def()
    ops = [n.op for n in graph.node]
    for function in graph.library.function:
        ops += [n.op for n in function.node_def]
    return ops


def test_callback_keeps_mask_updates_out_of_the_training_graph():
    dense = _small_cnn()
    model = prune.prune_low_magnitude(
        dense, prune.PolynomialDecay(0.0, 0.8, 0, 24, frequency=4))
    wrappers = prune.collect_wrappers(model)
    for w in wrappers:
        w.pruning_step.assign(0)
    in_call = _training_graph_ops(model)
    assert in_call.count("If") == len(wrappers)  # tfmot's in-call update

    callback = prune.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    driven = _training_graph_ops(model)
    # only the masked forward pass: read each mask, multiply the weight
    extra = len(driven) - len(_training_graph_ops(dense))
    assert extra <= 3 * len(wrappers), (extra, len(wrappers))
    for op in ("If", "StatelessIf", "TopKV2", "Assert", "AssignVariableOp"):
        assert op not in driven, op

    callback.on_train_end()
    assert _training_graph_ops(model).count("If") == len(wrappers)


def test_callback_updates_masks_as_the_in_call_update_does():
    dense = _small_cnn()
    x, y = _data(48)
    models = []
    for _ in range(2):
        copy = keras.models.clone_model(dense)
        copy.set_weights(dense.get_weights())
        models.append(prune.prune_low_magnitude(
            copy, prune.PolynomialDecay(0.2, 0.7, 0, 9, frequency=3)))

    by_callback, in_call = models
    callback = prune.UpdatePruningStep()
    callback.set_model(by_callback)
    callback.on_train_begin()
    steps = [_sgd_step(m, 0.1) for m in models]
    for i in range(12):
        xb, yb = x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]
        callback.on_train_batch_begin(i)
        steps[0](xb, yb)
        callback.on_train_batch_end(i)
        for w in prune.collect_wrappers(in_call):
            w.pruning_step.assign(i)
        steps[1](xb, yb)
    callback.on_train_end()
    for a, b in zip(prune.collect_wrappers(by_callback),
                    prune.collect_wrappers(in_call)):
        b.apply_masks()
        np.testing.assert_array_equal(a.masks[0].numpy(), b.masks[0].numpy())
        np.testing.assert_allclose(a.pruned_weights[0].numpy(),
                                   b.pruned_weights[0].numpy(), atol=1e-6)
        assert a.thresholds == pytest.approx(b.thresholds)
        assert abs(a.sparsity()[0] - 0.7) <= 0.01, a.name


def _events(folder):
    """``(step, value)`` of every scalar TensorBoard event in ``folder``."""
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            yield from ((event.step, v) for v in event.summary.value)


def _scalars(folder):
    """The last value of each scalar TensorBoard event in ``folder``."""
    return {v.tag: float(tf.make_ndarray(v.tensor))
            for _, v in _events(folder)}


def _steps(folder, tag):
    """The steps at which scalar ``tag`` was written in ``folder``."""
    return [step for step, v in _events(folder) if v.tag == tag]


def test_pruning_summaries_write_each_step_once(tmp_path):
    """An epoch's end and the next epoch's start are the same step, and
    so is a batch-frequency write at an epoch's last batch: one point."""
    keras.utils.set_random_seed(9)
    _fit_logging_pruning(tmp_path, 16, 3, frequency=1)
    steps = _steps(tmp_path / "pruning",
                   "prune_low_magnitude_fc/kernel/sparsity")
    assert steps == sorted(set(steps)), steps
    assert steps[0] == 0 and steps[-1] == 6


def test_tfmot_guide_custom_loop_prunes_and_logs(tmp_path):
    # tfmot's custom training loop: on_train_batch_begin only, no
    # on_train_batch_end, on_epoch_end(batch=-1), summaries written at
    # on_epoch_begin
    keras.utils.set_random_seed(7)
    schedule = prune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=4,
                                     frequency=1)
    model = prune.prune_low_magnitude(keras.Sequential([
        keras.Input((20,)), keras.layers.Dense(20, name="fc")]), schedule)
    optimizer = keras.optimizers.Adam()
    x, y = np.random.rand(4, 20).astype("float32"), np.eye(20)[:4]
    step_callback = prune.UpdatePruningStep()
    step_callback.set_model(model)
    log_callback = prune.PruningSummaries(log_dir=str(tmp_path))
    log_callback.set_model(model)
    step_callback.on_train_begin()
    for _ in range(6):
        log_callback.on_epoch_begin(epoch=-1)
        step_callback.on_train_batch_begin(batch=-1)
        with tf.GradientTape() as tape:
            loss = keras.losses.categorical_crossentropy(
                y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        step_callback.on_epoch_end(batch=-1)
    wrapper = model.layers[0]
    assert wrapper.step == 6
    assert wrapper.sparsity() == [0.8]
    assert np.mean(wrapper.layer.kernel.numpy() == 0) == 0.8
    values = _scalars(tmp_path / "pruning")
    assert values["prune_low_magnitude_fc/kernel/sparsity"] == \
        pytest.approx(0.8)


def test_batch_begin_and_end_count_each_step_once():
    model = prune.prune_low_magnitude(keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(2)]),
        prune.ConstantSparsity(0.5, 0))
    cb = prune.UpdatePruningStep()
    cb.set_model(model)
    cb.on_train_begin()
    for batch in range(3):
        cb.on_train_batch_begin(batch)
        cb.on_train_batch_end(batch)
    cb.on_epoch_end(0)
    assert model.layers[0].step == 3


def test_pruning_summaries_take_tfmot_arguments(tmp_path):
    keras.utils.set_random_seed(8)
    model = prune.prune_low_magnitude(
        _small_cnn(), prune.ConstantSparsity(0.5, 0, frequency=1))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    x, y = _data(16)
    summaries = prune.PruningSummaries(str(tmp_path), profile_batch=0,
                                       write_graph=False)
    assert summaries.update_freq == "epoch"    # tfmot's default
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        prune.UpdatePruningStep(), summaries])
    # Keras's own TensorBoard logs, as from tfmot's subclass
    assert "epoch_loss" in _scalars(tmp_path / "train")
    assert _scalars(tmp_path / "pruning")[
        "prune_low_magnitude_fc/kernel/sparsity"] == 0.5
    with pytest.raises(ValueError, match="update_freq"):
        prune.PruningSummaries(str(tmp_path), update_freq="often")


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, after):
        super().__init__()
        self.after, self.batches = after, 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == self.after:
            raise RuntimeError("interrupted")


@pytest.mark.parametrize("restore_first", [False, True])
def test_backup_and_restore_resumes_the_pruning_schedule(tmp_path,
                                                         restore_first):
    # BackupAndRestore loads the weights (pruning step included) in its
    # on_train_begin, before or after UpdatePruningStep's
    def build():
        keras.utils.set_random_seed(0)
        model = prune.prune_low_magnitude(_small_cnn(), prune.PolynomialDecay(
            0.0, 0.8, begin_step=0, end_step=20, frequency=1))
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        return model

    def callbacks():
        cbs = [prune.UpdatePruningStep(),
               keras.callbacks.BackupAndRestore(str(tmp_path))]
        return cbs[::-1] if restore_first else cbs
    x, y = _data(64)
    with pytest.raises(RuntimeError, match="interrupted"):
        build().fit(x, y, batch_size=16, epochs=5, verbose=0,
                    callbacks=callbacks() + [_Interrupt(13)])
    resumed = build()   # a new process would start from a fresh model
    resumed.fit(x, y, batch_size=16, epochs=5, verbose=0,
                callbacks=callbacks())
    (wrapper, *_) = prune.collect_wrappers(resumed)
    # backup after epoch 2 (8 steps), then epochs 3-5: 12 more
    assert wrapper.step == 20
    assert wrapper.sparsity()[0] == pytest.approx(0.8, abs=0.01)


def test_global_pruning_follows_a_custom_schedule():
    class AtStepFive(prune.PruningSchedule):
        """Prunes once, at step 5 (begin_step etc. left at the defaults)."""

        def __call__(self, step):
            step = tf.cast(step, tf.int64)
            return tf.equal(step, 5), tf.constant(0.6, tf.float32)

        def get_config(self):
            return {}

    keras.utils.set_random_seed(6)
    model = prune.prune_low_magnitude(_small_cnn(), AtStepFive(),
                                      global_pruning=True)
    _fit(model, epochs=1, batch_size=16)   # steps 0..3: not yet
    assert all(w.sparsity()[0] == 0.0
               for w in prune.collect_wrappers(model))
    _fit(model, epochs=1, batch_size=16)   # steps 4..7: step 5 prunes
    wrappers = prune.collect_wrappers(model)
    total = sum(w.pruned_weights[0].numpy().size for w in wrappers)
    zeros = sum(w.sparsity()[0] * w.pruned_weights[0].numpy().size
                for w in wrappers)
    assert abs(zeros / total - 0.6) <= 0.01
