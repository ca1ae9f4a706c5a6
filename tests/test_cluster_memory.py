"""k-means++ seeding keeps O(n) memory: no n x k distance matrix."""

import tracemalloc

import numpy as np
import pytest

from tfcompress.cluster.centroids import assign, init_centroids

# float64 copy of the weights, nearest squared distance, one scratch array
# and the cumulative distribution: four n-length float64 arrays, with room
BYTES_PER_WEIGHT = 48


def _peak_bytes(values, k):
    tracemalloc.start()
    try:
        centroids = init_centroids(values, k, "kmeans++")
        return tracemalloc.get_traced_memory()[1], centroids
    finally:
        tracemalloc.stop()


def _check(n, k):
    values = np.random.default_rng(0).normal(size=n).astype(np.float32)
    peak, centroids = _peak_bytes(values, k)
    # an n x k float64 distance matrix alone would take n * k * 8 bytes
    assert peak < BYTES_PER_WEIGHT * n, (peak, n * k * 8)
    assert len(centroids) == k and np.all(np.diff(centroids) >= 0)
    counts = np.bincount(assign(values, centroids), minlength=k)
    assert (counts > 0).sum() > 0.9 * k


def test_kmeans_plus_plus_memory_is_linear_in_weights():
    _check(300_000, 64)


@pytest.mark.slow
def test_kmeans_plus_plus_2m_weights_256_clusters_under_96_mb():
    _check(2_000_000, 256)


def test_kmeans_plus_plus_spreads_seeds_over_separated_groups():
    rng = np.random.default_rng(0)
    groups = np.concatenate([rng.normal(m, 0.01, 1000)
                             for m in (-5.0, 0.0, 5.0)])
    c = init_centroids(groups, 3, "kmeans++")
    np.testing.assert_allclose(c, [-5.0, 0.0, 5.0], atol=0.05)


def test_kmeans_plus_plus_with_fewer_distinct_values_than_clusters():
    c = init_centroids(np.array([1.0, 1.0, 2.0, 2.0]), 4, "kmeans++")
    assert set(np.round(c, 6)) <= {1.0, 2.0}
