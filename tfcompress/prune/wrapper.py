"""The ``PruneLowMagnitude`` wrapper layer.

It holds, as non-trainable weights, one mask per pruned variable and the
pruning step counter, so a ``.keras`` file saves and restores them and a
resumed run continues the schedule exactly.

As in tfmot, a training call outside ``model.fit`` (a layer called with
``training=True`` and its step counter set by hand) first runs the schedule
on the step counter (inside ``tf.function``) and, on update steps, recomputes
the masks and assigns ``weight * mask`` to the pruned weights. While
``UpdatePruningStep`` drives training, it does that same update itself
before each batch that is due (see ``mask_updates_by_callback``), so the
training graph holds only the masked forward pass. The wrapped layer then
computes with ``weight * mask`` (substituted for the weight through a Keras
``StatelessScope``), so gradients reach the weight only through unmasked
entries: pruned entries move only by optimizer momentum, never enter the
output, and are ranked as zeros at the next update. ``UpdatePruningStep``
advances the step counter and assigns ``weight * mask`` again at the end
of each epoch and of training, so saved and stripped weights hold exact
zeros.

>>> import keras
>>> from tfcompress.prune import PolynomialDecay
>>> w = PruneLowMagnitude(keras.layers.Dense(4),
...                       PolynomialDecay(0.0, 0.5, 0, 10, frequency=1))
>>> _ = w(keras.ops.ones((1, 8)))
>>> [v.name for v in w.non_trainable_weights]
['kernel_mask', 'kernel_threshold', 'pruning_step']
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
import tensorflow as tf

from tfcompress import compat
from tfcompress.utils.wrapper_build import WrappedBuildMixin
from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_flags, is_number
from tfcompress.prune import masks as mask_lib
from tfcompress.prune import prunable, schedules

MISSING_CALLBACK = (
    "PruneLowMagnitude is being trained without the pruning step callback: "
    "add tfcompress.prune.UpdatePruningStep() to model.fit(callbacks=[...]), "
    "or call its on_train_batch_begin/on_train_batch_end around each step "
    "of a custom training loop.")


@keras.saving.register_keras_serializable(package="tfcompress")
class PruneLowMagnitude(WrappedBuildMixin, keras.layers.Wrapper):
    """Wraps a layer to prune its weights by magnitude during training.

    Args:
      layer: the layer to prune (see ``tfcompress.prune.prunable``).
      pruning_schedule: a :class:`PruningSchedule`.
      block_size: ``(rows, cols)`` blocks pruned together; ``(1, 1)`` is
        unstructured.
      sparsity_m_by_n: ``(m, n)``, as tfmot: m zeros in every n
        consecutive weights along the input channels (e.g. ``(2, 4)``;
        ``(1, 4)`` keeps 3 of 4). The pattern follows the schedule: at
        sparsity s a fraction s / (m/n) of the m smallest weights of each
        group is pruned, so the pattern is exact from sparsity m/n on
        (0.5 for 2:4); the sparsity never exceeds m/n.
      global_pruning: rank this layer's weights together with every other
        global layer of the model (one threshold).
      min_density: with ``global_pruning``, the fraction of weights each
        layer keeps at least.

    :func:`tfcompress.prune.prune_low_magnitude` wraps every prunable
    layer of a model in one; ``UpdatePruningStep`` drives it in ``fit``:

    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.prune import ConstantSparsity, UpdatePruningStep
    >>> keras.utils.set_random_seed(0)
    >>> layer = PruneLowMagnitude(
    ...     keras.layers.Dense(16, name="hidden"),
    ...     ConstantSparsity(0.75, begin_step=0, frequency=1))
    >>> model = keras.Sequential([keras.Input((8,)), layer,
    ...                           keras.layers.Dense(4)])
    >>> model.compile("sgd", "mse")
    >>> x = np.random.default_rng(0).random((32, 8), dtype=np.float32)
    >>> _ = model.fit(x, np.zeros((32, 4)), batch_size=16, verbose=0,
    ...               callbacks=[UpdatePruningStep()])
    >>> layer.name, layer.step, layer.weight_keys(), layer.sparsity()
    ('prune_low_magnitude_hidden', 2, ['kernel'], [0.75])
    >>> float(np.mean(layer.layer.kernel.numpy() == 0))  # exact zeros
    0.75
    """

    def __init__(self, layer, pruning_schedule=None, block_size=(1, 1),
                 sparsity_m_by_n=None, global_pruning=False,
                 min_density=0.01, block_pooling_type="AVG",
                 refuse_spanning_block=True, **kwargs):
        if pruning_schedule is None:
            pruning_schedule = schedules.ConstantSparsity(0.5, 0)
        if not isinstance(layer, keras.layers.Layer):
            raise InputError(f"PruneLowMagnitude wraps a Keras layer, got "
                             f"{type(layer).__name__}")
        if not prunable.is_prunable(layer):
            raise InputError(prunable.unsupported_message(layer))
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.pruning_schedule = schedules.deserialize(pruning_schedule)
        (self.block_size, self.sparsity_m_by_n, self.global_pruning,
         self.min_density) = check_options(block_size, sparsity_m_by_n,
                                           global_pruning, min_density)
        self.block_pooling_type = mask_lib.check_block_pooling(
            block_pooling_type)
        self.masks = []
        self.threshold_vars = []
        self.pruned_weights = []
        # Set by UpdatePruningStep while it drives training: it then checks
        # the step counter and updates the masks before each batch, and a
        # training call builds only the masked forward pass (no schedule,
        # no ``tf.cond``, no step check in the training graph). Read when
        # the call is traced, so it is set before the first training step.
        self.mask_updates_by_callback = False
        # a block_size spanning a whole weight (nothing could be pruned) is
        # an InputError when built; a file saved before is built as it was
        self.refuse_spanning_block = bool(refuse_spanning_block)
        if layer.built:
            self.build()

    # -- building -------------------------------------------------------
    def build(self, input_shape=None):
        if not self.layer.built:
            if input_shape is None:
                raise InputError(
                    f"layer {self.layer.name!r} is not built; build it (or "
                    "call it once) before wrapping it")
            self.layer.build(input_shape)
        if getattr(self, "pruning_step", None) is not None:
            self.built = True
            return
        # [] from a PrunableLayer: supported, nothing to prune (as tfmot)
        self.pruned_weights = prunable.get_prunable_weights(self.layer)
        if self.sparsity_m_by_n is not None:
            m = self.sparsity_m_by_n[1]
            for w in self.pruned_weights:
                axis = prunable.input_channel_axis(self.layer, w)
                if w.shape[axis] % m:
                    raise InputError(
                        f"layer {self.layer.name!r}: N:M sparsity needs the "
                        f"input-channel axis of {w.name} (length "
                        f"{w.shape[axis]}) to be a multiple of {m}; exclude "
                        "this layer or choose another M")
        for w in self.pruned_weights:
            if self.refuse_spanning_block:
                mask_lib.check_block_fits(w.shape, self.block_size,
                                          self.layer.name,
                                          self._weight_key(w))
        self.masks, self.threshold_vars = [], []
        for w in self.pruned_weights:
            name = self._weight_key(w).replace("/", "_")
            self.masks.append(self.add_weight(
                name=f"{name}_mask", shape=w.shape, dtype=w.dtype,
                initializer="ones", trainable=False, autocast=False,
                aggregation="only_first_replica"))
            self.threshold_vars.append(self.add_weight(
                name=f"{name}_threshold", shape=(), dtype="float32",
                initializer="zeros", trainable=False, autocast=False,
                aggregation="only_first_replica"))
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), dtype="int64",
            initializer=keras.initializers.Constant(-1), trainable=False,
            autocast=False, aggregation="only_first_replica")
        self.built = True

    # -- forward ----------------------------------------------------------
    def call(self, inputs, *args, training=None, **kwargs):
        if training and not self.mask_updates_by_callback:
            self.check_step_counter()
            if not self.global_pruning:
                self.conditional_mask_update()
        if compat.call_has_training_arg(self.layer):
            kwargs["training"] = training
        return self._call_masked(inputs, *args, **kwargs)

    def _call_masked(self, inputs, *args, **kwargs):
        """Runs the wrapped layer with each pruned weight read as w * mask."""
        outer = compat.current_stateless_scope()
        mapping = (dict(compat.stateless_scope_state_mapping(outer))
                   if outer is not None else {})
        pairs = [(w, _raw(w) * _raw(m))
                 for w, m in zip(self.pruned_weights, self.masks)]
        with keras.StatelessScope(state_mapping=pairs) as scope:
            for key, value in mapping.items():
                compat.stateless_scope_state_mapping(scope).setdefault(
                    key, value)
            outputs = self.layer(inputs, *args, **kwargs)
        # Hand other state updates (e.g. seed generators) to their owner.
        pruned = {id(w) for w in self.pruned_weights}
        for v in self.layer.variables:
            if id(v) in pruned:
                continue
            new = scope.get_current_value(v)
            if new is not None and new is not mapping.get(id(v)):
                if outer is not None:
                    outer.add_update((v, new))
                else:
                    v.assign(new)
        return outputs

    # -- pruning ----------------------------------------------------------
    def check_step_counter(self):
        """Fails the training step if no callback set the step counter.

        Only string data, so the check is a single ``Assert`` op (no
        ``tf.cond`` guarding a formatted message).
        """
        return tf.debugging.Assert(
            tf.greater_equal(self.pruning_step.value,
                             tf.constant(0, tf.int64)),
            [MISSING_CALLBACK])

    def conditional_mask_update(self):
        """Graph-friendly: updates the masks if the schedule says so at the
        current step counter; returns the ``should_prune`` tensor.

        Under a ``tf.distribute`` strategy the new masks are computed in a
        ``tf.cond`` and assigned outside it (a replica-context assignment
        synchronises replicas, which control flow does not allow); the masks
        come from the first replica, so all replicas hold the same masks.
        """
        should_prune, sparsity = self.pruning_schedule(
            self.pruning_step.value)
        if not _in_replica_context():
            def update():
                self.update_masks(sparsity)
                return tf.constant(True)
            return tf.cond(should_prune, update, lambda: tf.constant(False))

        def new_values():
            pairs = self.compute_masks(sparsity)
            return ([tf.cast(m, v.dtype) for (m, _), v in zip(pairs, self.masks)]
                    + [t for _, t in pairs])

        def old_values():
            return ([tf.identity(_raw(v)) for v in self.masks]
                    + [tf.identity(_raw(t)) for t in self.threshold_vars])

        values = tf.cond(should_prune, new_values, old_values)
        for var, value in zip(self.masks + self.threshold_vars, values):
            var.assign(value)
        return should_prune

    def compute_masks(self, sparsity):
        """New ``(mask, threshold)`` per pruned weight for ``sparsity``."""
        sparsity = tf.cast(sparsity, tf.float32)
        result = []
        for w, mask_var in zip(self.pruned_weights, self.masks):
            # Rank the masked weight: entries pruned earlier stay pruned
            # (gradients never reach them; only optimizer momentum would).
            value = _raw(w) * _raw(mask_var)
            if self.sparsity_m_by_n is not None:
                zeros, m = self.sparsity_m_by_n
                axis = prunable.input_channel_axis(self.layer, w)
                mask = mask_lib.n_of_m_mask(value, m - zeros, m, axis,
                                            sparsity)
                kept = tf.boolean_mask(tf.abs(tf.reshape(value, [-1])),
                                       tf.reshape(mask > 0, [-1]))
                threshold = tf.reduce_min(tf.concat([kept, [np.inf]], 0))
            else:
                mask, threshold = mask_lib.block_mask(
                    value, sparsity, self.block_size,
                    self.block_pooling_type)
            result.append((mask, tf.cast(threshold, tf.float32)))
        return result

    def update_masks(self, sparsity):
        """Recomputes the masks for ``sparsity`` and zeroes pruned weights."""
        for (mask, threshold), mask_var, thr_var in zip(
                self.compute_masks(sparsity), self.masks, self.threshold_vars):
            mask_var.assign(tf.cast(mask, mask_var.dtype))
            thr_var.assign(threshold)
        self.apply_masks()

    def assign_masks(self, new_masks, thresholds=None):
        """Sets the masks (e.g. from global ranking) and applies them."""
        thresholds = thresholds or [None] * len(self.masks)
        for mask_var, value, thr_var, thr in zip(
                self.masks, new_masks, self.threshold_vars, thresholds):
            mask_var.assign(tf.cast(value, mask_var.dtype))
            if thr is not None:
                thr_var.assign(float(thr))
        self.apply_masks()

    def apply_masks(self):
        """Sets each pruned weight to ``weight * mask``."""
        for w, mask in zip(self.pruned_weights, self.masks):
            w.assign(_raw(w) * _raw(mask))

    def _weight_key(self, weight) -> str:
        """The weight's path inside the wrapped layer, e.g. ``kernel`` or
        ``query/kernel`` for MultiHeadAttention."""
        prefix = self.layer.path + "/"
        path = getattr(weight, "path", weight.name)
        return path[len(prefix):] if path.startswith(prefix) else weight.name

    @property
    def step(self) -> int:
        """The pruning step counter (-1 before training starts)."""
        return int(self.pruning_step.numpy())

    def target_sparsity(self, step=None) -> float:
        """The schedule's sparsity at ``step`` (default: current step)."""
        step = max(self.step, 0) if step is None else step
        return float(self.pruning_schedule(tf.constant(step, tf.int64))[1])

    @property
    def thresholds(self) -> dict:
        """Weight key (see ``weight_keys``) -> smallest kept magnitude at the
        last mask update."""
        return {self._weight_key(w): float(t.numpy())
                for w, t in zip(self.pruned_weights, self.threshold_vars)}

    def weight_keys(self) -> list:
        """Names of the pruned weights inside the layer (``kernel``,
        ``query/kernel``, ...)."""
        return [self._weight_key(w) for w in self.pruned_weights]

    def sparsity(self) -> list:
        """Measured fraction of zeros of each pruned weight as the layer
        computes with it (``weight * mask``)."""
        return [float(np.mean(keras.ops.convert_to_numpy(w)
                              * keras.ops.convert_to_numpy(m) == 0))
                for w, m in zip(self.pruned_weights, self.masks)]

    # -- config -----------------------------------------------------------
    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if not config.pop("m_by_n_counts_zeros", False) and \
                config.get("sparsity_m_by_n"):
            # written when (N, M) counted the weights kept: same pattern
            kept, m = config["sparsity_m_by_n"]
            config["sparsity_m_by_n"] = (m - kept, m)
        if config.get("global_pruning"):
            # written when global pruning silently ranked single weights
            # whatever the blocks or N:M asked for: load it as it pruned
            config["block_size"], config["sparsity_m_by_n"] = (1, 1), None
        # a file saved before spanning blocks were refused loads as it pruned
        config["refuse_spanning_block"] = False
        return super().from_config(config, custom_objects)

    def get_config(self):
        config = super().get_config()
        config.update({
            "pruning_schedule": schedules.serialize(self.pruning_schedule),
            "block_size": list(self.block_size),
            "block_pooling_type": self.block_pooling_type,
            "sparsity_m_by_n": (list(self.sparsity_m_by_n)
                                if self.sparsity_m_by_n else None),
            # (m, n) counts the zeros of each group, as tfmot's
            "m_by_n_counts_zeros": True,
            "global_pruning": self.global_pruning,
            "min_density": self.min_density,
        })
        return config


