"""``model.fit`` callbacks that drive pruning.

``UpdatePruningStep`` is required: it keeps the step counter of every
wrapper, updates the masks before each batch on the schedule's steps and
re-applies the masks at epoch end. For a custom training loop
(``tf.GradientTape``), call its methods yourself, as with tfmot, calling
``on_train_begin`` before the training step is first traced (a step traced
earlier keeps tfmot's in-call mask update, which gives the same masks but a
larger graph). tfmot's guide loop works as it is: a batch that began and
was not ended is ended by the next ``on_train_batch_begin`` or by
``on_epoch_end``::

    step = tfcompress.prune.UpdatePruningStep()
    log = tfcompress.prune.PruningSummaries(log_dir)
    step.set_model(model)
    log.set_model(model)
    step.on_train_begin()
    for epoch in range(epochs):
        log.on_epoch_begin(epoch)
        for x, y in dataset:
            step.on_train_batch_begin(batch=-1)
            train_step(x, y)   # calls model(x, training=True) under a tape
        step.on_epoch_end(batch=-1)

``PruningSummaries`` is Keras's TensorBoard callback that also writes
per-layer sparsity and thresholds.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from tfcompress import quiet
from tfcompress.errors import InputError
from tfcompress.prune import masks as mask_lib
from tfcompress.prune.wrapper import PruneLowMagnitude
from tfcompress.utils.layer_map import iter_layers
from tfcompress.utils.arguments import check_path

# each model gets its own step and mask functions, traced once
quiet.expected_retracing("UpdatePruningStep.", "_mask_update_function.")


def collect_wrappers(model) -> list:
    """All ``PruneLowMagnitude`` layers in ``model``, nested ones included.

    >>> from tfcompress.prune import ConstantSparsity, prune_low_magnitude
    >>> inner = keras.Sequential([keras.Input((8,)),
    ...                           keras.layers.Dense(4, name="fc1")],
    ...                          name="inner")
    >>> model = keras.Sequential([inner, keras.layers.Dense(2, name="fc2")])
    >>> pruned = prune_low_magnitude(model, ConstantSparsity(0.5, 0))
    >>> [w.layer.name for w in collect_wrappers(pruned)]
    ['fc1', 'fc2']
    >>> collect_wrappers(model)  # the original is left unwrapped
    []
    """
    return [l for l in iter_layers(model) if isinstance(l, PruneLowMagnitude)]


def check_one_step_per_batch(model, api):
    """InputError when ``model`` is compiled with ``steps_per_execution``
    above 1: Keras then calls batch callbacks once per execution, and a
    pruning schedule counts one training step per call."""
    per_execution = int(getattr(model, "steps_per_execution", 1) or 1)
    if per_execution > 1:
        raise InputError(
            f"{api}: the model is compiled with steps_per_execution="
            f"{per_execution}, but the pruning schedule counts one step per "
            "batch callback; compile the model with steps_per_execution=1")


class UpdatePruningStep(keras.callbacks.Callback):
    """Advances the pruning step counter of every wrapper; required.

    Before each batch it updates the masks of the wrappers whose schedule is
    due at the current step (one ``tf.function`` for all of them, or one
    threshold across layers for ``global_pruning`` wrappers); it advances
    the step counter after each batch and re-applies the masks at the end of
    each epoch so the saved weights hold exact zeros. A model restored from
    a ``.keras`` file continues from its saved step.

    The masks and sparsities are those of tfmot's in-graph update (the
    schedule evaluated on the step counter, each layer ranking its masked
    weights); doing the update here rather than inside every layer's
    training call keeps the schedule, a ``tf.cond`` and the mask
    computation of each layer out of the training graph, whose first
    trace and optimisation then cost about what the float model's do.

    >>> cb = UpdatePruningStep()   # model.fit(..., callbacks=[cb])
    """

    def __init__(self):
        super().__init__()
        self.wrappers = []
        self.step = 0
        self._assign_steps = None
        self._mask_updates = {}
        self._batch_open = False   # a batch began and has not ended
        self._step_read = False

    def on_train_begin(self, logs=None):
        self.wrappers = collect_wrappers(self.model)
        if not self.wrappers:
            raise InputError(
                "UpdatePruningStep: the model has no pruned layers; wrap it "
                "with tfcompress.prune.prune_low_magnitude() first")
        unbuilt = [w.name for w in self.wrappers if not w.built]
        if unbuilt:
            raise InputError(f"UpdatePruningStep: layers {unbuilt} are not "
                             "built; build the model (call it on data) "
                             "before training")
        check_one_step_per_batch(self.model, "UpdatePruningStep")
        variables = [w.pruning_step for w in self.wrappers]

        @tf.function(autograph=False)
        def assign_steps(step):
            for v in variables:
                v.assign(step)

        self._assign_steps = assign_steps
        # the step is read at the first batch: a callback that restores the
        # weights at train begin (BackupAndRestore) may run after this one
        self._step_read = False
        self._mask_updates = {}
        self._batch_open = False
        for w in self.wrappers:
            w.mask_updates_by_callback = True

    def on_train_batch_begin(self, batch, logs=None):
        if self._assign_steps is None:
            self.on_train_begin()
        if not self._step_read:
            # -1 marks a fresh wrapper; a restored model continues its
            # schedule from the step after the last one it trained
            self.step = max(max(w.step for w in self.wrappers), 0)
            self._assign_steps(tf.constant(self.step, tf.int64))
            self._step_read = True
        if self._batch_open:   # a loop that never calls on_train_batch_end
            self._end_batch()
        update_global_masks(self.wrappers, self.step)
        self.update_layer_masks(self.step)
        self._batch_open = True

    def update_layer_masks(self, step):
        """Updates the masks of the (not global) wrappers whose schedule is
        due at ``step``, in one ``tf.function`` per set of due wrappers;
        returns how many were updated."""
        due = due_wrappers([w for w in self.wrappers
                            if not w.global_pruning], step)
        if not due:
            return 0
        key = tuple(id(w) for w in due)
        update = self._mask_updates.get(key)
        if update is None:
            update = self._mask_updates[key] = _mask_update_function(due)
        update(tf.constant(step, tf.int64))
        return len(due)

    def on_train_batch_end(self, batch, logs=None):
        if self._batch_open:
            self._end_batch()

    def _end_batch(self):
        # The saved counter is the next step to run, so a checkpoint taken
        # now resumes exactly where this run stopped.
        self.step += 1
        self._assign_steps(tf.constant(self.step, tf.int64))
        self._batch_open = False

    def on_epoch_end(self, epoch=None, logs=None, batch=None):
        """Re-applies the masks. ``batch`` is accepted for tfmot's guide,
        which calls ``on_epoch_end(batch=-1)``."""
        if self._batch_open:
            self._end_batch()
        for w in self.wrappers:
            w.apply_masks()

    def on_train_end(self, logs=None):
        if self._batch_open:
            self._end_batch()
        for w in self.wrappers:
            w.apply_masks()
            w.mask_updates_by_callback = False


def due_wrappers(wrappers, step) -> list:
    """The wrappers whose schedule says to prune at ``step``; each
    distinct schedule is asked once (``prune_low_magnitude`` gives all
    wrappers of a model the same schedule object)."""
    verdicts = {}
    due = []
    for w in wrappers:
        schedule = w.pruning_schedule
        if id(schedule) not in verdicts:
            verdicts[id(schedule)] = schedule.prunes_at(step)
        if verdicts[id(schedule)]:
            due.append(w)
    return due


def _mask_update_function(wrappers):
    """A ``tf.function(step)`` recomputing the masks of ``wrappers`` at the
    sparsity each one's schedule gives for ``step``."""

    @tf.function(autograph=False)
    def update(step):
        sparsities = {}  # one schedule evaluation per distinct schedule
        for w in wrappers:
            key = id(w.pruning_schedule)
            if key not in sparsities:
                sparsities[key] = w.pruning_schedule(step)[1]
            w.update_masks(sparsities[key])

    return update


