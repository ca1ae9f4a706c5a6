"""Pruning schedules: when to update the masks and to what sparsity.

Semantics are those of tfmot's ``pruning_schedule`` module, so a schedule
written for tfmot gives the same ``(should_prune, sparsity)`` here:

- ``PolynomialDecay``: sparsity(step) = final + (initial - final) *
  (1 - p) ** power, with p = clip((step - begin) / (end - begin), 0, 1).
- ``ConstantSparsity``: a constant target.
- Masks are updated when begin <= step <= end (or end == -1) and
  (step - begin) % frequency == 0.

>>> schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000)
>>> should_prune, sparsity = schedule(1000)
>>> bool(should_prune), round(float(sparsity), 3)
(True, 0.8)
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_counts, is_number


def _validate_sparsity(value, name):
    if not is_number(value) or not 0.0 <= value < 1.0:
        raise InputError(f"{name} must be a number in [0, 1), got "
                         f"{value!r}")


def _validate_steps(begin_step, end_step, frequency, allow_open_end,
                    allow_one_step=False):
    for name, value in (("begin_step", begin_step), ("end_step", end_step),
                        ("frequency", frequency)):
        # a whole float (end_step=np.ceil(n / batch) * epochs) is fine;
        # 0.5 would become step 0 (frequency 0: a division by zero)
        if not is_number(value) or value != int(value):
            raise InputError(f"{name} must be a whole number of training "
                             f"steps, got {value!r}")
    if begin_step < 0:
        raise InputError(f"begin_step must be >= 0, got {begin_step}")
    if frequency <= 0:
        raise InputError(f"frequency must be > 0, got {frequency}")
    if end_step == -1 and allow_open_end:
        return
    if end_step < 0 and allow_open_end:
        raise InputError(f"end_step must be >= 0 (or -1 for no end), got "
                         f"{end_step}")
    if end_step < 0:
        raise InputError(f"PolynomialDecay needs an end_step >= 0 (the step "
                         f"its sparsity reaches final_sparsity), got "
                         f"{end_step}; for a sparsity that holds from "
                         "begin_step on, use ConstantSparsity")
    if end_step < begin_step or (end_step == begin_step
                                 and not allow_one_step):
        raise InputError(f"end_step ({end_step}) must be greater than "
                         f"begin_step ({begin_step})")


class PruningSchedule:
    """Base class: maps a training step to ``(should_prune, sparsity)``.

    Subclasses implement ``__call__(step)`` returning two tensors (a bool
    and a float32 sparsity in [0, 1)) and ``get_config()``. The default
    ``should_update`` checks ``_should_prune_in_step`` in plain Python so
    the training loop can skip mask work between updates.

    A schedule jumping from 50 % to 80 % sparsity at step 100, with mask
    updates every 10 steps:

    >>> class TwoStage(PruningSchedule):
    ...     frequency = 10
    ...     def __call__(self, step):
    ...         step = tf.cast(step, tf.int64)
    ...         sparsity = tf.where(step < 100, 0.5, 0.8)
    ...         return (self._should_prune_in_step(step, 0, -1, 10),
    ...                 tf.cast(sparsity, tf.float32))
    ...     def get_config(self):
    ...         return {}
    >>> schedule = TwoStage()
    >>> [round(float(schedule(step)[1]), 2) for step in (0, 99, 100)]
    [0.5, 0.5, 0.8]
    >>> schedule.prunes_at(120), schedule.prunes_at(125)
    (True, False)
    >>> from tfcompress.prune import PruneLowMagnitude
    >>> layer = PruneLowMagnitude(keras.layers.Dense(4), schedule)
    >>> layer.target_sparsity(step=150)
    0.8...
    """

    begin_step = 0
    end_step = -1
    frequency = 1

    @staticmethod
    def _should_prune_in_step(step, begin_step, end_step, frequency):
        """tfmot's rule: in [begin, end] (end -1 = open) and on frequency."""
        step = tf.cast(step, tf.int64)
        begin_step = tf.constant(begin_step, tf.int64)
        end_step = tf.constant(end_step, tf.int64)
        frequency = tf.constant(frequency, tf.int64)
        in_range = tf.math.logical_and(
            tf.math.less_equal(begin_step, step),
            tf.math.logical_or(tf.math.less_equal(step, end_step),
                               tf.math.less(end_step, 0)))
        on_turn = tf.math.equal(tf.math.floormod(step - begin_step,
                                                 frequency), 0)
        return tf.math.logical_and(in_range, on_turn)

    def should_update(self, step: int) -> bool:
        """Python-side version of the update rule for integer steps."""
        step = int(step)
        if step < self.begin_step:
            return False
        if self.end_step >= 0 and step > self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0

    def prunes_at(self, step: int) -> bool:
        """Whether ``self(step)`` says to update the masks at ``step``.

        Answered in plain Python (``should_update``) when the schedule's
        ``__call__`` is a built-in one using the default rule, so a training
        loop can ask before every batch without running TensorFlow ops;
        any other schedule is evaluated.

        >>> ConstantSparsity(0.5, begin_step=10, frequency=5).prunes_at(15)
        True
        """
        cls = type(self)
        if (cls.__call__ in _DEFAULT_RULE_CALLS
                and cls.should_update is PruningSchedule.should_update):
            return self.should_update(step)
        return bool(self(tf.constant(int(step), tf.int64))[0])

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfcompress")
class ConstantSparsity(PruningSchedule):
    """Prunes to a constant ``target_sparsity`` every ``frequency`` steps
    from ``begin_step`` to ``end_step`` (-1: no end; ``begin_step``: once).

    >>> s = ConstantSparsity(0.5, begin_step=10, frequency=5)
    >>> [s.should_update(t) for t in (5, 10, 12, 15)]
    [False, True, False, True]
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1,
                 frequency=100):
        _validate_sparsity(target_sparsity, "target_sparsity")
        # end_step == begin_step prunes once, at that step (tfmot's one-shot
        # pruning)
        _validate_steps(begin_step, end_step, frequency, allow_open_end=True,
                        allow_one_step=True)
        self.target_sparsity = float(target_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    def __call__(self, step):
        return (self._should_prune_in_step(step, self.begin_step,
                                           self.end_step, self.frequency),
                tf.constant(self.target_sparsity, dtype=tf.float32))

    def get_config(self):
        return {"target_sparsity": self.target_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step,
                "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="tfcompress")
class PolynomialDecay(PruningSchedule):
    """Sparsity rising from ``initial_sparsity`` to ``final_sparsity``.

    The curve is steep at first and flat near the end (power 3 by default,
    Zhu & Gupta 2017), so most weights go while the network can still adapt.

    >>> s = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100, power=1)
    >>> round(float(s(50)[1]), 3)
    0.25
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step, end_step,
                 power=3, frequency=100):
        _validate_sparsity(initial_sparsity, "initial_sparsity")
        _validate_sparsity(final_sparsity, "final_sparsity")
        if not is_number(power) or power <= 0:
            raise InputError(f"power must be a number > 0, got {power!r}")
        _validate_steps(begin_step, end_step, frequency, allow_open_end=False)
        self.initial_sparsity = float(initial_sparsity)
        self.final_sparsity = float(final_sparsity)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.power = power
        self.frequency = int(frequency)

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        p = tf.math.divide(
            tf.cast(step - self.begin_step, tf.float32),
            self.end_step - self.begin_step)
        p = tf.math.minimum(1.0, tf.math.maximum(0.0, p))
        sparsity = tf.math.add(
            tf.math.multiply(self.initial_sparsity - self.final_sparsity,
                             tf.math.pow(1 - p, self.power)),
            self.final_sparsity)
        return (self._should_prune_in_step(step, self.begin_step,
                                           self.end_step, self.frequency),
                sparsity)

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step,
                "power": self.power, "frequency": self.frequency}

    @classmethod
    def ramp(cls, final_sparsity, total_steps, end_fraction=0.7,
             updates=20):
        """0 -> ``final_sparsity`` over about ``end_fraction`` of
        ``total_steps`` training steps, in about ``updates`` updates, the
        ramp ending on an update step. (A schedule updates every
        ``frequency`` steps only: an end between two updates would leave
        the last update short of ``final_sparsity``, one channel fewer per
        space for :class:`ChannelPruning`, whose counts round down.)

        >>> s = PolynomialDecay.ramp(0.5, 94)
        >>> (s.end_step, s.frequency, s.final_sparsity)
        (64, 4, 0.5)
        """
        check_counts("PolynomialDecay.ramp", total_steps=total_steps,
                     updates=updates)
        if not is_number(end_fraction) or not 0 < end_fraction <= 1:
            raise InputError(f"PolynomialDecay.ramp: end_fraction must be "
                             f"in (0, 1], got {end_fraction!r:.40}")
        frequency = max(1, total_steps // updates)
        end = max(frequency,
                  int(end_fraction * total_steps) // frequency * frequency)
        return cls(0.0, final_sparsity, 0, end, frequency=frequency)


# ``__call__`` implementations whose ``should_prune`` is the default rule
# (``PruningSchedule.should_update``).
_DEFAULT_RULE_CALLS = (ConstantSparsity.__call__, PolynomialDecay.__call__)


def serialize(schedule: PruningSchedule) -> dict:
    """Config dict with the class name, for layer configs."""
    cls = type(schedule)
    # a custom schedule by its registered name ("package>Name"), which is
    # how keras.saving finds it again
    name = (cls.__name__ if cls in (PolynomialDecay, ConstantSparsity)
            else keras.saving.get_registered_name(cls))
    return {"class_name": name, "config": schedule.get_config()}


def deserialize(config) -> PruningSchedule:
    """Inverse of :func:`serialize` (custom schedules must be registered
    with ``keras.saving.register_keras_serializable``)."""
    if isinstance(config, PruningSchedule):
        return config
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputError(f"expected a pruning schedule such as "
                         f"ConstantSparsity(0.5, begin_step=0), got "
                         f"{config!r}")
    name = config["class_name"]
    cls = {"PolynomialDecay": PolynomialDecay,
           "ConstantSparsity": ConstantSparsity}.get(name)
    if cls is None:
        cls = keras.saving.get_registered_object(name) or \
            keras.saving.get_registered_object("Custom>" + name)
    if cls is None:
        raise InputError(f"unknown pruning schedule {name!r}; register it "
                         "with keras.saving.register_keras_serializable()")
    return cls.from_config(config["config"])
