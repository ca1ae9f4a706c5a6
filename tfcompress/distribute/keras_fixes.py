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
by :func:`tfcompress.distribute.get_strategy` for ``"multi_worker"``.
"""

from __future__ import annotations

_APPLIED = False


def apply() -> bool:
    """Installs the two fixes once; returns False when this Keras has no
    such internals (a version where they moved or were fixed)."""
    global _APPLIED
    if _APPLIED:
        return True
    try:
        import tensorflow as tf
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer
        cls = trainer.TensorFlowTrainer
        original_build = cls._maybe_symbolic_build
        original_reduce = trainer.reduce_per_replica
        multi_worker = trainer._collective_all_reduce_multi_worker
        is_per_replica = trainer._is_per_replica_instance
    except (ImportError, AttributeError):
        return False

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or \
                not multi_worker(strategy):
            return original_build(self, iterator=iterator,
                                  data_batch=data_batch)
        for _, _, it in iterator:
            batch = next(it)
            break
        else:
            return original_build(self, iterator=iterator)
        batch = tree.map_structure(
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
        return tree.map_structure(one, values)

    cls._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    _APPLIED = True
    return True
