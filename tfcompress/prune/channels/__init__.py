"""Channel (structured) pruning: channel graph, ranking, shrink.

- :mod:`~tfcompress.prune.channels.graph`: which channels must be pruned
  together (:func:`channel_spaces`) and why some cannot.
- :mod:`~tfcompress.prune.channels.ranking`: the :class:`ChannelPruning`
  callback zeroing the weakest channels during training.
- :mod:`~tfcompress.prune.channels.shrink`: :func:`shrink` rebuilds the
  model without the zeroed channels.
- :func:`flatten_nested` (from :mod:`tfcompress.utils.flatten`): a model
  nesting others (a keras.applications base inside a Sequential) as one
  flat graph, so channel spaces reach inside the base.

>>> from tfcompress.models import mobilenet_small
>>> spaces = channel_spaces(mobilenet_small())
>>> sum(s.prunable for s in spaces), len(spaces)
(3, 4)
"""

from tfcompress.prune.channels.graph import (ChannelSpace, channel_spaces,
                                             frozen_reasons)
from tfcompress.prune.channels.ranking import (ChannelPruning,
                                               channel_scores, zero_channels)
from tfcompress.prune.channels.shrink import (count_macs, dead_channels,
                                              shrink)
from tfcompress.utils.flatten import flatten_nested

__all__ = ["ChannelPruning", "ChannelSpace", "channel_scores",
           "channel_spaces", "count_macs", "dead_channels",
           "flatten_nested", "frozen_reasons", "shrink", "zero_channels"]
