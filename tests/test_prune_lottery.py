import keras
import numpy as np
import pytest

from tfcompress.prune.lottery import find_winning_ticket, next_masks


def _mlp(seed, width, classes):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((12,)),
                          keras.layers.Dense(width, activation="relu"),
                          keras.layers.Dense(classes)])
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    return m


def test_next_masks_layer_and_global():
    rng = np.random.default_rng(0)
    ks = [rng.normal(size=(20, 10)), rng.normal(size=(10, 4))]
    ms = [np.ones_like(k) for k in ks]
    new = next_masks(ks, ms, 0.2, "layer", 0.5)
    assert new[0].sum() == 160 and new[1].sum() == 36     # 20%, 10%
    again = next_masks(ks, new, 0.2, "layer", 0.5)
    assert again[0].sum() == 128                          # 20% of remaining
    assert np.all(again[0] <= new[0])                     # never regrows
    g = next_masks([ks[0] * 10, ks[0], ks[1]],
                   [np.ones((20, 10))] * 2 + [np.ones((10, 4))], 0.5,
                   "global")
    assert g[0].sum() > g[1].sum()         # big weights survive globally
    with pytest.raises(ValueError, match="scope"):
        next_masks(ks, ms, 0.2, "nope")


def test_find_winning_ticket_rounds_and_rewind():
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3, size=(4, 12))
    y = rng.integers(0, 4, 400)
    x = (centers[y] + rng.normal(size=(400, 12))).astype("float32")

    def model_fn(seed):
        return _mlp(seed, 32, 4)

    seen = []

    def train_fn(model, callbacks):
        model.fit(x, y, epochs=2, batch_size=32, verbose=0,
                  callbacks=callbacks)
        k = np.asarray(model.layers[0].kernel)
        seen.append(float((k == 0).mean()))
        return {"accuracy": float(model.evaluate(x, y, verbose=0)[1])}

    rows = find_winning_ticket(model_fn, train_fn, rounds=2,
                               prune_fraction_per_round=0.5, rewind_step=3)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["remaining"] < 1 and rows[2]["remaining"] < \
        rows[1]["remaining"]
    # hidden layer: 50% then 75% zeros, kept zero through training
    assert seen[1] == pytest.approx(0.5, abs=0.01)
    assert seen[3] == pytest.approx(0.75, abs=0.01)
    assert all(r["accuracy"] > 0.5 for r in rows)
    assert rows[1]["control_accuracy"] is not None


def test_rewind_step_past_the_dense_run_is_an_input_error():
    from tfcompress.errors import InputError
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.arange(64) % 2

    def model_fn(seed):
        keras.utils.set_random_seed(seed)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        m.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), metrics=["accuracy"])
        return m

    def train_fn(model, callbacks):      # 2 batches
        model.fit(x, y, batch_size=32, verbose=0, callbacks=callbacks)
        return {"accuracy": 0.5}

    # late rewinding to batch 100 of a 2-batch run used to rewind to the
    # initial weights without a word
    with pytest.raises(InputError, match="rewind_step=100.*2 batches"):
        find_winning_ticket(model_fn, train_fn, rounds=1, rewind_step=100,
                            random_control=False)
    with pytest.raises(InputError, match="rewind_step must be"):
        find_winning_ticket(model_fn, train_fn, rounds=1, rewind_step=-1)
    rows = find_winning_ticket(model_fn, train_fn, rounds=1, rewind_step=2,
                               random_control=False)
    assert len(rows) == 2


def test_bad_scope_fails_before_the_dense_run():
    from tfcompress.errors import InputError
    trained = []

    def model_fn(seed):
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        m.compile("sgd", "mse")
        return m

    def train_fn(model, callbacks):
        trained.append(model)
        return {"accuracy": 0.5}

    with pytest.raises(InputError, match="scope must be"):
        find_winning_ticket(model_fn, train_fn, scope="globl")
    with pytest.raises(InputError, match="output_rate"):
        find_winning_ticket(model_fn, train_fn, output_rate=2.0)
    assert trained == []        # nothing trained for nothing


def test_recurrent_kernels_are_pruned_too():
    x = np.random.default_rng(0).normal(size=(32, 4, 3)).astype("float32")
    y = np.arange(32) % 2

    def model_fn(seed):
        keras.utils.set_random_seed(seed)
        m = keras.Sequential([keras.Input((4, 3)),
                              keras.layers.SimpleRNN(8, name="rnn"),
                              keras.layers.Dense(2)])
        m.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        return m

    zeros = []

    def train_fn(model, callbacks):
        model.fit(x, y, batch_size=32, verbose=0, callbacks=callbacks)
        cell = model.get_layer("rnn").cell
        zeros.append([float((k.numpy() == 0).mean())
                      for k in (cell.kernel, cell.recurrent_kernel)])
        return {"accuracy": 0.5}

    find_winning_ticket(model_fn, train_fn, rounds=1,
                        prune_fraction_per_round=0.5, random_control=False)
    # round 1: half of each kernel, the recurrent one included
    assert zeros[1] == pytest.approx([0.5, 0.5], abs=0.02)


def test_the_search_returns_each_rounds_ticket_and_trained_model():
    """Not only the rows: the ticket (masks and the weights it rewinds
    to) and the trained sparse model of every round, to keep and ship."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 12)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")

    def model_fn(seed):
        return _mlp(seed, 16, 2)

    def train_fn(model, callbacks):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0,
                  callbacks=callbacks)
        return {"accuracy": float(model.evaluate(x, y, verbose=0)[1])}

    search = find_winning_ticket(model_fn, train_fn, rounds=2,
                                 prune_fraction_per_round=0.5,
                                 random_control=False)
    assert [r["round"] for r in search] == [0, 1, 2]     # still the rows
    masks = search.masks(2)
    assert [m.shape for m in masks] == [(12, 16), (16, 2)]
    assert masks[0].mean() == pytest.approx(0.25, abs=0.01)
    # the trained model of round 2: its zeros are the masks', and it
    # scores what the row says
    trained = search.model(2)
    kernel = np.asarray(trained.layers[0].kernel)
    assert np.array_equal(kernel != 0, masks[0])
    assert float(trained.evaluate(x, y, verbose=0)[1]) == pytest.approx(
        search[2]["accuracy"])
    # the untrained ticket: the initial weights under the masks, and a
    # callback that keeps its zeros while it trains again
    ticket = search.ticket(2)
    initial = np.asarray(model_fn(0).layers[0].kernel)
    np.testing.assert_array_equal(np.asarray(ticket.layers[0].kernel),
                                  initial * masks[0])
    ticket.fit(x, y, epochs=1, verbose=0,
               callbacks=[search.keep_masked(ticket, 2)])
    assert np.array_equal(np.asarray(ticket.layers[0].kernel) != 0,
                          masks[0])
    with pytest.raises(ValueError, match="round 3.*0 to 2"):
        search.model(3)
