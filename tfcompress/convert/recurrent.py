"""Recurrent layers and integer conversion.

A recurrent layer (LSTM, GRU, SimpleRNN, ConvLSTM, ... any ``RNN``) that
is not unrolled becomes a TFLite WHILE loop, and TensorFlow 2.21's
calibrator crashes the Python process (segmentation fault) when it runs
one to collect int8 or int16x8 ranges, post-training or QAT alike. So
``convert`` refuses that case up front with the fix instead of taking the
user's process down: ``unroll=True`` (fixed sequence length) converts to
plain integer ops; ``mode="dynamic"`` (int8 weights, float activations)
or ``float16`` keep the loop. Float modes convert the loop when the
input has a fixed batch size (``keras.Input(..., batch_size=1)``).

>>> import keras
>>> model = keras.Sequential([keras.Input((8, 4)),
...                           keras.layers.GRU(3, name="encoder")])
>>> [layer.name for layer in looping_recurrent_layers(model)]
['encoder']
"""

from __future__ import annotations

from tfcompress.errors import InputError


def _is_recurrent(layer) -> bool:
    return any(c.__name__ == "RNN" for c in type(layer).__mro__)


def _children(layer):
    children = list(getattr(layer, "layers", None) or [])
    for name in ("layer", "forward_layer", "backward_layer"):
        child = getattr(layer, name, None)
        if child is not None and hasattr(child, "get_config"):
            children.append(child)
    return children


def looping_recurrent_layers(model) -> list:
    """The recurrent layers of ``model`` (nested models and wrappers such as
    ``Bidirectional`` included) that are not unrolled."""
    found, stack, seen = [], list(_children(model)), set()
    while stack:
        layer = stack.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if _is_recurrent(layer) and not getattr(layer, "unroll", False):
            found.append(layer)
        stack.extend(_children(layer))
    return found


def check_integer_conversion(model, mode: str) -> None:
    """Raises InputError if ``mode`` needs calibration through a recurrent
    loop of ``model`` (see the module docstring)."""
    if mode not in ("int8", "int16x8"):
        return
    loops = looping_recurrent_layers(model)
    if loops:
        names = ", ".join(f"{l.name} ({type(l).__name__})" for l in loops)
        raise InputError(
            f"mode {mode}: recurrent layer(s) {names} would convert to a "
            "TFLite WHILE loop, and TensorFlow's int8 calibrator crashes on "
            "it; build them with unroll=True (fixed sequence length), or "
            "convert with mode='dynamic' (int8 weights, float activations)")