def update_global_masks(wrappers, step):
    """Updates, with one threshold, the ``global_pruning`` wrappers whose
    schedule is due at ``step``; returns how many were updated.

    ``UpdatePruningStep`` calls it before each batch; layers with many
    small weights lose more than the others, the whole model reaching the
    schedule's sparsity:

    >>> import numpy as np
    >>> from tfcompress.prune import ConstantSparsity, prune_low_magnitude
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((8,)),
    ...                           keras.layers.Dense(16, name="hidden"),
    ...                           keras.layers.Dense(4, name="out")])
    >>> pruned = prune_low_magnitude(
    ...     model, ConstantSparsity(0.8, begin_step=0, frequency=1),
    ...     global_pruning=True)
    >>> wrappers = collect_wrappers(pruned)
    >>> update_global_masks(wrappers, step=0)
    2
    >>> sizes = [w.layer.kernel.numpy().size for w in wrappers]  # 128, 64
    >>> zeros = sum(w.sparsity()[0] * n for w, n in zip(wrappers, sizes))
    >>> round(zeros / sum(sizes), 2)  # overall sparsity
    0.8
    >>> wrappers[0].thresholds == wrappers[1].thresholds  # one threshold
    True
    """
    due = due_wrappers([w for w in wrappers if w.global_pruning], step)
    if not due:
        return 0
    sparsity = due[0].target_sparsity(step)
    weights = [v for w in due for v in w.pruned_weights]
    min_density = min(w.min_density for w in due)
    masks, threshold = mask_lib.global_masks(
        [keras.ops.convert_to_numpy(v) for v in weights], sparsity,
        min_density)
    i = 0
    for w in due:
        n = len(w.pruned_weights)
        w.assign_masks(masks[i:i + n], [threshold] * n)
        i += n
    return len(due)


