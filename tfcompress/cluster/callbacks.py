"""``model.fit`` callback that refreshes cluster assignments on a schedule.

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

import keras

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
        if int(frequency) < 1:
            raise InputError(f"frequency must be >= 1 epoch, got {frequency}")
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
