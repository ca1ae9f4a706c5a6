"""Fake-quantization ops the TFLite converter understands.

Weights: symmetric, narrow range (zero is exactly representable), per
output channel or per tensor, ranges from the current weights. Activations:
asymmetric per tensor, ranges tracked by exponential moving average while
training (of each batch's min and max, or of a percentile of it) and
frozen at inference. The ops are TensorFlow's
``fake_quant_with_min_max_vars*``, whose gradient is the straight-through
estimator (1 inside the range, 0 outside).

>>> import numpy as np
>>> w = np.array([[0.5, -1.0], [0.25, 2.0]], "float32")
>>> q = quantize_weights(w, bits=8, per_channel=True).numpy()
>>> bool(np.abs(q - w).max() < 2.0 / 127)
True
"""

from __future__ import annotations

import tensorflow as tf

from tfcompress.quantize import int8_rounding


def weight_range(w, per_channel=True, channel_axis=-1):
    """The symmetric range ``m`` (fake quant over ``[-m, m]``) of a kernel:
    its largest magnitude per ``channel_axis`` channel, or over the whole
    tensor, at least 1e-8.

    >>> import numpy as np
    >>> w = np.array([[0.5, -1.0], [0.25, 2.0]], "float32")
    >>> weight_range(w).numpy().tolist(), float(weight_range(w, False))
    ([0.5, 2.0], 2.0)
    """
    w = tf.convert_to_tensor(w)
    if not per_channel:
        return tf.maximum(tf.reduce_max(tf.abs(w)), 1e-8)
    axis = channel_axis % len(w.shape)
    axes = [a for a in range(len(w.shape)) if a != axis]
    return tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), 1e-8)


def quantize_weights(w, bits=8, per_channel=True):
    """Symmetric narrow-range fake quantization of a kernel.

    Per-channel ranges are taken over all axes but the last (the output
    channels of Conv and Dense kernels).
    """
    w = tf.convert_to_tensor(w)
    m = weight_range(w, per_channel)
    if per_channel:
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(
            w, -m, m, num_bits=bits, narrow_range=True)
    return tf.quantization.fake_quant_with_min_max_vars(
        w, -m, m, num_bits=bits, narrow_range=True)


def activation_step(lo, hi, bits=8):
    """The quantization step of an activation range ``[lo, hi]``.

    >>> activation_step(-1.0, 254.0)
    1.0
    """
    return (hi - lo) / float(2 ** bits - 1)


def quantize_activations(x, min_var, max_var, bits=8):
    """Asymmetric fake quantization with the stored range (rounded exactly
    inside :func:`tfcompress.quantize.device_rounding`)."""
    y = tf.quantization.fake_quant_with_min_max_vars(
        tf.cast(x, tf.float32), min_var, max_var, num_bits=bits,
        narrow_range=False)
    if int8_rounding.active():
        return int8_rounding.round_activations(x, min_var, max_var, bits,
                                                 y)
    return y


def batch_range(x, percentile=None):
    """The ``(min, max)`` of a batch, or with ``percentile`` (in (50, 100])
    the values that many percent of ``x`` lie above and below: a range that
    leaves out the rarest outliers, so the int8 steps are finer for the
    rest (as ``convert(calibration="percentile")`` does after training).

    >>> import numpy as np
    >>> x = np.r_[np.linspace(-1, 1, 999), 50.0].astype("float32")
    >>> [round(float(v), 2) for v in batch_range(x)]
    [-1.0, 50.0]
    >>> [round(float(v), 2) for v in batch_range(x, 99.0)]
    [-0.98, 0.98]
    """
    x = tf.convert_to_tensor(x, tf.float32)
    if percentile is None or percentile >= 100:
        return tf.reduce_min(x), tf.reduce_max(x)
    # the k-th largest and smallest values: k = the share left out
    left_out = 1.0 - percentile / 100.0
    size = tf.cast(tf.size(x), tf.float32)
    k = tf.maximum(1, tf.cast(size * left_out, tf.int32))
    width = x.shape[-1] if x.shape.rank and x.shape.rank > 1 else None
    if width is None or width * left_out > 1.0:
        flat = tf.reshape(x, [-1])
        return (-tf.reduce_min(tf.math.top_k(-flat, k, sorted=False).values),
                tf.reduce_min(tf.math.top_k(flat, k, sorted=False).values))
    rows = tf.reshape(x, [-1, width])
    return _kth_smallest(rows, k), _kth_largest(rows, k)


def _kth_largest(rows, k):
    """The k-th largest value of ``rows`` (at least k of them), searching
    only the k rows with the largest maxima: every value above the k-th
    largest row maximum lies in one of them, and they hold k values at
    least that large, so the k-th largest value is among them."""
    best = tf.math.top_k(tf.reduce_max(rows, 1), k, sorted=False).indices
    candidates = tf.reshape(tf.gather(rows, best), [-1])
    return tf.reduce_min(tf.math.top_k(candidates, k, sorted=False).values)


def _kth_smallest(rows, k):
    """:func:`_kth_largest` from the other end."""
    best = tf.math.top_k(-tf.reduce_min(rows, 1), k, sorted=False).indices
    candidates = tf.reshape(tf.gather(rows, best), [-1])
    return -tf.reduce_min(tf.math.top_k(-candidates, k,
                                        sorted=False).values)


def update_range(x, min_var, max_var, seen_var, decay=0.999,
                 percentile=None):
    """EMA update of an activation range from a training batch.

    The first batch sets the range; later batches move it by ``1 - decay``.
    Each batch's range is its min and max, or with ``percentile`` the
    range :func:`batch_range` gives. The range always contains 0 so zero
    is exactly representable. Under tf.distribute the batch minimum and
    maximum are taken over all replicas (on every worker), so every
    replica keeps the same range: the one a single device would compute
    from the whole global batch (with ``percentile``: the widest of the
    replicas' ranges). As in tfmot, no gradient flows from the range back
    into ``x``: the batch only moves the stored range.
    """
    batch_min, batch_max = batch_range(tf.stop_gradient(x), percentile)
    batch_min = tf.minimum(batch_min, 0.0)
    batch_max = tf.maximum(batch_max, 0.0)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        both = ctx.all_gather(tf.stack([batch_min, batch_max])[None], 0)
        batch_min = tf.reduce_min(both[:, 0])
        batch_max = tf.reduce_max(both[:, 1])
    first = tf.equal(seen_var, 0)
    new_min = tf.where(first, batch_min,
                       min_var * decay + batch_min * (1 - decay))
    new_max = tf.where(first, batch_max,
                       max_var * decay + batch_max * (1 - decay))
    new_max = tf.maximum(new_max, new_min + 1e-6)
    return new_min, new_max
