"""Former home of the channel graph; see
:mod:`tfcompress.prune.channels.graph` (and :mod:`tfcompress.utils.graph`
for ``layer_graph``)."""

from tfcompress.prune.channels.graph import (  # noqa: F401
    FOLLOWERS, PASS_THROUGH, PRODUCERS, ZERO_PRESERVING_ACTIVATIONS,
    ChannelSpace, channel_spaces)
from tfcompress.utils.graph import (  # noqa: F401
    SEQUENTIAL_INPUT as _SEQUENTIAL_INPUT, layer_graph)
