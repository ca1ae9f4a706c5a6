"""A model run over data one layer at a time: each layer on every batch
before the next layer runs.

The post-training steps that change a layer from statistics of its input
(batch-norm statistics, bias correction) need that input computed with the
layers before it already changed. Run layer by layer, one pass over the
data gives every layer such an input; a model from the input to each
layer would take a pass per layer. The price is memory: a layer's outputs
are kept, for every sample, until the last layer reading them has run.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="fc"),
...                       keras.layers.ReLU(name="relu")])
>>> seen = []
>>> walk(m, np.ones((10, 2), "float32"), 4,
...      lambda layer, inputs: seen.append((layer.name, len(inputs[0]))))
>>> seen     # each layer, with its input as 3 batches (4 + 4 + 2 samples)
[('fc', 3), ('relu', 3)]
"""

from __future__ import annotations

import keras
import numpy as np

from tfcompress import compat
from tfcompress.ptq import layers as lyr
from tfcompress.utils.graph import consumers, node_graph

DEFAULT_MEMORY_LIMIT = 2 ** 30


class OverMemoryLimit(Exception):
    """The outputs a walk holds passed its ``memory_limit``."""


class _Batches:
    """One tensor of the walk: its value on each batch of the data, and
    the key of the node that made it."""

    def __init__(self, parts, key=None):
        self.parts, self.key = parts, key


def _nbytes(parts):
    return sum(int(np.prod(p.shape)) * getattr(p.dtype, "size", 4)
               for p in parts)


def walk(model, x, batch_size, before,
         memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
    """Runs ``model`` (Sequential or Functional, one input) over ``x``
    layer by layer, each layer on every batch; calls ``before(layer,
    inputs)`` before each layer runs, ``inputs`` holding, for each tensor
    the layer reads, its value per batch. ``before`` may change the layer:
    the layer runs after it. Raises OverMemoryLimit once the outputs held
    pass ``memory_limit`` bytes (the layers before have run, and
    ``before`` has seen them)."""
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
        before(op, [v.parts for v in inputs])
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
            raise OverMemoryLimit
        return result

    first = nodes[0].parents[0] if isinstance(model, keras.Sequential) \
        else next(node.key for node in nodes if not node.parents)
    start = _Batches([keras.ops.convert_to_tensor(b)
                      for b in lyr.batches(x, batch_size)], first)
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            start = call(layer, start)
    else:
        compat.run_functional_graph(model, start, lambda op: op, call)


def each_layer(model, layers, x, batch_size, fn,
               memory_limit: int = DEFAULT_MEMORY_LIMIT) -> dict:
    """``{layer name: fn(layer, inputs)}`` for ``layers`` (each called
    once in ``model``, one input), ``inputs`` being the layer's input per
    batch of ``x``, computed with ``fn`` already applied to the layers
    before it. From one :func:`walk`; past ``memory_limit``, the layers
    not yet reached get theirs from a model from the input to the layer,
    a batch at a time.

    >>> import keras, numpy as np
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="fc"),
    ...                       keras.layers.Dense(1, name="out")])
    >>> sizes = lambda layer, inputs: sum(len(b) for b in inputs)
    >>> each_layer(m, [m.get_layer("out")], np.ones((10, 2), "float32"), 4, sizes)
    {'out': 10}
    """
    wanted, found = set(layers), {}

    def before(layer, inputs):
        if layer in wanted:
            found[layer.name] = fn(layer, inputs[0])
    try:
        walk(model, x, batch_size, before, memory_limit)
    except OverMemoryLimit:
        pass
    for layer in layers:
        if layer.name not in found:
            features = lyr.feature_model(model, layer)
            found[layer.name] = fn(layer, (
                features(b) for b in lyr.batches(x, batch_size)))
    return found


__all__ = ["DEFAULT_MEMORY_LIMIT", "OverMemoryLimit", "each_layer", "walk"]
