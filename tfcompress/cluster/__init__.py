"""Weight clustering (weight sharing) for Keras 3.

>>> from tfcompress import cluster
>>> from tfcompress.models import lenet_300_100
>>> clustered = cluster.cluster_weights(lenet_300_100(), 16)
>>> # compile, fit (centroids train); then:
>>> plain = cluster.strip_clustering(clustered)
"""

from tfcompress.cluster.api import (cluster_scope, cluster_weights,
                                    deep_compression_bits, strip_clustering,
                                    summary)
from tfcompress.cluster.callbacks import (ClusteringSummaries,
                                          UpdateClusterAssignments)
from tfcompress.cluster.clusterable import ClusterableLayer
from tfcompress.cluster.centroids import (CentroidInitialization,
                                          GradientAggregation, assign,
                                          init_centroids, kmeans)
from tfcompress.cluster.wrapper import ClusterWeights

__all__ = ["CentroidInitialization", "ClusterWeights", "ClusterableLayer",
           "ClusteringSummaries", "GradientAggregation",
           "UpdateClusterAssignments", "assign", "cluster_scope",
           "cluster_weights", "deep_compression_bits", "init_centroids",
           "kmeans", "strip_clustering", "summary"]