def _positive_pair(value, name, example):
    """``value`` as a pair of positive ints, else an InputError."""
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if (len(pair) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            and v > 0 for v in pair)):
        raise InputError(f"{name} must be two positive integers such as "
                         f"{example}, got {value!r}")
    return tuple(int(v) for v in pair)


def check_options(block_size, sparsity_m_by_n, global_pruning,
                  min_density):
    """Checks the granularity options of :class:`PruneLowMagnitude`;
    returns them normalised: ``(block_size, sparsity_m_by_n,
    global_pruning, min_density)``."""
    block_size = _positive_pair(block_size, "block_size", "(1, 4)")
    if sparsity_m_by_n is not None:
        zeros, m = _positive_pair(sparsity_m_by_n, "sparsity_m_by_n",
                                  "(2, 4)")
        if not zeros < m:
            raise InputError(f"sparsity_m_by_n must be (m, n): m zeros in "
                             f"every n weights, 0 < m < n, got "
                             f"{sparsity_m_by_n}")
        sparsity_m_by_n = (zeros, m)
        if block_size != (1, 1):
            raise InputError("use either block_size or sparsity_m_by_n, "
                             "not both")
    check_flags("prune_low_magnitude", global_pruning=global_pruning)
    global_pruning = bool(global_pruning)
    if global_pruning and (block_size != (1, 1) or sparsity_m_by_n):
        # one threshold over single weights: blocks and N:M groups would
        # be ignored
        raise InputError(
            "global_pruning ranks single weights across layers and does "
            "not combine with block_size or sparsity_m_by_n; use one of "
            "them")
    if not is_number(min_density) or not 0.0 <= min_density <= 1.0:
        raise InputError(f"min_density must be a fraction in [0, 1], got "
                         f"{min_density!r}")
    return block_size, sparsity_m_by_n, global_pruning, float(min_density)


def _raw(variable):
    """The value of a Keras variable in its own dtype (no autocast), as
    seen by the current stateless scope if any."""
    scope = compat.current_stateless_scope()
    if scope is not None:
        value = scope.get_current_value(variable)
        if value is not None:
            return value
    return tf.convert_to_tensor(compat.variable_value(variable))


def _in_replica_context() -> bool:
    """True inside ``strategy.run`` of a non-default distribution strategy."""
    return (tf.distribute.has_strategy()
            and tf.distribute.get_replica_context() is not None
            and tf.distribute.get_strategy().num_replicas_in_sync > 1)
