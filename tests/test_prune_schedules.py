import numpy as np
import pytest
import tensorflow as tf

from tfcompress.prune import ConstantSparsity, PolynomialDecay


@pytest.fixture(scope="module")
def tfmot():
    """tfmot, the reference for the parity tests (skipped without it)."""
    return pytest.importorskip("tensorflow_model_optimization")


def _random_configs(n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        begin = int(rng.integers(0, 200))
        end = begin + int(rng.integers(1, 2000))
        initial = float(rng.choice([0.0, rng.uniform(0, 0.5)]))
        final = float(rng.uniform(initial, 0.99))
        power = int(rng.choice([1, 2, 3, 4]))
        freq = int(rng.integers(1, 150))
        steps = sorted(set(rng.integers(0, end + 300, 40).tolist()
                           + [begin, end, end + 1, begin + freq]))
        yield (initial, final, begin, end, power, freq), steps


def test_polynomial_decay_equals_tfmot_exactly(tfmot):
    checked = 0
    for (i, f, b, e, p, fr), steps in _random_configs(60):
        ours = PolynomialDecay(i, f, b, e, power=p, frequency=fr)
        ref = tfmot.sparsity.keras.PolynomialDecay(i, f, b, e, power=p,
                                                   frequency=fr)
        for s in steps:
            step = tf.constant(s, tf.int64)
            up, sp = ours(step)
            rup, rsp = ref(step)
            assert bool(up) == bool(rup), (i, f, b, e, p, fr, s)
            assert float(sp) == float(rsp), (i, f, b, e, p, fr, s)
            assert ours.should_update(s) == bool(rup)
            checked += 1
    assert checked > 2000


def test_constant_sparsity_equals_tfmot_exactly(tfmot):
    rng = np.random.default_rng(1)
    for _ in range(40):
        t = float(rng.uniform(0, 0.99))
        b = int(rng.integers(0, 100))
        e = int(rng.choice([-1, b + int(rng.integers(1, 500))]))
        fr = int(rng.integers(1, 50))
        ours = ConstantSparsity(t, b, e, fr)
        ref = tfmot.sparsity.keras.ConstantSparsity(t, b, e, fr)
        for s in rng.integers(0, 800, 30).tolist() + [b, e]:
            step = tf.constant(s, tf.int64)
            assert bool(ours(step)[0]) == bool(ref(step)[0])
            assert float(ours(step)[1]) == float(ref(step)[1])
            assert ours.should_update(s) == bool(ref(step)[0])


@pytest.mark.parametrize("kwargs,name", [
    (dict(initial_sparsity=-0.1, final_sparsity=0.5, begin_step=0,
          end_step=10), "initial_sparsity"),
    (dict(initial_sparsity=0.0, final_sparsity=1.0, begin_step=0,
          end_step=10), "final_sparsity"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=10,
          end_step=10), "end_step"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=0,
          end_step=10, frequency=0), "frequency"),
    (dict(initial_sparsity=0.0, final_sparsity=0.5, begin_step=-1,
          end_step=10), "begin_step"),
])
def test_polynomial_decay_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PolynomialDecay(**kwargs)


def test_constant_sparsity_invalid_arguments():
    with pytest.raises(ValueError, match="target_sparsity"):
        ConstantSparsity(1.2, 0)
    with pytest.raises(ValueError, match="frequency"):
        ConstantSparsity(0.5, 0, frequency=-3)
    with pytest.raises(ValueError, match="end_step"):
        ConstantSparsity(0.5, 10, end_step=5)


def test_schedule_in_tf_function():
    s = PolynomialDecay(0.0, 0.8, 0, 100, frequency=10)

    @tf.function
    def f(step):
        return s(step)

    up, sp = f(tf.constant(100, tf.int64))
    assert bool(up) and abs(float(sp) - 0.8) < 1e-6


class _EveryThirdStep(PolynomialDecay):
    """A custom rule in ``__call__`` only (``should_update`` not updated)."""

    def __call__(self, step):
        _, sparsity = super().__call__(step)
        return tf.equal(tf.math.floormod(tf.cast(step, tf.int64), 3), 0), \
            sparsity


@pytest.mark.parametrize("schedule", [
    PolynomialDecay(0.0, 0.8, 4, 20, frequency=3),
    ConstantSparsity(0.5, 2, end_step=11, frequency=4),
    ConstantSparsity(0.5, 0, frequency=1),
    _EveryThirdStep(0.0, 0.8, 0, 20, frequency=2),
], ids=["polynomial", "constant", "constant-open", "custom-call"])
def test_prunes_at_agrees_with_the_schedule_tensor(schedule):
    for step in range(30):
        expected = bool(schedule(tf.constant(step, tf.int64))[0])
        assert schedule.prunes_at(step) == expected, step


@pytest.mark.parametrize("make,name", [
    (lambda: ConstantSparsity(0.5, 0, frequency=0.5), "frequency"),
    (lambda: ConstantSparsity(0.5, 2.5), "begin_step"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, "100"), "end_step"),
    (lambda: ConstantSparsity("0.5", 0), "target_sparsity"),
    (lambda: PolynomialDecay(None, 0.5, 0, 100), "initial_sparsity"),
    (lambda: PolynomialDecay(0.0, 0.5, 0, 100, power="3"), "power"),
])
def test_steps_and_sparsities_of_the_wrong_type_are_input_errors(make,
                                                                 name):
    from tfcompress.errors import InputError
    with pytest.raises(InputError, match=name) as info:
        make()
    assert "\n" not in str(info.value)



def test_constant_sparsity_ending_where_it_begins_prunes_once():
    # tfmot's one-shot pruning: ConstantSparsity(s, begin_step=b,
    # end_step=b) updates the masks at step b only, then keeps them
    s = ConstantSparsity(0.8, begin_step=3, end_step=3, frequency=1)
    assert [s.prunes_at(t) for t in range(6)] == [False, False, False,
                                                  True, False, False]
    assert [bool(s(tf.constant(t, tf.int64))[0]) for t in range(6)] == \
        [t == 3 for t in range(6)]


def test_one_shot_constant_sparsity_equals_tfmot(tfmot):
    ours = ConstantSparsity(0.8, 0, end_step=0)
    ref = tfmot.sparsity.keras.ConstantSparsity(0.8, 0, end_step=0)
    for t in range(4):
        step = tf.constant(t, tf.int64)
        assert bool(ours(step)[0]) == bool(ref(step)[0])


def test_polynomial_decay_without_an_end_says_it_needs_one():
    """-1 means no end for ConstantSparsity only: the message for
    PolynomialDecay must not offer it."""
    from tfcompress.errors import InputError
    with pytest.raises(InputError) as err:
        PolynomialDecay(0.0, 0.5, 0, end_step=-1)
    assert "-1 for no end" not in str(err.value)
    assert "PolynomialDecay" in str(err.value) and "end_step" in str(
        err.value)
    with pytest.raises(InputError, match=r"or -1 for no end"):
        ConstantSparsity(0.5, 0, end_step=-2)
