"""``cluster_weights``, ``strip_clustering``, ``summary`` and size helpers."""

from __future__ import annotations

import gzip
import math

import keras
import numpy as np

from tfcompress.cluster.centroids import (aggregation_method,
                                          centroid_method)
from tfcompress.cluster.wrapper import ClusterWeights
from tfcompress.cluster.clusterable import (ClusterableLayer,
                                            clusterable_weights,
                                            is_clusterable)
from tfcompress.prune.prunable import is_prunable
from tfcompress.prune.wrapper import PruneLowMagnitude
from tfcompress.utils.training_wrappers import training_wrapper
from tfcompress.utils.arguments import (check_flags, check_model,
                                         layer_names)
from tfcompress.utils.layer_map import (copy_layer, is_container,
                                        iter_layers, keep_output_names,
                                        map_layers,
                                        nested_models, with_nested_layers)
from tfcompress.errors import InputError


def cluster_weights(to_cluster, number_of_clusters, centroid_init="kmeans++",
                    preserve_sparsity=False, per_channel=False,
                    exclude=(), update_assignments=False, *,
                    gradient_aggregation="sum", cluster_centroids_init=None,
                    cluster_per_channel=None,
                    cluster_gradient_aggregation=None):
    """Clusters the kernels of a layer, of a list of layers (a list of
    wrappers is returned) or of every clusterable layer of a
    Sequential/Functional (possibly nested) model.

    ``centroid_init`` is ``"kmeans++"``, ``"linear"``, ``"random"`` or
    ``"density"``, or tfmot's ``CentroidInitialization`` names;
    ``gradient_aggregation`` is ``"sum"`` or ``"avg"`` (tfmot's
    ``GradientAggregation``). tfmot's keywords ``cluster_centroids_init``,
    ``cluster_per_channel`` and ``cluster_gradient_aggregation`` are
    accepted for ``centroid_init``, ``per_channel`` and
    ``gradient_aggregation``; ``cluster_per_channel=True`` means what it
    means in tfmot: per channel for ``Conv2D`` and ``Conv2DTranspose``
    layers, one set of centroids for every other kernel (``per_channel=
    True`` clusters each output channel of every layer). A layer
    clustered already keeps its
    clustering when asked for the same settings; other settings are
    refused (strip it first).

    >>> from tfcompress.models import lenet_300_100
    >>> clustered = cluster_weights(lenet_300_100(), 16)
    >>> type(clustered.layers[1]).__name__
    'ClusterWeights'
    """
    if cluster_centroids_init is not None:
        centroid_init = cluster_centroids_init
    # tfmot clusters per channel only its Conv2D (and Conv2DTranspose,
    # a Conv2D there); its keyword keeps that meaning
    conv2d_only = cluster_per_channel is not None
    if conv2d_only:
        per_channel = cluster_per_channel
    if cluster_gradient_aggregation is not None:
        gradient_aggregation = cluster_gradient_aggregation
    check_flags("cluster_weights", preserve_sparsity=preserve_sparsity,
                per_channel=per_channel,
                update_assignments=update_assignments)
    kwargs = dict(number_of_clusters=number_of_clusters,
                  centroid_init=centroid_method(centroid_init),
                  preserve_sparsity=preserve_sparsity,
                  per_channel=per_channel,
                  update_assignments=update_assignments,
                  gradient_aggregation=aggregation_method(
                      gradient_aggregation))

    def settings(layer):
        if conv2d_only and not isinstance(layer, _TFMOT_PER_CHANNEL):
            return dict(kwargs, per_channel=False)
        return kwargs

    if isinstance(to_cluster, (list, tuple)):   # as tfmot
        if not all(isinstance(l, keras.layers.Layer) and
                   not isinstance(l, keras.Model) for l in to_cluster):
            raise InputError("cluster_weights takes a list of Keras layers "
                             "(not models); cluster a model on its own")
        return [ClusterWeights(l, **settings(l)) for l in to_cluster]
    if isinstance(to_cluster, keras.layers.Layer) and \
            not isinstance(to_cluster, keras.Model):
        return ClusterWeights(to_cluster, **settings(to_cluster))
    if not isinstance(to_cluster, keras.Model) or not is_container(
            to_cluster):
        raise InputError("cluster_weights takes a layer, a list of layers "
                         "or a Sequential/Functional model; for a "
                         "subclassed model, wrap its layers with "
                         "cluster_weights(layer, ...) where it builds them")
    qat = training_wrapper(to_cluster, ("qat",))
    if qat is not None:
        # QAT layers are not clusterable: nothing would be wrapped
        raise InputError(
            f"cluster_weights: model {to_cluster.name!r} is "
            f"quantization-aware (layer {qat[1].name!r} is a QAT layer); "
            "cluster the float model, strip it, then quantize with "
            "ClusterPreservingScheme()")
    # one name on its own is that name; None (prune_low_magnitude's
    # default) excludes nothing
    exclude = layer_names(exclude, "exclude", "cluster_weights") or set()
    # a nested base's name stands for its layers (as in pruning)
    nested = {m.name: m for m in nested_models(to_cluster)}
    unknown = exclude - set(nested) - {
        layer.name for layer in iter_layers(to_cluster)}
    if unknown:
        raise InputError(f"exclude names no layer of {to_cluster.name}: "
                         f"{', '.join(sorted(map(str, unknown)))}; layer "
                         "names are listed by model.summary()")
    exclude = with_nested_layers(exclude, nested)

    def wrap(layer):
        if layer.name in exclude:
            return layer
        if isinstance(layer, ClusterWeights):
            _check_same_clustering(layer, settings(layer.layer))
            return layer
        if isinstance(layer, PruneLowMagnitude):
            # its kernel is the wrapper's, not clusterable as it is
            raise InputError(
                f"layer {layer.layer.name!r} is still wrapped for pruning; "
                "call prune.strip_pruning(model) before cluster_weights "
                "(with preserve_sparsity=True to keep its zeros)")
        if not layer.built:
            if isinstance(layer, ClusterableLayer) or is_prunable(layer):
                raise InputError(
                    f"layer {layer.name!r} of {to_cluster.name} is not "
                    "built, so its kernel has no values to cluster; give "
                    "the model an Input (keras.Input(shape)) or call it "
                    "on data before cluster_weights")
            return layer
        if not is_clusterable(layer):
            return layer
        return ClusterWeights(layer, **settings(layer))

    return keep_output_names(map_layers(to_cluster, wrap), to_cluster)


