"""``model.fit`` callbacks that drive pruning.

``UpdatePruningStep`` is required: before each batch it updates the masks
when the schedule says so; after each batch it re-applies them (so pruned
weights stay zero after the optimizer step) and advances the step counter
kept in every wrapper. For a custom training loop, call its methods
yourself::

    step = tfcompress.prune.UpdatePruningStep()
    step.set_model(model)
    step.on_train_begin()
    for x, y in dataset:
        step.on_train_batch_begin(0)
        train_step(x, y)              # your tf.GradientTape step
        step.on_train_batch_end(0)
    step.on_train_end()

``PruningSummaries`` writes per-layer sparsity and thresholds to TensorBoard.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcompress.prune import masks as mask_lib
from tfcompress.prune.wrapper import PruneLowMagnitude
from tfcompress.utils.layer_map import iter_layers


def collect_wrappers(model) -> list:
    """All ``PruneLowMagnitude`` layers in ``model``, nested ones included."""
    return [l for l in iter_layers(model) if isinstance(l, PruneLowMagnitude)]


class UpdatePruningStep(keras.callbacks.Callback):
    """Updates pruning masks on schedule and keeps pruned weights at zero.

    >>> cb = UpdatePruningStep()   # model.fit(..., callbacks=[cb])
    """

    def __init__(self):
        super().__init__()
        self.wrappers = []
        self.step = 0

    def on_train_begin(self, logs=None):
        self.wrappers = collect_wrappers(self.model)
        if not self.wrappers:
            raise ValueError(
                "UpdatePruningStep: the model has no pruned layers; wrap it "
                "with tfcompress.prune.prune_low_magnitude() first")
        unbuilt = [w.name for w in self.wrappers if not w.built]
        if unbuilt:
            raise ValueError(f"UpdatePruningStep: layers {unbuilt} are not "
                             "built; build the model (call it on data) "
                             "before training")
        steps = {w.step for w in self.wrappers}
        # -1 marks a fresh wrapper; a restored model continues its schedule.
        self.step = max(max(steps), 0)
        for w in self.wrappers:
            w.pruning_step.assign(self.step)

    def on_train_batch_begin(self, batch, logs=None):
        if not self.wrappers:
            self.on_train_begin()
        update_masks(self.wrappers, self.step)

    def on_train_batch_end(self, batch, logs=None):
        for w in self.wrappers:
            w.apply_masks()
        self.step += 1
        for w in self.wrappers:
            w.pruning_step.assign(self.step)

    def on_epoch_end(self, epoch, logs=None):
        for w in self.wrappers:
            w.apply_masks()


def update_masks(wrappers, step):
    """Updates the masks of ``wrappers`` due at ``step``; returns how many.

    Wrappers with ``global_pruning`` that are due share one threshold.
    """
    updated = 0
    global_due = [w for w in wrappers if w.global_pruning
                  and w.pruning_schedule.should_update(step)]
    for w in wrappers:
        if w.global_pruning:
            continue
        new = w.compute_masks(step)
        if new is not None:
            w.assign_masks(new)
            updated += 1
    if global_due:
        sparsity = global_due[0].target_sparsity(step)
        weights = [v for w in global_due for v in w.pruned_weights]
        min_density = min(w.min_density for w in global_due)
        masks, threshold = mask_lib.global_masks(
            [np.asarray(v) for v in weights], sparsity, min_density)
        i = 0
        for w in global_due:
            n = len(w.pruned_weights)
            w.assign_masks(masks[i:i + n])
            for v in w.pruned_weights:
                w.thresholds[v.name] = threshold
            i += n
            updated += 1
    return updated


class PruningSummaries(keras.callbacks.Callback):
    """Writes per-layer sparsity and thresholds to TensorBoard.

    Args:
      log_dir: the TensorBoard log folder.
      update_freq: write every this many batches (and at each epoch end).

    >>> cb = PruningSummaries("/tmp/logs")  # doctest: +SKIP
    """

    def __init__(self, log_dir, update_freq=100):
        super().__init__()
        self.log_dir = log_dir
        self.update_freq = int(update_freq)
        self._writer = None
        self._step = 0

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)

    def _write(self):
        with self._writer.as_default():
            for w in collect_wrappers(self.model):
                step = max(w.step, 0)
                tf.summary.scalar(f"{w.name}/target_sparsity",
                                  w.target_sparsity(step), step=step)
                for v, s in zip(w.pruned_weights, w.sparsity()):
                    tf.summary.scalar(f"{w.name}/{v.name}/sparsity", s,
                                      step=step)
                    if v.name in w.thresholds:
                        tf.summary.scalar(f"{w.name}/{v.name}/threshold",
                                          w.thresholds[v.name], step=step)
        self._writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.update_freq == 0:
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        self._write()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
