"""Centroid initialisation and assignment for weight clustering.

>>> import numpy as np
>>> w = np.array([-1.0, -0.9, 0.1, 0.2, 1.0, 1.1])
>>> c = init_centroids(w, 3, "linear")
>>> assign(w, c).tolist()
[0, 0, 1, 1, 2, 2]
"""

from __future__ import annotations

import numpy as np

from tfcompress.errors import InputError

METHODS = ("linear", "random", "density", "kmeans++")


class CentroidInitialization:
    """tfmot's names for the centroid initialisations.

    >>> CentroidInitialization.KMEANS_PLUS_PLUS
    'kmeans++'
    >>> centroid_method("DENSITY_BASED")   # tfmot's string
    'density'
    """
    LINEAR = "linear"
    RANDOM = "random"
    DENSITY_BASED = "density"
    KMEANS_PLUS_PLUS = "kmeans++"


def _named(method, names, tfmot_class, option):
    """``method`` as one of ``names`` (tfcompress's), given as such or as
    the upper-case name of an attribute of ``tfmot_class`` (tfmot's enum
    member, its name, or its string ``'Class.NAME'``)."""
    tfmot = {k: v for k, v in vars(tfmot_class).items() if k.isupper()}
    name = str(getattr(method, "name", method)).split(".")[-1]
    found = name if name in names else tfmot.get(name.upper())
    if found is None:
        raise InputError(f"{option} must be one of {names} (or tfmot's "
                         f"{tfmot_class.__name__}."
                         f"{', '.join(tfmot)}), got {method!r}")
    return found


def centroid_method(method) -> str:
    """tfcompress's name of a centroid initialisation given as one of
    ``METHODS`` or as tfmot's ``CentroidInitialization`` name."""
    return _named(method, METHODS, CentroidInitialization, "centroid_init")


GRADIENT_AGGREGATIONS = ("sum", "avg")


class GradientAggregation:
    """tfmot's names for how a centroid's gradient gathers its weights'
    gradients: their sum (Deep Compression's update, the default) or their
    mean (each centroid then moves as fast however many weights it has).

    >>> GradientAggregation.AVG
    'avg'
    >>> aggregation_method("GradientAggregation.SUM")   # tfmot's string
    'sum'
    """
    SUM = "sum"
    AVG = "avg"


def aggregation_method(method) -> str:
    """tfcompress's name of a gradient aggregation given as one of
    ``GRADIENT_AGGREGATIONS`` or as tfmot's ``GradientAggregation``."""
    return _named(method, GRADIENT_AGGREGATIONS, GradientAggregation,
                  "gradient_aggregation")


def init_centroids(values, k, method="kmeans++", seed=0, iterations=10):
    """``k`` centroids for the 1-D ``values`` (then refined by k-means,
    except for ``linear`` which keeps Deep Compression's even spacing).

    >>> import numpy as np
    >>> w = np.array([-1.0, -0.8, 0.0, 0.1, 0.9, 1.0])
    >>> init_centroids(w, 3, "linear").tolist()  # evenly spaced
    [-1.0, 0.0, 1.0]
    >>> init_centroids(w, 3, "kmeans++", seed=0).round(2).tolist()
    [-0.9, 0.05, 0.95]
    """
    v = np.asarray(values, np.float64).ravel()
    method = centroid_method(method)
    rng = np.random.default_rng(seed)
    lo, hi = float(v.min()), float(v.max())
    if method == "linear":
        return np.linspace(lo, hi, k)
    if method == "random":
        c = rng.uniform(lo, hi, k)
    elif method == "density":
        # equal-mass quantiles of the weight distribution (CDF spacing)
        c = np.quantile(v, (np.arange(k) + 0.5) / k)
    else:
        c = _kmeans_plus_plus(v, k, rng)
    return kmeans(v, np.sort(c), iterations)


def _kmeans_plus_plus(v, k, rng):
    """k-means++ seeding in O(n) memory: keeps each value's squared
    distance to its nearest centroid so far and lowers it with every new
    centroid (no n x k distance matrix)."""
    c = np.empty(k)
    c[0] = v[rng.integers(v.size)]
    d2 = np.square(v - c[0])
    step = np.empty_like(v)
    cdf = np.empty_like(v)
    for j in range(1, k):
        np.cumsum(d2, out=cdf)
        if cdf[-1] > 0:   # draw with probability proportional to d2
            pick = np.searchsorted(cdf, rng.random() * cdf[-1], "right")
        else:             # every value is a centroid already
            pick = rng.integers(v.size)
        c[j] = v[min(pick, v.size - 1)]
        np.subtract(v, c[j], out=step)
        np.square(step, out=step)
        np.minimum(d2, step, out=d2)
    return c


def assign(values, centroids):
    """Index of the nearest centroid for each value.

    Indices refer to the centroids in ascending order:

    >>> import numpy as np
    >>> assign(np.array([[0.9, -0.7], [0.2, 0.4]]), [1.0, -1.0, 0.0]).tolist()
    [2, 0, 1, 1]
    """
    v = np.asarray(values).ravel()
    c = np.sort(np.asarray(centroids))
    mid = (c[1:] + c[:-1]) / 2
    return np.searchsorted(mid, v).astype(np.int32)


def kmeans(values, centroids, iterations=10):
    """Lloyd iterations in 1-D; empty clusters keep their centroid.

    >>> import numpy as np
    >>> w = np.array([-1.0, -0.8, 0.0, 0.1, 0.9, 1.0])
    >>> kmeans(w, [-0.5, 0.5, 5.0]).round(2).tolist()  # 5.0 stays empty
    [-0.6, 0.67, 5.0]
    >>> c = kmeans(w, [-1.0, 0.0, 1.0])
    >>> c.round(2).tolist(), c[assign(w, c)].round(2).tolist()
    ([-0.9, 0.05, 0.95], [-0.9, -0.9, 0.05, 0.05, 0.95, 0.95])
    """
    c = np.sort(np.asarray(centroids, np.float64))
    for _ in range(iterations):
        idx = assign(values, c)
        sums = np.bincount(idx, weights=values, minlength=len(c))
        counts = np.bincount(idx, minlength=len(c))
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.allclose(new, c):
            break
        c = np.sort(new)
    return c
