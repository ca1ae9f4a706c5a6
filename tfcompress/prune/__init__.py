"""Magnitude pruning for Keras 3, with tfmot's names.

>>> import keras
>>> from tfcompress import prune
>>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
>>> pruned = prune.prune_low_magnitude(
...     model, prune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100))
>>> pruned.compile("adam", "mse")
>>> # pruned.fit(x, y, callbacks=[prune.UpdatePruningStep()])
>>> plain = prune.strip_pruning(pruned)
"""

from tfcompress.prune.api import prune_low_magnitude, prune_scope
from tfcompress.prune.callbacks import (PruningSummaries, UpdatePruningStep,
                                        collect_wrappers,
                                        update_global_masks)
from tfcompress.prune.masks import (block_mask, global_masks, magnitude_mask,
                                    n_of_m_mask)
from tfcompress.prune.policy import PruneForLatencyOnXNNPack, PruningPolicy
from tfcompress.prune.prunable import (PrunableLayer, get_prunable_weights,
                                       is_prunable)
from tfcompress.prune.schedules import (ConstantSparsity, PolynomialDecay,
                                        PruningSchedule)
# channel pruning lives in tfcompress.prune.channels; the old module paths
# (channel_graph, shrink, structured) re-export it
from tfcompress.prune.channel_graph import ChannelSpace, channel_spaces
from tfcompress.prune.channels import flatten_nested
from tfcompress.prune.shrink import count_macs, dead_channels, shrink
from tfcompress.prune.strip import is_pruned, strip_pruning
from tfcompress.prune.structured import ChannelPruning
from tfcompress.prune.summary import summary
from tfcompress.prune.wrapper import PruneLowMagnitude

__all__ = [
    "ChannelPruning", "ChannelSpace", "channel_spaces", "count_macs",
    "dead_channels", "flatten_nested", "shrink",
    "ConstantSparsity", "PolynomialDecay", "PrunableLayer",
    "PruneForLatencyOnXNNPack", "PruneLowMagnitude", "PruningPolicy",
    "PruningSchedule", "PruningSummaries",
    "UpdatePruningStep", "block_mask", "collect_wrappers",
    "get_prunable_weights", "global_masks", "is_prunable", "is_pruned",
    "magnitude_mask", "n_of_m_mask", "prune_low_magnitude", "prune_scope",
    "strip_pruning",
    "summary", "update_global_masks",
]
