"""AdaRound: learned rounding of weights onto the converter's grid."""

from __future__ import annotations


def adaround(model, data, bits: int = 8, per_channel: bool = True,
             iterations: int = 500):
    """A new model whose kernels lie on the ``bits``-bit quantization grid
    (placeholder)."""
    raise NotImplementedError("adaround")


def for_conversion(model, data, bits: int = 4, per_channel: bool = True):
    """``model`` wrapped so ``convert`` writes ``bits``-bit weights
    (placeholder)."""
    raise NotImplementedError("for_conversion")
