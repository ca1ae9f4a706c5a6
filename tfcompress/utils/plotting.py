"""PNG figures for reports: matplotlib's Agg backend (no display needed),
the figure laid out tight, saved atomically, and closed even when drawing
fails.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "line.png")
>>> with png_figure(path, figsize=(3, 2)) as (fig, ax):
...     _ = ax.plot([0, 1], [1, 0])
>>> open(path, "rb").read(4)
b'\\x89PNG'
"""

from __future__ import annotations

import contextlib

from tfcompress.utils.atomic import atomic_path


@contextlib.contextmanager
def png_figure(path, figsize=(6, 4), dpi=120, nrows=1, ncols=1):
    """Yields ``(figure, axes)`` of ``plt.subplots(nrows, ncols)``; when the
    block ends, writes the figure to ``path`` as a PNG (atomically) and
    closes it. Nothing is written when the block raises."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)
