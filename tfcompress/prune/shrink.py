"""Former home of ``shrink``; see :mod:`tfcompress.prune.channels.shrink`."""

from tfcompress.prune.channels.shrink import (  # noqa: F401
    count_macs, dead_channels, shrink)
