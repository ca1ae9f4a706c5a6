"""Allowed values of the conversion options: the one list that ``convert``,
the recipe schema and the ``tfcompress convert`` flags all use.

>>> "int16x8" in MODES, io_types_for("int16x8")
(True, ('float32', 'int16'))
"""

from __future__ import annotations

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")
# modes whose activations are integer: only these take integer I/O types
INTEGER_MODES = ("int8", "int16x8")
IO_TYPES = ("float32", "int8", "uint8", "int16")
CALIBRATIONS = ("minmax", "percentile", "entropy")

_IO_TYPES_BY_MODE = {"int8": ("float32", "int8", "uint8"),
                     "int16x8": ("float32", "int16")}


def io_types_for(mode: str) -> tuple:
    """Input/output types TFLite accepts with ``mode``.

    >>> io_types_for("int8")
    ('float32', 'int8', 'uint8')
    >>> io_types_for("dynamic")  # float activations: float I/O only
    ('float32',)
    >>> all("float32" in io_types_for(m) for m in MODES)
    True
    """
    return _IO_TYPES_BY_MODE.get(mode, ("float32",))
