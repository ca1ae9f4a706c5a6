"""Makes Keras 3's ``model.fit`` work under MultiWorkerMirroredStrategy.

Keras 3 (TensorFlow backend, 3.5 to at least 3.15) fails in ``fit`` when
more than one worker trains (keras-team/keras#20585, open):

1. ``_maybe_symbolic_build`` reduces the whole first batch, a tuple of
   per-replica values, in one ``strategy.reduce`` call, which the
   collective strategy cannot convert ("Attempt to convert a value
   (PerReplica...) with an unsupported type").
2. ``reduce_per_replica`` reduces every logged value over ``axis=0``,
   which fails for scalar losses and metrics ("Invalid reduction
   dimension 0 for input with 0 dimensions").

``apply()`` patches those two spots: the batch is reduced element by
element and scalars are reduced without an axis. Nothing else changes;
single-worker training never reaches the patched branches. It is applied
by :func:`tfcompress.distribute.get_strategy` for ``"multi_worker"``. The
trainer internals are reached through :mod:`tfcompress.compat`; when they
are missing ``apply()`` raises :class:`tfcompress.compat.CompatError`.
"""

from __future__ import annotations

from tfcompress import compat

#: Marks the replacement functions, so applying twice patches once.
PATCHED = "tfcompress_multi_worker_fix"


def is_applied(trainer_module=None) -> bool:
    """True if the fixes are installed in ``trainer_module`` (default: Keras'
    TensorFlow trainer module)."""
    internals = compat.tensorflow_trainer_internals(trainer_module)
    return (getattr(internals.maybe_symbolic_build, PATCHED, False) and
            getattr(internals.reduce_per_replica, PATCHED, False))


def apply(trainer_module=None) -> bool:
    """Installs the two fixes once into ``trainer_module`` (default: Keras'
    TensorFlow trainer module) and returns True.

    Raises:
      tfcompress.compat.CompatError: this Keras lacks one of the patched
        internals (they moved, or the bug was fixed differently); the
        message names the missing symbol and the installed versions.
    """
    import keras
    import tensorflow as tf

    internals = compat.tensorflow_trainer_internals(trainer_module)
    if is_applied(trainer_module):
        return True
    original_build = internals.maybe_symbolic_build
    original_reduce = internals.reduce_per_replica
    multi_worker = internals.is_multi_worker
    is_per_replica = internals.is_per_replica

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = compat.model_distribute_strategy(self)
        if strategy is None or iterator is None or \
                not multi_worker(strategy):
            return original_build(self, iterator=iterator,
                                  data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        else:
            return original_build(self, iterator=iterator)
        batch = keras.tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None)
            if isinstance(v, tf.distribute.DistributedValues) else v, batch)
        return original_build(self, data_batch=batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def one(v):
            if not is_per_replica(v):
                return v
            rank = v.values[0].shape.rank
            return strategy.reduce("MEAN", v, axis=0 if rank else None)
        return keras.tree.map_structure(one, values)

    setattr(maybe_symbolic_build, PATCHED, True)
    setattr(reduce_per_replica, PATCHED, True)
    compat.patch_tensorflow_trainer(internals, maybe_symbolic_build,
                                    reduce_per_replica)
    return True
