"""Picking a tf.distribute strategy by name, and who writes files."""

from __future__ import annotations

import json
import os
import warnings

from tfcompress.errors import InputError

STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name: str = "default"):
    """Returns the ``tf.distribute`` strategy called ``name``.

    ``"default"``: no distribution; ``"mirrored"``: MirroredStrategy over
    this machine's devices; ``"multi_worker"``: MultiWorkerMirroredStrategy
    configured from the ``TF_CONFIG`` environment variable (one process per
    worker; see docs/distributed.md), with the Keras 3 fixes of
    :mod:`tfcompress.distribute.keras_fixes` applied.

    >>> strategy = get_strategy("mirrored")              # doctest: +SKIP
    >>> with strategy.scope():                            # doctest: +SKIP
    ...     model = prune.prune_low_magnitude(build())   # doctest: +SKIP
    """
    if name not in STRATEGIES:
        raise InputError(f"unknown strategy {name!r}; choose one of "
                         f"{', '.join(STRATEGIES)}")
    import tensorflow as tf
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    config = os.environ.get("TF_CONFIG")
    if config:
        try:
            json.loads(config)["cluster"]
        except (ValueError, KeyError, TypeError):
            raise InputError("TF_CONFIG is not valid JSON with a 'cluster' "
                             "entry; see docs/distributed.md") from None
    install_keras_fixes()
    return tf.distribute.MultiWorkerMirroredStrategy()


def install_keras_fixes(trainer_module=None) -> bool:
    """Applies :mod:`tfcompress.distribute.keras_fixes`; returns True, or
    warns (``RuntimeWarning`` naming the missing Keras internal and the
    installed versions) and returns False when they cannot be applied."""
    from tfcompress import compat
    from tfcompress.distribute import keras_fixes
    try:
        return keras_fixes.apply(trainer_module)
    except compat.CompatError as err:
        warnings.warn(
            f"tfcompress could not apply its fixes for Keras' multi-worker "
            f"fit: {err}. model.fit under MultiWorkerMirroredStrategy may "
            "fail with 'Attempt to convert a value (PerReplica...)' or "
            "'Invalid reduction dimension 0' (keras-team/keras#20585).",
            RuntimeWarning, stacklevel=3)
        return False


def task(strategy=None):
    """``(task_type, task_id)`` of this process (``("worker", 0)`` when not
    multi-worker).

    The task is read from ``strategy.cluster_resolver``; here one built by
    hand stands for a MultiWorkerMirroredStrategy on the second worker:

    >>> import types
    >>> import tensorflow as tf
    >>> task()
    ('worker', 0)
    >>> spec = tf.train.ClusterSpec({"worker": ["host0:2222", "host1:2222"]})
    >>> resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
    ...     spec, task_type="worker", task_id=1)
    >>> task(types.SimpleNamespace(cluster_resolver=resolver))
    ('worker', 1)
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "worker", 0
    return resolver.task_type or "worker", int(resolver.task_id or 0)


def is_chief(strategy=None) -> bool:
    """True for the process that writes checkpoints and results: the
    ``chief`` task, or worker 0 when the cluster has no chief.

    >>> import types
    >>> import tensorflow as tf
    >>> is_chief()  # no distribution: this process is the chief
    True
    >>> spec = tf.train.ClusterSpec({"chief": ["host0:2222"],
    ...                              "worker": ["host1:2222"]})
    >>> def on(task_type, task_id):
    ...     resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
    ...         spec, task_type=task_type, task_id=task_id)
    ...     return types.SimpleNamespace(cluster_resolver=resolver)
    >>> is_chief(on("chief", 0)), is_chief(on("worker", 0))
    (True, False)
    """
    task_type, task_id = task(strategy)
    if task_type == "chief":
        return True
    resolver = getattr(strategy, "cluster_resolver", None)
    has_chief = bool(resolver and "chief" in
                     resolver.cluster_spec().as_dict())
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_path(path: str, strategy=None) -> str:
    """Where this process writes ``path``: ``path`` itself on the chief,
    ``<folder>/.workers/<type>-<id>/<name>`` on the other workers (every
    worker may have to take part in a save, but only the chief's copy is
    the result). The caller creates the folder.

    >>> import types
    >>> import tensorflow as tf
    >>> worker_path("runs/pruned.keras")  # the chief writes the result
    'runs/pruned.keras'
    >>> spec = tf.train.ClusterSpec({"worker": ["host0:2222", "host1:2222"]})
    >>> resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
    ...     spec, task_type="worker", task_id=1)
    >>> worker_path("runs/pruned.keras",
    ...             types.SimpleNamespace(cluster_resolver=resolver))
    'runs/.workers/worker-1/pruned.keras'
    """
    if is_chief(strategy):
        return path
    task_type, task_id = task(strategy)
    folder, name = os.path.split(path)
    return os.path.join(folder, ".workers", f"{task_type}-{task_id}", name)
