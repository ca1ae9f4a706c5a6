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
    epoch; ``changed`` lists how many weights moved each time."""

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