# the layers tfmot's cluster_per_channel=True clusters per channel
_TFMOT_PER_CHANNEL = (keras.layers.Conv2D, keras.layers.Conv2DTranspose)


def _check_same_clustering(wrapper, settings):
    """InputError unless ``wrapper`` is clustered as ``settings`` ask."""
    differ = [f"{key}={getattr(wrapper, key)!r} (asked {value!r})"
              for key, value in settings.items()
              if getattr(wrapper, key) != value]
    if differ:
        raise InputError(
            f"layer {wrapper.layer.name!r} is clustered already with "
            f"{wrapper.number_of_clusters} clusters ({'; '.join(differ)}); "
            "to cluster it again, call strip_clustering(model) first and "
            "cluster the stripped model")


def strip_clustering(model):
    """Plain copy of ``model`` whose kernels hold the clustered values; the
    clustered model itself is unchanged (it can keep training). A model
    without clustering wrappers is returned as it is.

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    >>> plain = strip_clustering(cluster_weights(m, 3))
    >>> len(np.unique(plain.layers[0].kernel.numpy())) <= 3
    True
    """
    if isinstance(model, ClusterWeights):
        return _plain_copy(model)
    check_model(model, "strip_clustering", layers_too=True)
    if not isinstance(model, keras.Model) or not any(
            isinstance(layer, ClusterWeights) for layer in iter_layers(model)):
        return model   # nothing to strip
    if not is_container(model):
        raise InputError(f"{model.name} is a subclassed model, which "
                         "strip_clustering cannot rebuild; strip each "
                         "clustered layer inside the subclass "
                         "(strip_clustering(wrapper) returns its plain layer)")

    unbuilt = []   # (original, copy) whose weights are set once built

    def unwrap(layer):
        if isinstance(layer, ClusterWeights):
            return _plain_copy(layer)
        new = copy_layer(layer)
        if layer.weights and not new.built:
            unbuilt.append((layer, new))
        return new

    plain = map_layers(model, unwrap, copy=False)
    for original, new in unbuilt:
        new.set_weights(original.get_weights())
    return plain


