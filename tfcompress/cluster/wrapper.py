"""``ClusterWeights``: a layer whose kernels are shared among k centroids.

Each clustered weight (the kernel of a Conv/Dense; the input and recurrent
kernels of a recurrent layer; the four projections of a
MultiHeadAttention) has centroids of its own. The kernel the layer
computes with is ``centroids[indices]``: the indices
(cluster assignment) are non-trainable, the centroids trainable, so the
gradient of every weight in a cluster is summed into its centroid — the
weight-sharing update of Deep Compression. With ``preserve_sparsity`` the
zeros of a pruned kernel form a fixed cluster at 0, one of the
``number_of_clusters`` (as in tfmot: a kernel, or with ``per_channel`` each
output channel, keeps at most ``number_of_clusters`` values, zero among
them).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcompress import compat
from tfcompress.utils.wrapper_build import WrappedBuildMixin
from tfcompress.cluster.centroids import (aggregation_method, assign,
                                          centroid_method, init_centroids)
from tfcompress.cluster.clusterable import (ClusterableLayer,
                                            algorithm_indices,
                                            clustering_algorithm,
                                            clusterable_weights)
from tfcompress.prune.prunable import is_prunable
from tfcompress.utils.channels import (from_output_channel_rows,
                                       output_channel_rows)
from tfcompress.errors import InputError


def _centroids_for_nonzeros(k, nonzero):
    """How many of a channel's ``k`` centroids its non-zero weights use:
    all, or with zeros kept (``nonzero`` is that channel's mask) ``k - 1``,
    the zeros' cluster being one of the ``k``, as in tfmot.

    >>> import numpy as np
    >>> _centroids_for_nonzeros(8, np.array([True, False]))
    7
    """
    return k if np.all(nonzero) else k - 1


@keras.saving.register_keras_serializable(package="tfcompress")
class ClusterWeights(WrappedBuildMixin, keras.layers.Wrapper):
    """Clusters each kernel of ``layer`` into ``number_of_clusters``.

    >>> layer = ClusterWeights(keras.layers.Dense(8), 4)
    >>> _ = layer(keras.ops.ones((1, 16)))
    >>> len(np.unique(layer.clustered_kernel().numpy())) <= 4
    True
    >>> lstm = ClusterWeights(keras.layers.LSTM(4), 3)
    >>> _ = lstm(keras.ops.ones((1, 5, 2)))
    >>> [(w.name, len(np.unique(v.numpy()))) for w, v in
    ...  lstm.clustered_weights()]
    [('kernel', 3), ('recurrent_kernel', 3)]

    ``gradient_aggregation="avg"`` (tfmot's ``GradientAggregation.AVG``)
    gives each centroid the mean of its weights' gradients instead of
    their sum. ``per_channel=True`` gives each output channel centroids
    of its own (a depthwise kernel's ``C * M`` channels, a transposed
    convolution's axis -2). ``cluster_all_weights=False`` clusters the
    first kernel alone, and ``channels_by_output=False`` groups
    ``per_channel`` weights by the kernel's last axis: what ``.keras`` files
    written before hold.
    """

    # (variable, centroids, indices, nonzero) per clustered weight, set by
    # build() outside Keras' tracking
    _clusters = ()
    # the layer's own clustering-algorithm class per clustered weight, or
    # None (the nearest centroid), set by build()
    _algorithms = ()

    def __init__(self, layer, number_of_clusters, centroid_init="kmeans++",
                 preserve_sparsity=False, per_channel=False,
                 update_assignments=False, cluster_all_weights=True,
                 gradient_aggregation="sum", channels_by_output=True,
                 **kwargs):
        if isinstance(layer, ClusterWeights):
            raise InputError(f"layer {layer.layer.name!r} is clustered "
                             "already; strip_clustering(layer) first to "
                             "cluster it again")
        if not isinstance(layer, ClusterableLayer) and \
                not is_prunable(layer):
            raise InputError(f"layer {layer.name!r} ({type(layer).__name__})"
                             " has no kernel tfcompress can cluster; wrap "
                             "only Conv/Dense-like layers, or implement "
                             "get_clusterable_weights() on it "
                             "(tfcompress.cluster.ClusterableLayer)")
        if isinstance(number_of_clusters, bool) or not isinstance(
                number_of_clusters, (int, np.integer)):
            raise InputError(f"number_of_clusters must be an integer >= 2, "
                             f"got {number_of_clusters!r}")
        if int(number_of_clusters) < 2:
            raise InputError(f"number_of_clusters must be >= 2, got "
                             f"{number_of_clusters}")
        kwargs.setdefault("name", f"cluster_{layer.name}")
        # a frozen layer (a transfer-learning base with trainable=False)
        # stays frozen: its centroids do not train either (the wrapper
        # takes the layer's trainable, as tfmot's does)
        super().__init__(layer, **kwargs)
        self.number_of_clusters = int(number_of_clusters)
        self.centroid_init = centroid_method(centroid_init)
        self.preserve_sparsity = bool(preserve_sparsity)
        self.per_channel = bool(per_channel)
        # keep training the original weights as latent values (straight-
        # through) so refresh_assignments() can move them between clusters
        self.update_assignments = bool(update_assignments)
        self.cluster_all_weights = bool(cluster_all_weights)
        self.gradient_aggregation = aggregation_method(
            gradient_aggregation)
        self.channels_by_output = bool(channels_by_output)
        if layer.built:
            self.build()

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        # written when only the first kernel of a layer was clustered
        config.setdefault("cluster_all_weights", False)
        # written when per-channel groups were the kernel's last axis
        config.setdefault("channels_by_output", False)
        return super().from_config(config, custom_objects)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if getattr(self, "centroids", None) is not None:
            self.built = True
            return
        if not tf.executing_eagerly():
            # first built inside a traced training step: k-means needs the
            # kernel's values, and a never-trained kernel is noise anyway
            raise InputError(
                f"layer {self.layer.name!r} was not built when "
                "cluster_weights wrapped it, so its kernel has no values to "
                "cluster; cluster a built (trained) model, or give the "
                "model an Input (keras.Input(shape)) before clustering")
        weights = clusterable_weights(self.layer)
        if not self.cluster_all_weights:
            weights = weights[:1]
        if not weights:
            raise InputError(
                f"layer {self.layer.name!r}: get_clusterable_weights() "
                "names no weight, so there is nothing to cluster; leave the "
                "layer unwrapped (cluster_weights on a model does)")
        k = self.number_of_clusters
        smallest = min(weights, key=lambda v: int(np.prod(v.shape)))
        if k > int(np.prod(smallest.shape)):
            size = int(np.prod(smallest.shape))
            raise InputError(f"number_of_clusters ({k}) is larger than the "
                             f"{size} weights of {self.layer.name}'s "
                             f"{smallest.name}; choose at most {size}, or "
                             "exclude the layer")
        algorithms = [clustering_algorithm(self.layer, w) for w in weights]
        if self.per_channel and any(a is not None for a in algorithms):
            raise InputError(
                f"layer {self.layer.name!r}: its get_clusterable_algorithm "
                "assigns weights to one set of centroids, but per_channel="
                "True gives each output channel its own; cluster it with "
                "per_channel=False")
        # the layer's own assignment rule per clustered weight, or None
        object.__setattr__(self, "_algorithms", algorithms)
        clusters = [self._add_clusters(w, i) for i, w in enumerate(weights)]
        # (variable, centroids, indices, nonzero) per clustered weight,
        # kept out of Keras' tracking: the variables are the wrapper's own
        # (added in order) or the wrapped layer's
        object.__setattr__(self, "_clusters", clusters)
        self.kernel, self.centroids, self.indices, self.nonzero = clusters[0]
        self.built = True

    def _add_clusters(self, kernel, position):
        """Centroids, indices and nonzero mask of one clustered weight (the
        first one's variables keep their names of old)."""
        suffix = f"_{position}" if position else ""
        k = self.number_of_clusters
        mat = np.asarray(self._as_matrix(kernel))
        channels = mat.shape[0]
        nonzero = mat != 0 if self.preserve_sparsity else \
            np.ones_like(mat, bool)
        cents = np.zeros((channels, k), np.float32)
        idx = np.zeros(mat.shape, np.int32)
        for ch in range(channels):
            vals = mat[ch][nonzero[ch]]
            if vals.size == 0:
                continue
            kk = min(_centroids_for_nonzeros(k, nonzero[ch]),
                     max(1, np.unique(vals).size))
            c = init_centroids(vals, kk, self.centroid_init)
            c = np.concatenate([c, np.full(k - kk, c[-1])])
            cents[ch] = c
            algorithm = self._algorithms[position]
            idx[ch] = (assign(mat[ch], c[:kk]) if algorithm is None else
                       algorithm_indices(algorithm, np.asarray(kernel), c,
                                         self.layer.name))
        centroids = self.add_weight(
            name="centroids" + suffix, shape=cents.shape,
            initializer=keras.initializers.Constant(cents), trainable=True)
        indices = self.add_weight(
            name="cluster_indices" + suffix, shape=idx.shape, dtype="int32",
            initializer=keras.initializers.Constant(idx), trainable=False)
        nonzero = self.add_weight(
            name="nonzero_mask" + suffix, shape=idx.shape,
            initializer=keras.initializers.Constant(
                nonzero.astype(np.float32)), trainable=False)
        # the centroids are what trains (and the latent kernel, when
        # assignments are refreshed)
        kernel.trainable = self.update_assignments and self.trainable
        return kernel, centroids, indices, nonzero

    @property
    def trainable(self):
        return super().trainable

    @trainable.setter
    def trainable(self, value):
        # Keras sets every variable of the wrapped layer, the kernels the
        # centroids stand for included: they stay as build() left them
        super(ClusterWeights, type(self)).trainable.fset(self, value)
        for kernel, *_ in self._clusters:
            kernel.trainable = self.update_assignments and bool(value)

    def _layout_layer(self, kernel):
        """The layer whose output channels ``kernel``'s rows are: the
        wrapped layer for its own ``kernel`` (depthwise and transposed
        kernels keep them elsewhere than the last axis), else None."""
        if self.channels_by_output and \
                kernel is getattr(self.layer, "kernel", None):
            return self.layer
        return None

    def _as_matrix(self, kernel):
        """(channels, n) view of a kernel, as the indices are stored."""
        if self.per_channel:
            return output_channel_rows(self._layout_layer(kernel), kernel)
        return tf.reshape(kernel, (1, -1))

    def refresh_assignments(self):
        """Moves every (latent) weight to its nearest centroid; returns how
        many weights changed cluster. Needs ``update_assignments=True``."""
        if not self.update_assignments:
            raise InputError(f"{self.name}: refresh_assignments needs "
                             "ClusterWeights(..., update_assignments=True)")
        changed = 0
        for position, (kernel, centroids, indices, nonzero) in enumerate(
                self._clusters):
            latent = np.asarray(self._as_matrix(kernel))
            cents = np.asarray(centroids)
            old = np.asarray(indices)
            keep = np.asarray(nonzero) > 0
            new = old.copy()
            for ch in range(latent.shape[0]):
                algorithm = self._algorithms[position]
                if algorithm is None:
                    live = cents[ch][:_centroids_for_nonzeros(
                        cents.shape[1], keep[ch])]
                    order = np.argsort(live, kind="stable")
                    near = order[assign(latent[ch], live[order])]
                else:   # per_channel=False: the one row is the kernel
                    near = algorithm_indices(algorithm, np.asarray(kernel),
                                             cents[ch], self.layer.name)
                new[ch] = np.where(keep[ch], near, old[ch])
            indices.assign(new)
            changed += int((new != old).sum())
        return changed

    def _clustered_value(self, kernel, centroids, indices, nonzero):
        if self.gradient_aggregation == "avg":
            centroids = _mean_gradient(centroids, indices, nonzero)
        mat = tf.gather(centroids, indices, batch_dims=1)
        if self.update_assignments:
            # value of the centroids, gradient also to the latent weights
            latent = self._as_matrix(kernel)
            mat = mat + (latent - tf.stop_gradient(latent))
        mat = mat * nonzero
        shape = tuple(kernel.shape)
        if self.per_channel:
            return from_output_channel_rows(self._layout_layer(kernel), mat,
                                            shape)
        return tf.reshape(mat, shape)

    def clustered_kernel(self):
        """The first kernel the layer computes with:
        ``centroids[indices]``."""
        return self._clustered_value(*self._clusters[0])

    def clustered_weights(self):
        """``[(variable, values)]``: each clustered weight of the wrapped
        layer and the values the layer computes with in its place."""
        return [(c[0], self._clustered_value(*c)) for c in self._clusters]

    def clustered_centroids(self):
        """The centroids variable of each clustered weight, in order."""
        return [c[1] for c in self._clusters]

    def call(self, inputs, *args, training=None, **kwargs):
        if compat.call_has_training_arg(self.layer):
            kwargs["training"] = training
        with keras.StatelessScope(state_mapping=self.clustered_weights()):
            return self.layer(inputs, *args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update({"number_of_clusters": self.number_of_clusters,
                       "centroid_init": self.centroid_init,
                       "preserve_sparsity": self.preserve_sparsity,
                       "per_channel": self.per_channel,
                       "update_assignments": self.update_assignments,
                       "cluster_all_weights": self.cluster_all_weights,
                       "gradient_aggregation": self.gradient_aggregation,
                       "channels_by_output": self.channels_by_output})
        return config


def _mean_gradient(centroids, indices, nonzero):
    """``centroids``, whose gradient is divided by the number of (kept)
    weights each centroid stands for: the gather then averages its
    weights' gradients instead of summing them."""
    channels, k = centroids.shape
    segments = indices + tf.range(channels, dtype=indices.dtype)[:, None] * k
    sizes = tf.reshape(tf.math.unsorted_segment_sum(
        tf.reshape(tf.cast(nonzero, centroids.dtype), [-1]),
        tf.reshape(segments, [-1]), channels * k), (channels, k))

    @tf.custom_gradient
    def averaged(c):
        return tf.identity(c), lambda dy: dy / tf.maximum(sizes, 1.0)

    return averaged(tf.convert_to_tensor(centroids))
