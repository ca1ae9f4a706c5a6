"""Former home of ``ChannelPruning``; see
:mod:`tfcompress.prune.channels.ranking`."""

from tfcompress.prune.channels.ranking import (  # noqa: F401
    ChannelPruning, channel_scores)
