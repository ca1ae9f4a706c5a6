"""Lottery-ticket search: iterative magnitude pruning with rewinding.

Frankle & Carbin (2019): train, prune the smallest ``p`` of the remaining
weights (the output layer at half that rate), rewind the survivors to their
initial values (or to their values at an early iteration, for deeper nets)
and train again; repeat. A random re-initialisation with the same masks is
the control that shows the initialisation matters.

>>> def model_fn(seed):
...     keras.utils.set_random_seed(seed)
...     return compile_classifier(lenet_300_100())
>>> def train_fn(model, callbacks):
...     model.fit(x, y, epochs=2, callbacks=callbacks, verbose=0)
...     return {"accuracy": model.evaluate(xt, yt, verbose=0)[1]}
>>> rounds = find_winning_ticket(model_fn, train_fn, rounds=3)  # doctest: +SKIP
>>> best = max(rounds, key=lambda row: row["accuracy"])  # doctest: +SKIP
>>> sparse = rounds.model(best["round"])  # to convert  # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np

from tfcompress.prune.prunable import get_prunable_weights, is_prunable
from tfcompress.utils.layer_map import iter_layers
from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_counts, check_flags, is_number


class KeepMasked(keras.callbacks.Callback):
    """Keeps masked weights at zero after every optimizer step, and
    optionally records all weights after ``record_step`` batches."""

    def __init__(self, kernels, masks, record_step=None):
        super().__init__()
        self.kernels, self.masks = kernels, masks
        self.record_step = record_step
        self.recorded = None
        self._batches = 0

    def _apply(self):
        for k, m in zip(self.kernels, self.masks):
            k.assign(np.asarray(k) * m)

    def on_train_begin(self, logs=None):
        self._apply()
        if self.record_step == 0:
            self.recorded = [np.array(w) for w in self.model.get_weights()]

    def on_train_batch_end(self, batch, logs=None):
        self._apply()
        self._batches += 1
        if self.record_step and self._batches == self.record_step:
            self.recorded = [np.array(w) for w in self.model.get_weights()]


class TicketSearch(list):
    """The rows of :func:`find_winning_ticket`, one per round, and what
    each round found: its masks, its trained model, its untrained ticket.

    >>> search = TicketSearch(lambda seed: None, 0, [np.zeros(2)])
    >>> search.record({"round": 0}, [np.ones((2, 2))], [np.ones(2)])
    >>> search.masks(0)[0].dtype, len(search)
    (dtype('bool'), 1)
    """

    def __init__(self, model_fn, seed, rewind_weights):
        super().__init__()
        self.model_fn, self.seed = model_fn, seed
        self.rewind_weights = rewind_weights
        self.round_masks, self.trained_weights = [], []

    def record(self, row, masks, trained_weights):
        self.append(row)
        self.round_masks.append([np.asarray(m) > 0 for m in masks])
        self.trained_weights.append(trained_weights)

    def _check(self, round):
        if isinstance(round, bool) or not isinstance(
                round, (int, np.integer)) or not 0 <= round < len(self):
            raise InputError(f"round {round!r} is not one of the search's: "
                             f"0 to {len(self) - 1}")
        return int(round)

    def masks(self, round):
        """Boolean masks of ``round`` (True: kept), one per prunable
        weight in layer order (round 0 keeps every weight)."""
        return self.round_masks[self._check(round)]

    def model(self, round):
        """A new ``model_fn`` model holding the weights ``round`` trained
        to: sparse where its masks are, ready to convert."""
        model = self.model_fn(self.seed)
        model.set_weights(self.trained_weights[self._check(round)])
        return model

    def ticket(self, round):
        """The untrained ticket of ``round``: a new model at the weights
        the search rewinds to, masked. Train it with
        ``callbacks=[search.keep_masked(ticket, round)]``."""
        masks = self.masks(round)
        model = self.model_fn(self.seed)
        model.set_weights(self.rewind_weights)
        for kernel, mask in zip(_prunable_kernels(model), masks):
            kernel.assign(np.asarray(kernel) * mask)
        return model

    def keep_masked(self, model, round):
        """A callback keeping ``model``'s pruned weights at zero while it
        trains (``model`` is one of :meth:`ticket` or :meth:`model`)."""
        return KeepMasked(_prunable_kernels(model),
                          [m.astype(np.float32) for m in self.masks(round)])


def _prunable_kernels(model):
    """Every prunable weight of every built prunable layer (a recurrent
    layer's input and recurrent kernels, MultiHeadAttention's four), in
    layer order: the last one is the output layer's."""
    out = []
    for layer in iter_layers(model):
        if is_prunable(layer) and layer.built:
            out.extend(get_prunable_weights(layer))
    return out