class PruningSummaries(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, plus per-layer pruning scalars.

    As tfmot's: the losses and metrics go to ``log_dir/train`` and
    ``log_dir/validation`` as with ``keras.callbacks.TensorBoard``; the
    target sparsity, the measured sparsity and the threshold of every
    pruned weight go to ``log_dir/pruning``, at the start of each epoch
    (also in a custom training loop that calls ``on_epoch_begin``), at
    the end of each epoch, and every ``update_freq`` batches when it is a
    number.

    Args:
      log_dir: the TensorBoard log folder.
      update_freq: ``"epoch"`` (tfmot's default), ``"batch"`` or a number
        of batches.
      **kwargs: passed to ``keras.callbacks.TensorBoard``.

    >>> import tempfile
    >>> cb = PruningSummaries(tempfile.mkdtemp(), update_freq=10)
    >>> cb.update_freq
    10
    """

    def __init__(self, log_dir, update_freq="epoch", **kwargs):
        check_path("PruningSummaries", "log_dir", log_dir, kind="folder",
                   example="logs")
        if not (update_freq in ("epoch", "batch") or (
                isinstance(update_freq, int) and update_freq > 0)):
            raise InputError(f"PruningSummaries: update_freq={update_freq!r}"
                             "; give 'epoch', 'batch' or a number of "
                             "batches > 0")
        super().__init__(log_dir=log_dir, update_freq=update_freq, **kwargs)
        self._pruning_writer = None
        self._batches = 0
        self._written = None     # the wrappers' steps last written

    def _write(self):
        wrappers = collect_wrappers(self.model)
        steps = [max(w.step, 0) for w in wrappers]
        if not wrappers or steps == self._written:
            return     # one point per step: an epoch's end is the next's start
        self._written = steps
        if self._pruning_writer is None:
            self._pruning_writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "pruning"))
        with self._pruning_writer.as_default():
            for w, step in zip(wrappers, steps):
                tf.summary.scalar(f"{w.name}/target_sparsity",
                                  w.target_sparsity(step), step=step)
                thresholds = w.thresholds
                for key, s in zip(w.weight_keys(), w.sparsity()):
                    tf.summary.scalar(f"{w.name}/{key}/sparsity", s,
                                      step=step)
                    tf.summary.scalar(f"{w.name}/{key}/threshold",
                                      thresholds[key], step=step)
        self._pruning_writer.flush()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._write()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._batches += 1
        if self.update_freq != "epoch" and \
                self._batches % self.update_freq == 0:
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._write()

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        if self._pruning_writer is not None:
            self._pruning_writer.close()
            self._pruning_writer = None
