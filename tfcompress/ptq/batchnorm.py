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

from tfcompress.ptq import layers as lyr
from tfcompress.ptq import layer_walk
from tfcompress.ptq.samples import as_inputs
from tfcompress.utils.arguments import check_counts
from tfcompress.utils.graph import node_graph


def reestimate_batchnorm(model, data, batch_size: int = 64,
                         samples: int | None = None,
                         memory_limit: int = layer_walk.DEFAULT_MEMORY_LIMIT):
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
    layer_walk.each_layer(
        new, eligible, x, batch_size,
        lambda bn, inputs: _store(bn, lyr.channel_moments(inputs)),
        memory_limit)
    return new


def _store(bn, moments):
    mean, var = moments
    bn.moving_mean.assign(mean.astype(np.float32))
    bn.moving_variance.assign(var.astype(np.float32))


def _eligible(layer, calls):
    """A BatchNormalization called once, normalizing its last axis."""
    if type(layer) is not keras.layers.BatchNormalization or calls > 1:
        return False
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
    return axis in (-1, len(layer.input.shape) - 1)
