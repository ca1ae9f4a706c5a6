"""tfcompress.prune.masks: numerics of each granularity."""

import numpy as np
import pytest
import tensorflow as tf

from tfcompress.prune import masks


def _weights(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.95])
def test_magnitude_mask_keeps_the_largest(sparsity):
    w = _weights((40, 25))
    mask, threshold = masks.magnitude_mask(w, sparsity)
    mask = mask.numpy()
    kept = int(max(round(w.size * (1 - sparsity)), 1))
    assert mask.sum() == kept
    assert np.abs(w[mask == 1]).min() == pytest.approx(float(threshold))
    assert np.abs(w[mask == 0]).max(initial=0) < float(threshold)


def test_magnitude_mask_takes_a_sparsity_tensor_in_tf_function():
    w = _weights((10, 10))
    fn = tf.function(lambda s: masks.magnitude_mask(w, s)[0])
    for s in (0.2, 0.7):
        np.testing.assert_array_equal(
            fn(tf.constant(s)), masks.magnitude_mask(w, s)[0])


@pytest.mark.parametrize("block", [(1, 4), (4, 1), (2, 2)])
def test_block_mask_prunes_whole_blocks(block):
    w = _weights((16, 12))
    mask = masks.block_mask(w, 0.75, block)[0].numpy()
    br, bc = block
    tiles = mask.reshape(16 // br, br, 12 // bc, bc)
    assert (tiles.min(axis=(1, 3)) == tiles.max(axis=(1, 3))).all()
    assert 1 - mask.mean() == pytest.approx(0.75)
    # the kept blocks have the largest mean magnitude
    means = np.abs(w).reshape(16 // br, br, 12 // bc, bc).mean(axis=(1, 3))
    kept = tiles.max(axis=(1, 3)) == 1
    assert means[kept].min() >= means[~kept].max()


def test_block_mask_on_conv_kernel_and_ragged_edges():
    w = _weights((3, 3, 5, 6))            # viewed as (45, 6)
    mask = masks.block_mask(w, 0.5, (4, 4))[0].numpy()
    assert mask.shape == w.shape
    assert 0.3 < 1 - mask.mean() < 0.7


def test_n_of_m_exact_pattern_along_input_channels():
    dense = _weights((16, 5))             # (in, out): groups along axis 0
    mask = masks.n_of_m_mask(dense, 2, 4, axis=0, sparsity=0.5).numpy()
    groups = mask.T.reshape(5, 4, 4)
    assert (groups.sum(axis=-1) == 2).all()
    kept = np.abs(dense.T.reshape(5, 4, 4)) * groups
    pruned = np.abs(dense.T.reshape(5, 4, 4)) * (1 - groups)
    assert (kept.max(-1) >= pruned.max(-1)).all()

    conv = _weights((3, 3, 8, 4))         # (h, w, in, out)
    mask = masks.n_of_m_mask(conv, 2, 4, axis=-2, sparsity=0.9).numpy()
    groups = np.moveaxis(mask, 2, -1).reshape(-1, 4)
    assert (groups.sum(axis=-1) == 2).all()


def test_n_of_m_follows_the_schedule():
    w = _weights((64, 16))
    zeros = [1 - masks.n_of_m_mask(w, 2, 4, 0, s).numpy().mean()
             for s in (0.0, 0.1, 0.25, 0.5)]
    np.testing.assert_allclose(zeros, [0.0, 0.1, 0.25, 0.5], atol=1e-3)
    # never more than M - N zeros in a group
    mask = masks.n_of_m_mask(w, 2, 4, 0, 0.25).numpy()
    assert (mask.T.reshape(-1, 4).sum(-1) >= 2).all()


def test_n_of_m_rejects_bad_axis_length():
    with pytest.raises(ValueError, match="multiple of M=4"):
        masks.n_of_m_mask(_weights((6, 3)), 2, 4, axis=0)


def test_global_masks_share_one_threshold_with_min_density():
    big = _weights((50, 20)) * 10         # dominates the ranking
    small = _weights((10, 10), seed=1) * 0.01
    result, threshold = masks.global_masks([big, small], 0.8,
                                           min_density=0.05)
    m_big, m_small = result
    total = m_big.sum() + m_small.sum()
    assert total == pytest.approx(0.2 * (big.size + small.size), abs=5)
    assert (np.abs(big)[m_big == 1] >= threshold).all()
    # without the floor the small layer would be emptied
    assert m_small.sum() == 5
    assert np.abs(small)[m_small == 1].min() >= np.abs(small)[
        m_small == 0].max()
