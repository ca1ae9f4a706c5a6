"""Checks of the counts a user passes (samples, batch sizes, steps).

>>> check_counts("example", samples=None, batch_size=32, optional=("samples",))
>>> check_counts("example", batch_size=None)
Traceback (most recent call last):
...
tfcompress.errors.InputError: example: batch_size must be an integer of at least 1, got None
"""

from __future__ import annotations

import numbers

from tfcompress.errors import InputError


def check_counts(what: str, optional=(), **counts):
    """InputError unless each of ``counts`` is an integer (a NumPy integer
    too, not a bool) of at least 1; the names in ``optional`` may also be
    None (e.g. ``samples=None``: all of them)."""
    for name, value in counts.items():
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(
                value, numbers.Integral) or value < 1:
            raise InputError(f"{what}: {name} must be an integer of at "
                             f"least 1, got {value!r}")
