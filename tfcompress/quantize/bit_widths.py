"""Weight bit widths per layer, and which layers TFLite can store in 4 bits.

TF 2.21's converter stores a kernel fake-quantized to 4 bits or fewer as a
packed INT4 tensor (two weights per byte); kernels of 5 to 8 bits are INT8
tensors with fewer levels. Only some ops have an INT4 kernel in TFLite
(measured with ``benchmarks/int4_ops.py``, table in docs/quantization.md):
a layer asked for 4 bits or fewer whose op has none is kept at 8 bits, and
``quantize.summary`` says so.

>>> import keras
>>> weight_bits_for(keras.layers.Dense(4), 4)
(4, None)
>>> weight_bits_for(keras.layers.Conv2DTranspose(4, 3), 4)[0]
8
"""

from __future__ import annotations

import numbers

from keras import layers as L

from tfcompress.errors import InputError

# Largest weight bit width TFLite stores packed (INT4); above it INT8.
PACKED_MAX_BITS = 4

# Keras layer -> the TFLite op its kernel lands in, and whether that op
# takes a packed INT4 filter (TF 2.21 converter, LiteRT 2.3 kernels).
TFLITE_OP = {
    L.Dense: "FULLY_CONNECTED",
    L.Conv1D: "CONV_2D",
    L.Conv2D: "CONV_2D",
    L.DepthwiseConv2D: "DEPTHWISE_CONV_2D",
    L.SeparableConv1D: "DEPTHWISE_CONV_2D + CONV_2D",
    L.SeparableConv2D: "DEPTHWISE_CONV_2D + CONV_2D",
    L.Conv2DTranspose: "TRANSPOSE_CONV",
}
# TRANSPOSE_CONV: the converter refuses an INT4 filter ("operand #1 must
# be ... QI8 ... but got i4"); conversion fails outright.
NO_INT4_KERNEL = (L.Conv2DTranspose,)


def tflite_op(layer) -> str:
    """The TFLite op ``layer``'s kernel is stored for."""
    for cls in type(layer).__mro__:
        if cls in TFLITE_OP:
            return TFLITE_OP[cls]
    return type(layer).__name__


def weight_bits_for(layer, requested):
    """``(bits, note)``: the weight bits ``layer`` gets when ``requested``
    bits are asked for; ``note`` says why they differ (else None)."""
    if requested <= PACKED_MAX_BITS and isinstance(layer, NO_INT4_KERNEL):
        return 8, (f"kept 8-bit: TFLite has no INT4 kernel for "
                   f"{tflite_op(layer)} (asked for {requested} bits)")
    return requested, None


def check_bits(bits, what="weight bits"):
    """``bits`` as an int; InputError unless it is an integer (a NumPy
    integer too) in [2, 8]."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or \
            not 2 <= bits <= 8:
        raise InputError(f"{what} must be an integer between 2 and 8 "
                         f"(TFLite stores INT4 or INT8), got {bits!r}")
    return int(bits)


def check_layer_bits(layer_bits, valid_names):
    """Validates ``{layer_name: bits}`` against the names of the layers
    whose weights QAT quantizes; returns a plain dict."""
    if layer_bits is None:
        return {}
    if not isinstance(layer_bits, dict):
        raise InputError(f"layer_bits must be a dict of layer name -> "
                         f"bits, e.g. {{'fc1': 4}}, got "
                         f"{type(layer_bits).__name__}")
    unknown = sorted(str(n) for n in layer_bits if n not in valid_names)
    if unknown:
        raise InputError(
            f"layer_bits names {len(unknown)} layer(s) with no quantized "
            f"weights in this model: {', '.join(unknown)}; valid names: "
            f"{', '.join(sorted(valid_names)) or '(none)'}")
    return {name: check_bits(bits, f"layer_bits[{name!r}]")
            for name, bits in layer_bits.items()}
