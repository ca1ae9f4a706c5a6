"""The weight quantization grid TFLite uses, so tfcompress can quantize
(or place) a kernel exactly as the converter will.

Weights are symmetric and narrow range: ``q = round(w / s)`` with ``q`` in
``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` and ``s = max|w| / (2**(bits-1)
- 1)`` over each output channel (per-channel) or the whole kernel
(per-tensor). Output channels are the last kernel axis of Conv2D and
Dense, and ``in_channels * multiplier`` of DepthwiseConv2D. Dense kernels
are per-tensor in 4-bit (fake-quant) models, as the quantization-aware
layers write them.

>>> import numpy as np
>>> w = np.array([[0.5, -1.0], [0.25, 2.0]], "float32")
>>> integers(w, grid_scale(w, 8, per_channel=True), 8).tolist()
[[127, -64], [64, 127]]
"""

from __future__ import annotations

import numpy as np

WEIGHT_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


def qmax(bits: int) -> int:
    """Largest integer of the narrow-range symmetric grid."""
    return 2 ** (bits - 1) - 1


def channel_view(kernel: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """The kernel as ``(..., output_channels)``."""
    if depthwise:
        h, w, c, m = kernel.shape
        return kernel.reshape(h, w, c * m)
    return kernel


def grid_scale(kernel, bits: int, per_channel: bool,
               depthwise: bool = False) -> np.ndarray:
    """Scale(s) the converter computes: shape broadcastable to ``kernel``."""
    view = np.abs(channel_view(np.asarray(kernel, np.float32), depthwise))
    if per_channel:
        m = view.reshape(-1, view.shape[-1]).max(axis=0)
    else:
        m = np.full(view.shape[-1], view.max())
    s = np.maximum(m, 1e-30) / qmax(bits)
    return s.reshape(kernel.shape[-2:]) if depthwise else s


def integers(kernel, scale, bits: int) -> np.ndarray:
    """Nearest-rounded integers of ``kernel`` on the grid (int32), ties
    away from zero as TFLite rounds."""
    x = np.asarray(kernel, np.float64) / scale
    q = np.sign(x) * np.floor(np.abs(x) + 0.5)     # half away from zero
    return np.clip(q, -qmax(bits), qmax(bits)).astype(np.int32)


def quantize_nearest(kernel, bits: int, per_channel: bool,
                     depthwise: bool = False) -> np.ndarray:
    """``kernel`` rounded to nearest on the grid, as float32."""
    s = grid_scale(kernel, bits, per_channel, depthwise)
    return (integers(kernel, s, bits) * s).astype(np.float32)


def layer_per_channel(layer, bits: int, per_channel: bool) -> bool:
    """Whether ``layer``'s kernel gets per-channel scales when converted:
    post-training int8 (``bits == 8``) quantizes Dense per channel too;
    fake-quant (4-bit) Dense layers are per-tensor."""
    if not per_channel:
        return False
    return not (bits < 8 and type(layer).__name__ == "Dense")