def next_masks(kernels, masks, fraction, scope="layer", output_rate=0.5):
    """Prunes ``fraction`` of the remaining weights (the last kernel at
    ``fraction * output_rate``), by magnitude per layer or globally."""
    values = [np.abs(np.asarray(k)) for k in kernels]
    new = [m.copy() for m in masks]
    rates = [fraction] * (len(kernels) - 1) + [fraction * output_rate]
    if scope == "layer":
        for i, (v, m) in enumerate(zip(values, masks)):
            alive = v[m > 0]
            k = int(round(alive.size * rates[i]))
            if k:
                thr = np.partition(alive, k - 1)[k - 1]
                new[i] = np.where((v <= thr) & (m > 0), 0.0, m)
        return new
    if scope != "global":
        raise InputError(f"scope must be 'layer' or 'global', got {scope!r}")
    body = list(range(len(kernels) - 1)) or [0]
    alive = np.concatenate([values[i][masks[i] > 0] for i in body])
    k = int(round(alive.size * fraction))
    if k:
        thr = np.partition(alive, k - 1)[k - 1]
        for i in body:
            new[i] = np.where((values[i] <= thr) & (masks[i] > 0), 0.0,
                              masks[i])
    if len(kernels) > 1:
        last = len(kernels) - 1
        new[last] = next_masks([kernels[last]], [masks[last]],
                               rates[last], "layer", 1.0)[0]
    return new


def find_winning_ticket(model_fn, train_fn, rounds=5,
                        prune_fraction_per_round=0.2, rewind_step=0,
                        scope="layer", output_rate=0.5, random_control=True,
                        seed=0):
    """Iterative magnitude pruning with rewinding; returns one row per round.

    Args:
      model_fn: ``model_fn(seed) -> compiled model``; the same seed must
        give the same initial weights.
      train_fn: ``train_fn(model, callbacks) -> dict`` that trains with the
        given callbacks and returns at least ``accuracy`` (and optionally
        ``early_stop_iteration``).
      rounds: pruning rounds after the dense run.
      prune_fraction_per_round: fraction of remaining weights removed.
      rewind_step: 0 rewinds to the initial weights; k > 0 to the weights
        after k training batches of the dense run (late rewinding; an
        ``InputError`` when the dense run trains fewer batches).
      scope: ``layer`` or ``global`` magnitude ranking.
      random_control: also train a random re-initialisation with the same
        masks each round.

    Returns:
      A :class:`TicketSearch`: a list of dicts, ``round``, ``remaining``
      (fraction of prunable weights), ``accuracy``, ``control_accuracy``
      and what ``train_fn`` reported; and per round its masks
      (``masks(r)``), its trained sparse model (``model(r)``) and its
      untrained ticket (``ticket(r)``, trained again with
      ``keep_masked(ticket, r)``).
    """
    for name, fn in (("model_fn", model_fn), ("train_fn", train_fn)):
        if not callable(fn):
            raise InputError(f"find_winning_ticket: {name} must be a "
                             f"function, got {type(fn).__name__}")
    check_counts("find_winning_ticket", minimum=0, rounds=rounds, seed=seed)
    check_flags("find_winning_ticket", random_control=random_control)
    if not is_number(prune_fraction_per_round) or \
            not 0 < prune_fraction_per_round < 1:
        raise InputError(f"prune_fraction_per_round must be in (0, 1), "
                         f"got {prune_fraction_per_round!r:.40}")
    if scope not in ("layer", "global"):
        # checked before the dense run, not after it
        raise InputError(f"scope must be 'layer' or 'global', got {scope!r}")
    if not is_number(output_rate) or not 0 <= output_rate <= 1:
        raise InputError(f"output_rate must be in [0, 1] (the output "
                         f"layer's share of the pruning rate), got "
                         f"{output_rate!r}")
    if isinstance(rewind_step, bool) or not isinstance(
            rewind_step, (int, np.integer)) or rewind_step < 0:
        raise InputError(f"rewind_step must be an integer >= 0 (0 rewinds "
                         f"to the initial weights), got {rewind_step!r}")
    model = model_fn(seed)
    if not isinstance(model, keras.Model):
        raise InputError(f"find_winning_ticket: model_fn(seed) must return "
                         f"a compiled Keras model, returned "
                         f"{type(model).__name__}")
    kernels = _prunable_kernels(model)
    if not kernels:
        raise InputError("the model has no prunable layer (Conv/Dense or a "
                         "tfcompress.prune.PrunableLayer); give a model "
                         "that has one")
    masks = [np.ones(k.shape, np.float32) for k in kernels]
    init = [np.array(w) for w in model.get_weights()]
    keep = KeepMasked(kernels, masks, record_step=rewind_step)
    dense = train_fn(model, [keep])
    if rewind_step and keep.recorded is None:
        raise InputError(f"rewind_step={rewind_step}, but the dense run "
                         f"trained {keep._batches} batches; pass a "
                         f"rewind_step of at most {keep._batches} (0 "
                         "rewinds to the initial weights)")
    rewind = keep.recorded if rewind_step else init
    total = sum(m.size for m in masks)
    rows = TicketSearch(model_fn, seed, rewind)
    rows.record({"round": 0, "remaining": 1.0, **dense,
                 "control_accuracy": None}, masks, model.get_weights())
    for r in range(1, rounds + 1):
        masks = next_masks(kernels, masks, prune_fraction_per_round, scope,
                           output_rate)
        model = model_fn(seed)
        model.set_weights(rewind)
        kernels = _prunable_kernels(model)
        row = {"round": r,
               "remaining": round(sum(float(m.sum()) for m in masks) /
                                  total, 4)}
        row.update(train_fn(model, [KeepMasked(kernels, masks)]))
        trained = model.get_weights()
        if random_control:
            control = model_fn(seed + 1000 + r)
            control_kernels = _prunable_kernels(control)
            row["control_accuracy"] = train_fn(
                control, [KeepMasked(control_kernels, masks)])["accuracy"]
        rows.record(row, masks, trained)
    return rows
