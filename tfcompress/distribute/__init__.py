"""Compression under tf.distribute: strategies by name, chief-only writes.

Pruning, QAT and clustering wrappers keep their masks, step counters and
ranges in variables that are identical on every replica (the mask update
runs the same computation everywhere; activation ranges are updated from
the batch minimum and maximum gathered over all replicas), so a model
built inside ``strategy.scope()`` trains as usual:

>>> from tfcompress import distribute, prune          # doctest: +SKIP
>>> strategy = distribute.get_strategy("multi_worker")  # doctest: +SKIP
>>> with strategy.scope():                             # doctest: +SKIP
...     model = prune.prune_low_magnitude(build(), schedule)
...     model.compile(...)
>>> model.fit(x, y, callbacks=[prune.UpdatePruningStep()])  # doctest: +SKIP
>>> model.save(distribute.worker_path("pruned.keras", strategy))  # doctest: +SKIP

See docs/distributed.md.
"""

from tfcompress.distribute.strategy import (STRATEGIES, get_strategy,
                                            is_chief, task, worker_path)

__all__ = ["STRATEGIES", "get_strategy", "is_chief", "task", "worker_path"]
