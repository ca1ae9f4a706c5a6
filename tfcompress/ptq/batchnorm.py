"""Batch-norm statistics re-estimated on data.

Pruning, ``shrink`` or QAT change what reaches each BatchNormalization, but
its moving mean and variance still describe the old model. This computes,
layer after layer (each batch norm seeing the outputs of the ones before it
already re-estimated), the exact mean and (biased) variance of each batch
norm's input over ``data``, and stores them as the moving statistics.

The model runs once over the data, layer by layer, holding each layer's
outputs for every sample until the last layer reading them has run; past
``memory_limit`` bytes of them, each remaining batch norm's input is
computed from the model input again (one batch in memory, but a pass per
batch norm).

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization(name="bn")])
>>> x = np.random.default_rng(0).normal(5.0, 2.0, (500, 3)).astype("float32")
>>> new = reestimate_batchnorm(m, x)
>>> bool(np.allclose(new.get_layer("bn").moving_mean.numpy(), x.mean(0), atol=1e-4))
True
"""

from __future__ import annotations

import keras
import numpy as np

from tfcompress import compat
from tfcompress.ptq import layers as lyr
from tfcompress.ptq.samples import as_inputs
from tfcompress.utils.arguments import check_counts
from tfcompress.utils.graph import consumers, node_graph


def _moments(features, batches):
    """Mean and biased variance per channel of ``features(b)`` over the
    ``batches``."""
    total = total_sq = 0.0
    count = 0
    for batch in batches:
        y = np.asarray(features(batch), np.float64)
        y = y.reshape(-1, y.shape[-1])
        total = total + y.sum(0)
        total_sq = total_sq + (y * y).sum(0)
        count += len(y)
    mean = total / count
    return mean, np.maximum(total_sq / count - mean * mean, 0.0)


class _Batches:
    """One tensor of the walk: its value on each batch of the data, and
    the key of the node that made it."""

    def __init__(self, parts, key=None):
        self.parts, self.key = parts, key


class _OverMemoryLimit(Exception):
    pass


def _nbytes(parts):
    return sum(int(np.prod(p.shape)) * getattr(p.dtype, "size", 4)
               for p in parts)


def _walk(model, x, batch_size, memory_limit, eligible, done):
    """Runs ``model`` over ``x`` layer by layer, each layer on every
    batch; before each ``eligible`` batch norm runs, stores its input's
    statistics and adds it to ``done``. A layer's outputs are dropped
    once the last layer reading them has run; raises _OverMemoryLimit
    when those held pass ``memory_limit`` bytes."""
    nodes = node_graph(model)
    calls = {node.op.name: node.calls for node in nodes}
    uses = {key: len(readers) for key, readers in consumers(nodes).items()}
    made, held = {}, [0]

    def read(value):
        key = value.key
        if key is None or key not in uses:
            return
        uses[key] -= 1
        if uses[key] == 0:
            for out in made.pop(key, []):
                held[0] -= _nbytes(out.parts)
                out.parts = None

    def call(op, *args, **kwargs):
        inputs = [v for v in keras.tree.flatten((args, kwargs))
                  if isinstance(v, _Batches)]
        if op in eligible:
            mean, var = _moments(lambda part: part, inputs[0].parts)
            op.moving_mean.assign(mean.astype(np.float32))
            op.moving_variance.assign(var.astype(np.float32))
            done.add(op)
        outs = []
        for i in range(len(inputs[0].parts)):
            pick = (lambda v: v.parts[i] if isinstance(v, _Batches) else v)
            outs.append(op(*keras.tree.map_structure(pick, args),
                           **keras.tree.map_structure(pick, kwargs)))
        for v in inputs:
            read(v)
        # a shared layer's calls are not told apart: its outputs stay
        key = op.name if calls.get(op.name) == 1 else None
        if isinstance(outs[0], (list, tuple)):
            result = type(outs[0])(_Batches([o[j] for o in outs], key)
                                   for j in range(len(outs[0])))
        else:
            result = _Batches(outs, key)
        for out in keras.tree.flatten(result):
            made.setdefault(key, []).append(out)
            held[0] += _nbytes(out.parts)
        if held[0] > memory_limit:
            raise _OverMemoryLimit
        return result

    first = nodes[0].parents[0] if isinstance(model, keras.Sequential) \
        else next(node.key for node in nodes if not node.parents)
    start = _Batches([keras.ops.convert_to_tensor(x[i:i + batch_size])
                      for i in range(0, len(x), batch_size)], first)
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            start = call(layer, start)
    else:
        compat.run_functional_graph(model, start, lambda op: op, call)


def reestimate_batchnorm(model, data, batch_size: int = 64,
                         samples: int | None = None,
                         memory_limit: int = 2 ** 30):
    """A new model whose BatchNormalization moving statistics are those of
    ``data`` (inputs only, no labels; the input model is not changed).

    Args:
      model: a Sequential or Functional Keras 3 model.
      data: representative inputs (array ``(n, ...)`` or ``(x, y)``).
      batch_size: inference batch size.
      samples: use only the first ``samples`` inputs (default: all).
      memory_limit: bytes of layer outputs the one pass over the data may
        hold at once (those still to be read, for every sample); past it,
        the batch norms not yet done each get a pass from the model input.

    After pruning, clustering or :func:`equalize`, the statistics a batch
    norm learnt no longer match its inputs; here a fresh model (mean 0,
    variance 1) gets those of its first convolution's outputs:

    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(4, 3, name="conv"),
    ...     keras.layers.BatchNormalization(name="bn")])
    >>> x = np.random.default_rng(0).random((32, 8, 8, 1), dtype=np.float32)
    >>> new = reestimate_batchnorm(model, x)
    >>> features = model.get_layer("conv")(x).numpy().reshape(-1, 4)
    >>> bn = new.get_layer("bn")
    >>> bool(np.allclose(bn.moving_mean, features.mean(axis=0), atol=1e-5))
    True
    >>> bool(np.allclose(bn.moving_variance, features.var(axis=0),
    ...                  atol=1e-5))
    True
    >>> model.get_layer("bn").moving_mean.numpy().tolist()  # unchanged
    [0.0, 0.0, 0.0, 0.0]
    """
    model = lyr.flat_model(model, "reestimate_batchnorm")
    check_counts("reestimate_batchnorm", optional=("samples",),
                 samples=samples, batch_size=batch_size)
    new = lyr.copy_model(model)
    x = as_inputs(data, new, "reestimate_batchnorm", limit=samples)
    eligible = [node.op for node in node_graph(new)
                if _eligible(node.op, node.calls)]
    done = set()
    try:
        _walk(new, x, batch_size, memory_limit, set(eligible), done)
    except _OverMemoryLimit:
        pass
    for bn in eligible:
        if bn not in done:
            features = lyr.feature_model(new, bn)
            mean, var = _moments(features, [
                x[i:i + batch_size] for i in range(0, len(x), batch_size)])
            bn.moving_mean.assign(mean.astype(np.float32))
            bn.moving_variance.assign(var.astype(np.float32))
    return new


def _eligible(layer, calls):
    """A BatchNormalization called once, normalizing its last axis."""
    if type(layer) is not keras.layers.BatchNormalization or calls > 1:
        return False
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
    return axis in (-1, len(layer.input.shape) - 1)
