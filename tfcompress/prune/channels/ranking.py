"""Structured (channel) pruning: zero whole channels during training.

``ChannelPruning`` is a ``model.fit`` callback driven by the same schedules
as unstructured pruning. On the schedule's update steps it ranks the output
channels of each channel space (see :mod:`tfcompress.prune.channels.graph`)
by the scale of the BatchNormalization on their path (or, without one, by
the L2 norm of the producers' weights) and zeros the weakest:
producer kernels and biases, and the matching BatchNormalization gamma/beta
and depthwise channels, so the channel carries exact zeros to its
consumers. After every batch the zeros are re-applied.
:func:`tfcompress.prune.shrink` then removes those channels for real, so
the model gets smaller and faster on any runtime.

>>> from tfcompress.prune import ChannelPruning, ConstantSparsity
>>> cb = ChannelPruning(ConstantSparsity(0.5, begin_step=0))
>>> # model.fit(x, y, callbacks=[cb]); small = tfcompress.prune.shrink(model)
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import layers as L

from tfcompress.errors import InputError
from tfcompress.prune import schedules
from tfcompress.prune.callbacks import check_one_step_per_batch
from tfcompress.prune.channels.graph import channel_spaces, output_kernel
from tfcompress.utils.arguments import is_number, layer_names
from tfcompress.utils.layer_map import is_container


NORMS = ("l1", "l2", "bn_gamma")
ALLOCATIONS = ("uniform", "global")


def _gamma_scores(space):
    """Sum over the space's BatchNormalization layers of ``|gamma|``,
    each layer's divided by its mean so that every one weighs the same
    (the mean over a channel's outputs where a depthwise convolution's
    ``depth_multiplier`` repeats it); None when no BatchNormalization
    (with a scale) is on the path."""
    score, found = np.zeros(space.channels, np.float64), False
    for layer, _, outputs in space.iter_follower_positions():
        if isinstance(layer, L.BatchNormalization) and \
                layer.gamma is not None:
            g = np.abs(np.asarray(layer.gamma, np.float64))
            score += g[outputs].mean(axis=1) / max(g.mean(), 1e-12)
            found = True
    return score if found else None


def channel_scores(space, norm="bn_gamma"):
    """Importance of each channel of ``space``.

    ``"bn_gamma"`` (default): the ``|gamma|`` of the BatchNormalization layers on the
    path (network slimming, Liu et al. 2017); a BatchNormalization
    normalises the producer's output, so the kernel's scale says nothing
    there while gamma sets the channel's output scale. Spaces without
    BatchNormalization fall back to ``"l2"``.
    ``"l1"``/``"l2"``: summed norms of the producers' kernels.

    >>> from tfcompress.prune.channels import channel_spaces
    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="conv2"),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> space = channel_spaces(model)[0]   # conv1 -> bn1
    >>> gamma = np.array([1, 2, 3, 4, 5, 6, 7, 0.5], np.float32)
    >>> _ = model.get_layer("bn1").gamma.assign(gamma)
    >>> scores = channel_scores(space)    # |gamma| of bn1 over its mean
    >>> bool(np.allclose(scores, gamma / gamma.mean()))
    True
    >>> np.argsort(scores)[:2].tolist()   # the channels to drop first
    [7, 0]
    >>> channel_scores(space, "l1").shape  # kernel norms, one per channel
    (8,)
    """
    if norm not in NORMS:
        raise InputError(f"norm must be one of {', '.join(NORMS)}, "
                         f"got {norm!r}")
    if norm == "bn_gamma":
        score = _gamma_scores(space)
        return score if score is not None else channel_scores(space, "l2")
    score = np.zeros(space.channels, np.float64)
    for layer in space.producers:
        k = np.asarray(output_kernel(layer)).reshape(-1, space.channels)
        if norm == "l1":
            score += np.abs(k).sum(axis=0)
        else:
            score += np.sqrt((k.astype(np.float64) ** 2).sum(axis=0))
    return score


def _keep_vector(length, positions, keep):
    """Ones of ``length`` with each channel's ``positions`` (one row per
    channel) set to its ``keep``."""
    full = np.ones(length, np.float32)
    full[positions] = keep[:, None]
    return full


def zero_channels(space, keep):
    """Zeros channels where ``keep`` is 0 along the whole space (producers
    and the per-channel layers on its path; passengers are left alone:
    their channels are multiplied by zeros).

    >>> from tfcompress.prune.channels import channel_spaces, dead_channels
    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="conv2"),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> space = channel_spaces(model)[0]   # conv1 -> bn1
    >>> keep = np.array([1, 0, 1, 0, 1, 1, 1, 1])
    >>> zero_channels(space, keep)
    >>> np.flatnonzero(dead_channels(space)).tolist()
    [1, 3]
    >>> model.get_layer("bn1").gamma.numpy()[[1, 3]].tolist()
    [0.0, 0.0]
    """
    m = keep.astype(np.float32)
    for layer in space.producers:
        kernel = output_kernel(layer)
        kernel.assign(np.asarray(kernel) * m)
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.asarray(layer.bias) * m)
    for layer, inputs, outputs in space.iter_follower_positions():
        # the follower may carry more channels (after a Concatenate)
        depthwise = isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D))
        total = (int(np.prod(layer.kernel.shape[-2:])) if depthwise
                 else int(layer.moving_mean.shape[0]))
        full = _keep_vector(total, outputs, m)
        if isinstance(layer, L.BatchNormalization):
            for v in (layer.gamma, layer.beta):
                if v is not None:
                    v.assign(np.asarray(v) * full)
            if layer.gamma is None:
                # without a scale the channel outputs -mean/std + beta:
                # zero the mean too (its input is zero from now on)
                layer.moving_mean.assign(np.asarray(layer.moving_mean) *
                                         full)
        elif depthwise:
            kernel_keep = _keep_vector(int(layer.kernel.shape[-2]), inputs,
                                       m)
            layer.kernel.assign(np.asarray(layer.kernel) *
                                kernel_keep.reshape(-1, 1))
            if getattr(layer, "bias", None) is not None:
                layer.bias.assign(np.asarray(layer.bias) * full)


def _space_caps(channels, max_space_sparsity):
    """The most channels each space of ``channels`` may lose: its
    ``max_space_sparsity``, and never its last channel."""
    return [min(int(np.floor(n * max_space_sparsity)), n - 1)
            for n in channels]


def channels_to_remove(scores, sparsity, allocation="uniform",
                       max_space_sparsity=0.8):
    """How many channels to remove from each space.

    ``"uniform"``: ``sparsity`` of every space. ``"global"``: ``sparsity``
    of all the spaces' channels together, the weakest first, each space's
    scores divided by their mean so that spaces compare (a space whose
    scores are spread loses more than one whose channels are alike); no
    space loses more than ``max_space_sparsity`` of its channels. Every
    space keeps at least one.

    >>> a = np.array([0.01, 0.01, 0.01, 1.0])
    >>> b = np.array([0.9, 1.0, 1.1, 1.0])
    >>> channels_to_remove([a, b], 0.25)
    [1, 1]
    >>> channels_to_remove([a, b], 0.25, "global", max_space_sparsity=0.75)
    [2, 0]
    """
    if allocation == "uniform":
        return [min(int(np.floor(len(s) * sparsity)), len(s) - 1)
                for s in scores]
    total = int(np.floor(sum(len(s) for s in scores) * sparsity))
    caps = _space_caps([len(s) for s in scores], max_space_sparsity)
    pooled = np.concatenate([s / max(float(np.mean(s)), 1e-12)
                             for s in scores])
    owner = np.concatenate([np.full(len(s), i) for i, s in
                            enumerate(scores)])
    counts = [0] * len(scores)
    removed = 0
    for j in np.argsort(pooled, kind="stable"):
        if removed == total:
            break
        if counts[owner[j]] < caps[owner[j]]:
            counts[owner[j]] += 1
            removed += 1
    return counts


class ChannelPruning(keras.callbacks.Callback):
    """Zeros the weakest whole channels on a pruning schedule.

    Args:
      pruning_schedule: a :class:`PruningSchedule`; its sparsity is the
        fraction of channels removed: of each channel space
        (``allocation="uniform"``) or of all of them together
        (``"global"``).
      norm: channel ranking, see :func:`channel_scores`: ``"bn_gamma"``
        (default: the BatchNormalization scales on the path, ``"l2"``
        where there is none) or ``"l1"``/``"l2"`` (producer kernel
        norms).
      exclude: names of producer layers whose channels are kept.
      allocation: ``"uniform"`` (default: every space loses the same
        fraction) or ``"global"`` (the weakest channels of the whole model,
        scores compared after dividing each space's by its mean; thin
        spaces whose channels all matter keep more, wide ones with weak
        channels lose more), see :func:`channels_to_remove`.
      max_space_sparsity: with ``"global"``, the largest fraction of any
        one space removed (default 0.8).
      initial_step: the step to start from (to resume a run); by default
        the step the run's first epoch begins at (its epoch times the
        steps per epoch), so a run resumed by ``BackupAndRestore`` or
        ``fit(initial_epoch=...)`` continues its schedule.
      model: the model to prune when ``fit`` runs another one around it
        (e.g. ``tfcompress.distill.Distiller(student, ...)``: pass
        ``student``); default: the model ``fit`` runs.

    Half the channels of each prunable space are zeroed during ``fit``;
    :func:`tfcompress.prune.shrink` then removes them:

    >>> from tfcompress.prune import (ConstantSparsity, channel_spaces,
    ...                               dead_channels, shrink)
    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(8, 3, name="conv1"),
    ...     keras.layers.BatchNormalization(name="bn1"),
    ...     keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="conv2"),
    ...     keras.layers.GlobalAveragePooling2D(),
    ...     keras.layers.Dense(3, name="logits")])
    >>> model.compile("sgd", "mse")
    >>> x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    >>> cb = ChannelPruning(ConstantSparsity(0.5, begin_step=0, frequency=1))
    >>> _ = model.fit(x, np.zeros((16, 3)), batch_size=8, callbacks=[cb],
    ...               verbose=0)
    >>> [int(dead_channels(s).sum()) for s in channel_spaces(model)]
    [4, 2, 0]
    >>> small = shrink(model)
    >>> small.get_layer("conv1").filters, small.get_layer("conv2").filters
    (4, 2)
    >>> small.count_params() < model.count_params()
    True
    """

    def __init__(self, pruning_schedule, norm="bn_gamma", exclude=(),
                 initial_step=None, model=None, allocation="uniform",
                 max_space_sparsity=0.8):
        super().__init__()
        if norm not in NORMS:
            raise InputError(f"norm must be one of {', '.join(NORMS)}, "
                             f"got {norm!r}")
        if allocation not in ALLOCATIONS:
            raise InputError(f"allocation must be one of "
                             f"{', '.join(ALLOCATIONS)}, got {allocation!r}")
        if not is_number(max_space_sparsity) or \
                not 0.0 < max_space_sparsity < 1.0:
            raise InputError(f"max_space_sparsity must be between 0 and 1 "
                             f"(exclusive), got {max_space_sparsity!r}")
        self.allocation = allocation
        self.max_space_sparsity = float(max_space_sparsity)
        self.pruning_schedule = schedules.deserialize(pruning_schedule)
        self.norm = norm
        self.exclude = layer_names(exclude, "exclude",
                                   "ChannelPruning") or set()
        if initial_step is not None and (
                not is_number(initial_step) or initial_step < 0 or
                initial_step != int(initial_step)):
            raise InputError(f"ChannelPruning: initial_step must be a whole "
                             f"number of training steps (>= 0) or None, got "
                             f"{initial_step!r:.60}")
        self.initial_step = None if initial_step is None \
            else int(initial_step)
        self.step = self.initial_step or 0
        self._first_epoch = False
        self.spaces = []
        self.keeps = {}
        self.pruned_model = model

    def on_train_begin(self, logs=None):
        check_one_step_per_batch(self.model, "ChannelPruning")
        self._first_epoch = True
        target = self.pruned_model if self.pruned_model is not None \
            else self.model
        spaces = channel_spaces(target)
        unknown = self.exclude - {n for s in spaces for n in s.names()}
        if unknown:
            raise InputError(
                f"ChannelPruning: exclude names {', '.join(sorted(unknown))}, "
                f"which produce no channel space of this model; name "
                f"convolution or Dense layers (see "
                f"tfcompress.prune.channel_spaces(model))")
        self.spaces = [s for s in spaces if s.prunable
                       and not (set(s.names()) & self.exclude)]
        nested = [l.name for l in target.layers if is_container(l)]
        if self.spaces and nested:
            warnings.warn(
                f"ChannelPruning: nested model(s) {', '.join(nested)} keep "
                f"every channel (channel pruning does not look into them); "
                f"only the {len(self.spaces)} channel space(s) outside are "
                f"pruned. To prune inside, train and prune "
                f"tfcompress.prune.flatten_nested(model)", UserWarning,
                stacklevel=2)
        if not self.spaces:
            if nested:
                raise InputError(
                    f"ChannelPruning: no channel of this model can be "
                    f"pruned outside its nested model(s) "
                    f"{', '.join(nested)}, which channel pruning does not "
                    f"look into; train and prune "
                    f"tfcompress.prune.flatten_nested(model) instead (the "
                    f"same network as one flat Functional model)")
            raise InputError(
                "ChannelPruning: no channel of this model can be pruned; "
                "see tfcompress.prune.channel_spaces(model) for why each "
                "space is frozen")
        self._check_reachable()

    def _check_reachable(self):
        """With global allocation, the cap must let the schedule's final
        sparsity be reached."""
        final = getattr(self.pruning_schedule, "final_sparsity", getattr(
            self.pruning_schedule, "target_sparsity", None))
        if self.allocation != "global" or final is None:
            return
        sizes = [s.channels for s in self.spaces]
        removable = sum(_space_caps(sizes, self.max_space_sparsity))
        if int(np.floor(sum(sizes) * final)) > removable:
            raise InputError(
                f"ChannelPruning: max_space_sparsity "
                f"{self.max_space_sparsity:g} lets at most "
                f"{100 * removable / sum(sizes):.1f}% of the prunable "
                f"channels go, and "
                f"the schedule asks for {100 * final:g}%; raise "
                f"max_space_sparsity or lower the sparsity")

    def on_epoch_begin(self, epoch, logs=None):
        # A run resumed at a later epoch (initial_epoch=, BackupAndRestore)
        # continues the schedule where that epoch begins.
        if not self._first_epoch:
            return
        self._first_epoch = False
        steps = (self.params or {}).get("steps")
        if self.initial_step is None and steps and epoch > 0:
            self.step = max(self.step, int(epoch) * int(steps))

    def on_train_batch_begin(self, batch, logs=None):
        if not self.pruning_schedule.prunes_at(self.step):
            return
        import tensorflow as tf
        sparsity = float(self.pruning_schedule(
            tf.constant(self.step, tf.int64))[1])
        scores = [channel_scores(s, self.norm) for s in self.spaces]
        counts = channels_to_remove(scores, sparsity, self.allocation,
                                    self.max_space_sparsity)
        for i, (space, n_remove) in enumerate(zip(self.spaces, counts)):
            keep = np.ones(space.channels, np.float32)
            if n_remove > 0:
                order = np.argsort(scores[i], kind="stable")
                keep[order[:n_remove]] = 0
            self.keeps[i] = keep
            zero_channels(space, keep)

    def on_train_batch_end(self, batch, logs=None):
        for i, keep in self.keeps.items():
            zero_channels(self.spaces[i], keep)
        self.step += 1

    def summary(self):
        """Rows: producers, channels, kept channels per space."""
        return [{"producers": s.names(), "channels": s.channels,
                 "kept": int(self.keeps.get(i, np.ones(1)).sum())
                 if i in self.keeps else s.channels}
                for i, s in enumerate(self.spaces)]
