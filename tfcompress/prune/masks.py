"""Mask computation: which weights to keep for a target sparsity.

Pure functions over tensors (no layers, no state):

- ``magnitude_mask``: unstructured, keep the largest ``|w|``;
- ``block_mask``: rank blocks (e.g. 1x4) by mean ``|w|``, keep whole blocks;
- ``n_of_m_mask``: N:M structured sparsity (e.g. 2:4) along the input
  channel axis: in every group of M consecutive weights keep the N largest;
- ``global_masks``: one magnitude threshold across several weights, with a
  minimum density per weight so that no layer is emptied.

>>> import numpy as np
>>> w = np.array([[0.1, -0.9], [0.5, 0.05]], "float32")
>>> magnitude_mask(w, 0.5).numpy().tolist()
[[0.0, 1.0], [1.0, 0.0]]
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def _keep_count(size, sparsity):
    # tfmot: k = round(size * (1 - sparsity)), at least one weight kept.
    return max(1, int(round(size * (1.0 - float(sparsity)))))


def magnitude_mask(weight, sparsity):
    """Mask keeping the ``round(n * (1 - sparsity))`` largest ``|w|``.

    Ties at the threshold are kept (as in tfmot).
    """
    w = tf.convert_to_tensor(weight)
    abs_w = tf.reshape(tf.abs(w), [-1])
    k = _keep_count(int(abs_w.shape[0]), sparsity)
    threshold = tf.math.top_k(abs_w, k=k, sorted=True).values[-1]
    return tf.cast(tf.abs(w) >= threshold, w.dtype), threshold


def _as_matrix(shape):
    """How a kernel is viewed as a 2-D (rows, cols) matrix for blocks."""
    if len(shape) == 1:
        return (1, shape[0])
    return (int(np.prod(shape[:-1])), shape[-1])


def block_mask(weight, sparsity, block_size=(1, 1)):
    """Mask keeping whole ``block_size`` blocks ranked by mean ``|w|``.

    Kernels of rank > 2 are viewed as (prod(shape[:-1]), out_channels).
    Edges that do not fill a block form smaller blocks.
    """
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
    blocks = tf.reshape(padded, ((rows + pr) // br, br, (cols + pc) // bc, bc))
    nblocks = tf.reshape(counts, blocks.shape)
    mean = tf.reduce_sum(blocks, axis=(1, 3)) / tf.reduce_sum(nblocks,
                                                              axis=(1, 3))
    block_keep, threshold = magnitude_mask(mean, sparsity)
    full = tf.repeat(tf.repeat(block_keep, br, axis=0), bc, axis=1)
    full = full[:rows, :cols]
    return tf.reshape(full, w.shape), threshold


def n_of_m_mask(weight, n=2, m=4, axis=-2):
    """N:M mask: in each group of ``m`` consecutive weights along ``axis``
    keep the ``n`` largest ``|w|``.

    ``axis`` is the input-channel axis: 0 for a Dense kernel (in, out),
    -2 for a Conv kernel (h, w, in, out).

    Raises:
      ValueError: if the axis length is not a multiple of ``m``.
    """
    if not 0 < n < m:
        raise ValueError(f"sparsity_m_by_n needs 0 < N < M, got {n}:{m}")
    w = tf.convert_to_tensor(weight)
    rank = len(w.shape)
    axis = axis % rank
    length = int(w.shape[axis])
    if length % m:
        raise ValueError(
            f"N:M sparsity needs the input-channel axis ({length}) to be a "
            f"multiple of M={m}; choose another M or exclude the layer")
    perm = [i for i in range(rank) if i != axis] + [axis]
    moved = tf.transpose(tf.abs(w), perm)
    groups = tf.reshape(moved, (-1, m))
    # rank within group: keep the n largest (stable: earlier index wins ties)
    order = tf.argsort(groups, axis=-1, direction="DESCENDING", stable=True)
    ranks = tf.argsort(order, axis=-1, stable=True)
    keep = tf.cast(ranks < n, w.dtype)
    keep = tf.reshape(keep, moved.shape)
    inverse = np.argsort(perm).tolist()
    return tf.transpose(keep, inverse), None


def global_masks(weights, sparsity, min_density=0.01):
    """Masks for several weights from one threshold over all of them.

    Each weight keeps at least ``ceil(min_density * size)`` entries (its
    largest), so that global ranking never empties a layer.

    Returns:
      (list of masks, threshold)
    """
    arrays = [np.abs(np.asarray(w, dtype=np.float32)).ravel()
              for w in weights]
    flat = np.concatenate(arrays)
    k = _keep_count(flat.size, sparsity)
    threshold = np.partition(flat, flat.size - k)[flat.size - k]
    masks = []
    for w, a in zip(weights, arrays):
        keep = a >= threshold
        floor = math.ceil(min_density * a.size)
        if keep.sum() < floor:
            top = np.argpartition(a, a.size - floor)[a.size - floor:]
            keep = np.zeros_like(keep)
            keep[top] = True
        masks.append(keep.reshape(np.shape(w)).astype(np.float32))
    return masks, float(threshold)
