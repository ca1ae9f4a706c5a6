"""The validation split ``tune`` measures on: the last samples of the
training split, never the test split.

>>> fit, val = validation_split(1200)
>>> (fit.start, fit.stop), (val.start, val.stop)
((0, 1000), (1000, 1200))
"""

from __future__ import annotations

from tfcompress.errors import InputError


def validation_samples(n_train, val_samples=None):
    """How many training samples to hold out: ``val_samples`` or a sixth
    of the training split, at least 100 and at most 5000."""
    if val_samples is None:
        val_samples = min(5000, max(100, n_train // 6))
    if not 0 < val_samples < n_train:
        raise InputError(f"validation samples must be between 1 and "
                         f"{n_train - 1} (the training split has {n_train}); "
                         f"got {val_samples}: pass fewer val_samples or "
                         "more training data")
    return val_samples


def validation_split(n_train, val_samples=None):
    """``(fit, val)`` slices of the training split: the model is fine-tuned
    on ``fit`` and every candidate is measured on ``val`` (the last
    ``val_samples``). A recipe with ``data.train_samples = fit.stop``
    trains on exactly ``fit``."""
    n_val = validation_samples(n_train, val_samples)
    return slice(0, n_train - n_val), slice(n_train - n_val, n_train)