def _plain_copy(wrapper):
    """A copy of the wrapped layer with the clustered kernel values."""
    plain = copy_layer(wrapper.layer)
    for kernel, (_, values) in zip(clusterable_weights(plain),
                                   wrapper.clustered_weights()):
        kernel.assign(values)
        kernel.trainable = plain.trainable   # a frozen layer stays frozen
    return plain


def deep_compression_bits(n, k, bits=32):
    """Deep Compression's estimate: n*log2(k) index bits + k*bits.

    A 300x100 kernel in 16 clusters: 4-bit indices and a 16-entry float32
    table, about 8x smaller than its 32-bit weights:

    >>> deep_compression_bits(300 * 100, 16)
    120512
    >>> round(300 * 100 * 32 / deep_compression_bits(300 * 100, 16), 1)
    8.0
    """
    return int(n * math.ceil(math.log2(k)) + k * bits)


def _layer_bits(layer, values, centroids):
    k = layer.number_of_clusters   # the zeros' cluster is one of them
    tables = centroids.shape[0]   # one table per output channel, or one
    return deep_compression_bits(values.size, k) + (tables - 1) * k * 32


def summary(model, print_fn=print):
    """Per clustered weight: clusters, distinct values, estimated size.

    Returns one dict per clustered weight (one per layer for Conv/Dense;
    ``weight`` tells a recurrent layer's or a MultiHeadAttention's kernels
    apart) and prints each as a line (pass ``print_fn=None`` to print
    nothing).

    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((8,)),
    ...                           keras.layers.Dense(4, name="hidden"),
    ...                           keras.layers.Dense(2, name="out")])
    >>> rows = summary(cluster_weights(model, 3, exclude="out"),
    ...                print_fn=None)
    >>> [(r["layer"], r["distinct_values"], r["weights"]) for r in rows]
    [('hidden', 3, 32)]
    >>> rows[0]["float_bits"], rows[0]["deep_compression_bits"]
    (1024, 160)
    """
    check_model(model, "cluster.summary")
    rows = []
    for layer in iter_layers(model):
        if not isinstance(layer, ClusterWeights):
            continue
        for (variable, values), centroids in zip(
                layer.clustered_weights(), layer.clustered_centroids()):
            values = np.asarray(values)
            rows.append({
                "layer": layer.layer.name, "weight": variable.path,
                "clusters": layer.number_of_clusters,
                "per_channel": layer.per_channel,
                "distinct_values": int(np.unique(values).size),
                "weights": int(values.size),
                "float_bits": int(values.size * 32),
                "deep_compression_bits": _layer_bits(layer, values,
                                                     centroids),
                "gzip_bytes": len(gzip.compress(values.astype(
                    np.float32).tobytes(), 9))})
    if print_fn is not None:
        for r in rows:
            print_fn("  ".join(f"{k}={v}" for k, v in r.items()))
    return rows


def cluster_scope():
    """Makes tfcompress's clustering wrapper known when loading ``.keras``
    files, with tfmot's name (it is a registered serializable already):

    >>> with cluster_scope():
    ...     pass
    """
    return keras.saving.custom_object_scope(
        {"ClusterWeights": ClusterWeights})
