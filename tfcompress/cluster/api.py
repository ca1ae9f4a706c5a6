"""``cluster_weights``, ``strip_clustering``, ``summary`` and size helpers."""

from __future__ import annotations

import gzip
import math

import keras
import numpy as np

from tfcompress.cluster.wrapper import ClusterWeights
from tfcompress.prune.prunable import is_prunable
from tfcompress.utils.layer_map import is_container, iter_layers, map_layers


def cluster_weights(to_cluster, number_of_clusters, centroid_init="kmeans++",
                    preserve_sparsity=False, per_channel=False,
                    exclude=(), update_assignments=False):
    """Clusters the kernels of a layer or of every clusterable layer of a
    Sequential/Functional (possibly nested) model.

    >>> from tfcompress.models import lenet_300_100
    >>> clustered = cluster_weights(lenet_300_100(), 16)
    >>> type(clustered.layers[1]).__name__
    'ClusterWeights'
    """
    kwargs = dict(number_of_clusters=number_of_clusters,
                  centroid_init=centroid_init,
                  preserve_sparsity=preserve_sparsity,
                  per_channel=per_channel,
                  update_assignments=update_assignments)
    if isinstance(to_cluster, keras.layers.Layer) and \
            not isinstance(to_cluster, keras.Model):
        return ClusterWeights(to_cluster, **kwargs)
    if not isinstance(to_cluster, keras.Model) or not is_container(
            to_cluster):
        raise ValueError("cluster_weights takes a layer or a Sequential/"
                         "Functional model")
    exclude = set(exclude)

    def wrap(layer):
        if layer.name in exclude or not is_prunable(layer) or \
                not layer.built:
            return layer
        return ClusterWeights(layer, **kwargs)

    return map_layers(to_cluster, wrap)


def strip_clustering(model):
    """Plain model whose kernels hold the clustered values."""
    if isinstance(model, ClusterWeights):
        model.kernel.assign(model.clustered_kernel())
        model.update_assignments = False
        model.kernel.trainable = True
        return model.layer
    if not isinstance(model, keras.Model) or not is_container(model):
        return model
    wrappers = [l for l in iter_layers(model)
                if isinstance(l, ClusterWeights)]
    if not wrappers:
        return model
    for w in wrappers:
        w.kernel.assign(w.clustered_kernel())
        w.update_assignments = False

    # copies the wrapped layers (their kernels trainable again), not the
    # wrappers: no centroid re-initialisation
    return map_layers(model, lambda layer: layer,
                      unwrap=lambda l: isinstance(l, ClusterWeights))


def deep_compression_bits(n, k, bits=32):
    """Deep Compression's estimate: n*log2(k) index bits + k*bits."""
    return int(n * math.ceil(math.log2(k)) + k * bits)


def _layer_bits(layer, values):
    k = layer.number_of_clusters + (1 if layer.preserve_sparsity else 0)
    tables = values.shape[-1] if layer.per_channel else 1
    return deep_compression_bits(values.size, k) + (tables - 1) * k * 32


def summary(model, print_fn=print):
    """Per clustered layer: clusters, distinct values, estimated size."""
    rows = []
    for layer in iter_layers(model):
        if not isinstance(layer, ClusterWeights):
            continue
        values = np.asarray(layer.clustered_kernel())
        rows.append({
            "layer": layer.layer.name, "clusters": layer.number_of_clusters,
            "per_channel": layer.per_channel,
            "distinct_values": int(np.unique(values).size),
            "weights": int(values.size),
            "float_bits": int(values.size * 32),
            "deep_compression_bits": _layer_bits(layer, values),
            "gzip_bytes": len(gzip.compress(values.astype(
                np.float32).tobytes(), 9))})
    if print_fn is not None:
        for r in rows:
            print_fn("  ".join(f"{k}={v}" for k, v in r.items()))
    return rows
