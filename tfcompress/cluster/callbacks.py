"""``model.fit`` callbacks for clustering: one refreshes cluster assignments
on a schedule, the other logs the clustering to TensorBoard.

Clustered layers made with ``update_assignments=True`` keep training their
original weights as latent values (straight-through: the layer computes
with the centroids, the latent weights receive the same gradient); this
callback moves each latent weight to its nearest centroid every
``frequency`` epochs, so weights can change cluster during fine-tuning.

>>> from tfcompress import cluster
>>> from tfcompress.models import lenet_300_100
>>> model = cluster.cluster_weights(lenet_300_100(), 16,
...                                 update_assignments=True)
>>> cb = cluster.UpdateClusterAssignments(frequency=1)
>>> # model.fit(x, y, epochs=3, callbacks=[cb]); cb.changed holds the counts
"""

from __future__ import annotations

import os

import keras
import numpy as np

from tfcompress.cluster.wrapper import ClusterWeights
from tfcompress.errors import InputError
from tfcompress.utils.layer_map import iter_layers


class UpdateClusterAssignments(keras.callbacks.Callback):
    """Refreshes the assignments of every ``ClusterWeights(...,
    update_assignments=True)`` layer at the end of every ``frequency``-th
    epoch; ``changed`` lists how many weights moved each time.

    >>> import keras
    >>> import numpy as np
    >>> from tfcompress import cluster
    >>> keras.utils.set_random_seed(0)
    >>> model = cluster.cluster_weights(
    ...     keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]), 3,
    ...     update_assignments=True)
    >>> model.compile("sgd", "mse")
    >>> x = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    >>> y = np.zeros((16, 4), np.float32)
    >>> cb = cluster.UpdateClusterAssignments(frequency=2)
    >>> _ = model.fit(x, y, epochs=4, batch_size=8, callbacks=[cb],
    ...               verbose=0)
    >>> len(cb.changed)  # refreshed after epochs 2 and 4
    2
    >>> plain = cluster.strip_clustering(model)
    >>> np.unique(plain.layers[0].kernel.numpy()).size
    3
    """

    def __init__(self, frequency=1):
        super().__init__()
        # 1.5 would refresh every epoch, "x" fail deep in int()
        if isinstance(frequency, bool) or not isinstance(
                frequency, (int, np.integer)) or frequency < 1:
            raise InputError(f"UpdateClusterAssignments: frequency is a "
                             f"whole number of epochs >= 1, got "
                             f"{frequency!r}")
        self.frequency = int(frequency)
        self.changed = []

    def on_train_begin(self, logs=None):
        self.wrappers = [l for l in iter_layers(self.model)
                         if isinstance(l, ClusterWeights)
                         and l.update_assignments]
        if not self.wrappers:
            raise InputError(
                "UpdateClusterAssignments: no clustered layer was made with "
                "update_assignments=True; pass it to cluster_weights()")

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.frequency == 0:
            self.changed.append(sum(w.refresh_assignments()
                                    for w in self.wrappers))


class ClusteringSummaries(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, plus the clustering of every clustered
    layer (tfmot's ``ClusteringSummaries``).

    The losses and metrics go to ``log_dir/train`` as with
    ``keras.callbacks.TensorBoard``; a histogram of each clustered layer's
    centroids (``<layer>/centroids``) and the number of distinct values its
    kernel computes with (``<layer>/distinct_values``; a layer's further
    kernels add ``_1``, ``_2``...) go to ``log_dir/clustering`` at the end of each epoch, or every
    ``cluster_update_freq`` batches when it is ``"batch"`` or a number.

    Args:
      log_dir: the TensorBoard log folder.
      cluster_update_freq: ``"epoch"`` (tfmot's default), ``"batch"`` or a
        number of batches.
      **kwargs: passed to ``keras.callbacks.TensorBoard``.

    >>> import tempfile
    >>> cb = ClusteringSummaries(tempfile.mkdtemp(), cluster_update_freq=5)
    >>> cb.cluster_update_freq
    5
    """

    def __init__(self, log_dir="logs", cluster_update_freq="epoch",
                 **kwargs):
        if cluster_update_freq == "batch":
            cluster_update_freq = 1
        if not (cluster_update_freq == "epoch" or (
                isinstance(cluster_update_freq, int) and
                cluster_update_freq > 0)):
            raise InputError(
                f"ClusteringSummaries: cluster_update_freq="
                f"{cluster_update_freq!r}; give 'epoch', 'batch' or a "
                "number of batches > 0")
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise InputError("ClusteringSummaries: give log_dir, the folder "
                             "for the TensorBoard logs")
        super().__init__(log_dir=str(log_dir), **kwargs)
        self.cluster_update_freq = cluster_update_freq
        self._clustering_writer = None
        self._batches = 0

    def _write(self):
        import tensorflow as tf
        wrappers = [l for l in iter_layers(self.model)
                    if isinstance(l, ClusterWeights)]
        if not wrappers:
            return
        if self._clustering_writer is None:
            self._clustering_writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, "clustering"))
        with self._clustering_writer.as_default():
            for w in wrappers:
                pairs = zip(w.clustered_centroids(), w.clustered_weights())
                for i, (centroids, (_, values)) in enumerate(pairs):
                    # a layer's second and later kernels: centroids_1, ...
                    suffix = f"_{i}" if i else ""
                    tf.summary.histogram(f"{w.name}/centroids{suffix}",
                                         centroids.value,
                                         step=self._batches)
                    distinct = np.unique(np.asarray(values)).size
                    tf.summary.scalar(f"{w.name}/distinct_values{suffix}",
                                      distinct, step=self._batches)
        self._clustering_writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self._batches += 1
        if self.cluster_update_freq != "epoch" and \
                self._batches % self.cluster_update_freq == 0:
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.cluster_update_freq == "epoch":
            self._write()

    def on_train_end(self, logs=None):
        if self._clustering_writer is not None:
            self._clustering_writer.close()
            self._clustering_writer = None
        super().on_train_end(logs)
