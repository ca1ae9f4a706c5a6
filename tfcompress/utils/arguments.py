"""Checks of the arguments users pass: counts (samples, batch sizes,
steps), numbers, on/off flags and layer names. Each raises a one-line
InputError naming the argument and what it takes.

>>> check_counts("example", samples=None, batch_size=32, optional=("samples",))
>>> check_counts("example", batch_size=None)
Traceback (most recent call last):
...
tfcompress.errors.InputError: example: batch_size must be an integer of at least 1, got None
>>> sorted(layer_names("fc1", "exclude", "example"))
['fc1']
"""

from __future__ import annotations

import math
import numbers
import os

from tfcompress.errors import InputError


def check_counts(what: str, optional=(), minimum=1, **counts):
    """InputError unless each of ``counts`` is an integer (a NumPy integer
    too, not a bool) of at least ``minimum``; the names in ``optional``
    may also be None (e.g. ``samples=None``: all of them)."""
    for name, value in counts.items():
        if value is None and name in optional:
            continue
        if isinstance(value, bool) or not isinstance(
                value, numbers.Integral) or value < minimum:
            raise InputError(f"{what}: {name} must be an integer of at "
                             f"least {minimum}, got {value!r:.40}")


def is_number(value) -> bool:
    """A finite real number (a NumPy one too), not a bool.

    >>> is_number(0.5), is_number(True), is_number("1"), is_number(float("nan"))
    (True, False, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_flags(what: str, **flags):
    """InputError unless each of ``flags`` is True or False (a NumPy bool
    too): ``per_channel="no"`` or ``None`` would read as on or off.

    >>> check_flags("example", per_channel=1)
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: example: per_channel must be True or False, got 1
    """
    for name, value in flags.items():
        if type(value).__name__ not in ("bool", "bool_"):
            raise InputError(f"{what}: {name} must be True or False, got "
                             f"{value!r:.60}")


def check_path(what: str, name: str, value, kind="file", example=""):
    """InputError unless ``value`` is a path (a string or ``os.PathLike``);
    ``kind`` (file or folder) and ``example`` word the message.

    >>> check_path("example", "output_path", 3, example="model.tflite")
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: example: output_path must be a file path such as 'model.tflite', got int 3
    """
    if not isinstance(value, (str, os.PathLike)):
        such_as = f" such as {example!r}" if example else ""
        raise InputError(f"{what}: {name} must be a {kind} path{such_as}, "
                         f"got {type(value).__name__} {value!r:.40}")


def check_model(model, what: str, layers_too=False, hint=""):
    """InputError unless ``model`` is a Keras model (or, with
    ``layers_too``, a Keras layer); ``hint`` ends the message.

    >>> check_model(None, "example")
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: example takes a Keras model, got NoneType
    """
    import keras
    kind = keras.layers.Layer if layers_too else keras.Model
    if not isinstance(model, kind):
        raise InputError(f"{what} takes a Keras model"
                         f"{' or layer' if layers_too else ''}, got "
                         f"{type(model).__name__}{hint}")


def layer_names(value, option: str, what: str):
    """``value`` (one layer name, or a list, tuple or set of names) as a
    set of names; None stays None.

    >>> layer_names(["a", "b"], "include", "example") == {"a", "b"}
    True
    >>> layer_names(3, "include", "example")
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: example: include takes layer names (a name or a list of names), got 3; model.summary() lists them
    """
    if value is None:
        return None
    if isinstance(value, str):
        return {value}
    if not isinstance(value, (list, tuple, set, frozenset)) or \
            not all(isinstance(n, str) for n in value):
        raise InputError(f"{what}: {option} takes layer names (a name or a "
                         f"list of names), got {value!r:.80}; "
                         "model.summary() lists them")
    return set(value)
