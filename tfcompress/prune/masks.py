"""Mask computation: which weights to keep for a target sparsity.

Pure TensorFlow functions over tensors (no layers, no state); the
sparsity may be a Python float or a scalar tensor, so they run inside
``tf.function`` on the step the schedule computes:

- ``magnitude_mask``: unstructured, keep the largest ``|w|`` (tfmot's rule);
- ``block_mask``: rank blocks (e.g. 1x4) by mean ``|w|``, keep whole blocks;
- ``n_of_m_mask``: N:M structured sparsity (e.g. 2:4) along the input
  channel axis; it follows the schedule (see its docstring);
- ``global_masks``: one magnitude threshold across several weights, with a
  minimum density per weight so that no layer is emptied.

>>> import numpy as np
>>> w = np.array([[0.1, -0.9], [0.5, 0.05]], "float32")
>>> mask, threshold = magnitude_mask(w, 0.5)
>>> mask.numpy().tolist()
[[0.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from tfcompress.errors import InputError


def keep_count(size, sparsity):
    """How many of ``size`` weights survive ``sparsity`` (tfmot's rounding:
    ``max(round(size * (1 - sparsity)), 1)`` in float32), as int32 tensor."""
    size_f = tf.cast(size, tf.float32)
    sparsity = tf.cast(sparsity, tf.float32)
    k = tf.math.maximum(tf.math.round(size_f * (1.0 - sparsity)), 1.0)
    return tf.cast(k, tf.int32)


def magnitude_mask(weight, sparsity):
    """Mask keeping the ``round(n * (1 - sparsity))`` largest ``|w|``.

    Ties at the threshold are kept (as in tfmot).

    Returns:
      ``(mask, threshold)``: a 0/1 mask of ``weight``'s dtype and the
      smallest kept magnitude.

    >>> w = np.array([[0.3, -0.1, 0.8], [-0.6, 0.05, 0.2]], "float32")
    >>> mask, threshold = magnitude_mask(w, 2 / 3)  # keep 2 of 6
    >>> mask.numpy().astype(int).tolist(), round(float(threshold), 2)
    ([[0, 0, 1], [1, 0, 0]], 0.6)
    >>> mask, _ = magnitude_mask(np.full((2, 2), 0.5, "float32"), 0.5)
    >>> int(mask.numpy().sum())  # ties at the threshold are kept
    4
    """
    w = tf.convert_to_tensor(weight)
    abs_w = tf.abs(w)
    flat = tf.reshape(abs_w, [-1])
    k = keep_count(tf.size(flat), sparsity)
    ordered = tf.sort(flat, direction="DESCENDING")
    threshold = tf.gather(ordered, k - 1)
    return tf.cast(abs_w >= threshold, w.dtype), threshold


def _as_matrix(shape):
    """How a kernel is viewed as a 2-D (rows, cols) matrix for blocks."""
    if len(shape) == 1:
        return (1, int(shape[0]))
    return (int(np.prod(shape[:-1])), int(shape[-1]))


def block_count(shape, block_size) -> int:
    """How many ``block_size`` blocks a weight of ``shape`` is ranked in
    (edges that do not fill a block count as blocks).

    >>> block_count((8, 16), (1, 4)), block_count((3, 3, 2, 8), (16, 4))
    (32, 4)
    """
    rows, cols = _as_matrix(shape)
    br, bc = (int(b) for b in block_size)
    return -(-rows // br) * -(-cols // bc)


def block_fits(shape, block_size) -> bool:
    """False if ``block_size`` spans a whole weight of ``shape`` (one
    block, which ranking always keeps).

    >>> block_fits((8, 16), (1, 4)), block_fits((8, 2), (16, 4))
    (True, False)
    """
    block_size = tuple(int(b) for b in block_size)
    return block_size == (1, 1) or block_count(shape, block_size) > 1


def check_block_fits(shape, block_size, layer_name, weight_name="kernel"):
    """Refuses a ``block_size`` that spans the whole weight: one block,
    which ranking always keeps, so nothing would ever be pruned.

    >>> check_block_fits((8, 2), (16, 4), "fc")
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: layer 'fc': block_size (16, 4) spans all of kernel (shape (8, 2), viewed as 8x2), so no block can be pruned; use a smaller block_size or exclude the layer
    """
    if block_fits(shape, block_size):
        return
    block_size = tuple(int(b) for b in block_size)
    rows, cols = _as_matrix(shape)
    raise InputError(
        f"layer {layer_name!r}: block_size {block_size} spans all of "
        f"{weight_name} (shape {tuple(int(d) for d in shape)}, viewed as "
        f"{rows}x{cols}), so no block can be pruned; use a smaller "
        "block_size or exclude the layer")


def check_block_pooling(pooling) -> str:
    """``"AVG"`` or ``"MAX"`` (any case), else InputError."""
    name = str(pooling).upper()
    if name not in ("AVG", "MAX"):
        raise InputError(f"block_pooling_type must be 'AVG' or 'MAX', got "
                         f"{pooling!r}")
    return name


def block_mask(weight, sparsity, block_size=(1, 1), pooling="AVG"):
    """Mask keeping whole ``block_size`` blocks ranked by mean ``|w|``
    (``pooling="AVG"``, tfmot's default) or largest ``|w|`` (``"MAX"``).

    Kernels of rank > 2 are viewed as (prod(shape[:-1]), out_channels), so a
    ``(1, 4)`` block spans 4 output channels of one input position. Edges
    that do not fill a block form smaller blocks.

    >>> w = np.arange(1, 9, dtype="float32").reshape(2, 4)
    >>> block_mask(w, 0.5, (1, 4))[0].numpy().tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    >>> w = np.array([[7, 0, 0, 0], [2, 2, 2, 2]], "float32")
    >>> block_mask(w, 0.5, (1, 4))[0].numpy()[:, 0].tolist()  # mean
    [0.0, 1.0]
    >>> block_mask(w, 0.5, (1, 4), "MAX")[0].numpy()[:, 0].tolist()
    [1.0, 0.0]
    """
    pooling = check_block_pooling(pooling)
    block_size = tuple(int(b) for b in block_size)
    w = tf.convert_to_tensor(weight)
    if block_size == (1, 1):
        return magnitude_mask(w, sparsity)
    rows, cols = _as_matrix(w.shape)
    br, bc = block_size
    pr, pc = (-rows) % br, (-cols) % bc
    mat = tf.reshape(tf.abs(w), (rows, cols))
    padded = tf.pad(mat, [[0, pr], [0, pc]])
    counts = tf.pad(tf.ones_like(mat), [[0, pr], [0, pc]])
    shape = ((rows + pr) // br, br, (cols + pc) // bc, bc)
    if pooling == "MAX":   # |w| >= 0, so the padding never wins
        score = tf.reduce_max(tf.reshape(padded, shape), axis=(1, 3))
    else:
        score = (tf.reduce_sum(tf.reshape(padded, shape), axis=(1, 3))
                 / tf.reduce_sum(tf.reshape(counts, shape), axis=(1, 3)))
    block_keep, threshold = magnitude_mask(score, sparsity)
    full = tf.repeat(tf.repeat(block_keep, br, axis=0), bc, axis=1)
    return tf.reshape(full[:rows, :cols], w.shape), threshold


def n_of_m_mask(weight, n=2, m=4, axis=-2, sparsity=1.0):
    """N:M mask along ``axis`` (the input channels), following a schedule.

    In each group of ``m`` consecutive weights along ``axis`` the ``m - n``
    smallest ``|w|`` are candidates for pruning. At ``sparsity >= (m-n)/m``
    all candidates are pruned: exactly ``n`` of every ``m`` weights remain.
    Below that, only the smallest ``sparsity / ((m-n)/m)`` fraction of the
    candidates (ranked across the whole weight) is pruned, so the measured
    sparsity follows the schedule and ends on the exact N:M pattern.

    ``axis`` is 0 for a Dense kernel (in, out) and -2 for a Conv kernel
    (h, w, in, out).

    >>> w = np.array([[4.0], [1.0], [3.0], [2.0]], "float32")
    >>> n_of_m_mask(w, 2, 4, axis=0).numpy().ravel().tolist()
    [1.0, 0.0, 1.0, 0.0]

    Raises:
      ValueError: if the axis length is not a multiple of ``m``.
    """
    if not 0 < n < m:
        raise InputError(f"sparsity_m_by_n needs 0 < N < M, got {n}:{m}")
    w = tf.convert_to_tensor(weight)
    rank = len(w.shape)
    axis = axis % rank
    length = int(w.shape[axis])
    if length % m:
        raise InputError(
            f"N:M sparsity needs the input-channel axis ({length}) to be a "
            f"multiple of M={m}; choose another M or exclude the layer")
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = tf.abs(tf.transpose(w, perm))
    groups = tf.reshape(moved, (-1, m))
    # rank inside each group: the n largest are kept (earlier index wins ties)
    order = tf.argsort(groups, axis=-1, direction="DESCENDING", stable=True)
    in_group_rank = tf.argsort(order, axis=-1, stable=True)
    candidate = tf.reshape(in_group_rank >= n, [-1])
    # how many candidates the current sparsity prunes
    n_candidates = tf.size(candidate) * (m - n) // m
    fraction = tf.clip_by_value(
        tf.cast(sparsity, tf.float32) * m / (m - n), 0.0, 1.0)
    n_prune = tf.cast(tf.math.round(
        tf.cast(n_candidates, tf.float32) * fraction), tf.int32)
    score = tf.where(candidate, tf.reshape(groups, [-1]),
                     tf.constant(np.inf, groups.dtype))
    global_rank = tf.argsort(tf.argsort(score, stable=True), stable=True)
    keep = tf.cast(tf.logical_not(global_rank < n_prune), w.dtype)
    keep = tf.reshape(keep, tf.shape(moved))
    return tf.transpose(keep, np.argsort(perm).tolist())


def global_masks(weights, sparsity, min_density=0.01):
    """Masks for several weights from one threshold over all of them.

    Each weight keeps at least ``ceil(min_density * size)`` entries (its
    largest), so that global ranking never empties a layer.

    >>> a = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    >>> b = np.array([0.1, 0.2, 0.3, 0.4], "float32")
    >>> masks, _ = global_masks([a, b], 0.5, min_density=0.25)
    >>> [m.tolist() for m in masks]
    [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]]

    Returns:
      (list of numpy masks, threshold)
    """
    arrays = [np.abs(np.asarray(w, dtype=np.float32)).ravel()
              for w in weights]
    flat = np.concatenate(arrays)
    k = int(keep_count(flat.size, sparsity))
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    masks = []
    for w, a in zip(weights, arrays):
        keep = a >= threshold
        floor = min(a.size, math.ceil(min_density * a.size))
        if keep.sum() < floor:
            top = np.argpartition(a, a.size - floor)[a.size - floor:]
            keep = np.zeros_like(keep)
            keep[top] = True
        masks.append(keep.reshape(np.shape(w)).astype(np.float32))
    return masks, float(threshold)
