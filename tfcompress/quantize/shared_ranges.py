"""One activation range for the tensors TFLite must give one int8 scale.

TFLite's int8 CONCATENATION takes its inputs at its output's scale, and
pooling, padding and reshaping ops keep their input's scale. When each of
those tensors has a QAT range of its own, the converter inserts a
requantizing QUANTIZE op wherever two scales meet: DenseNet121, whose
dense blocks concatenate each new feature map onto the block so far, got
27-30 of them, which post-training calibration (one scale per block)
does not have.

:func:`shared_range_groups` finds those tensors before the QAT graph is
built: a group is a chain of concatenations joined output to input, plus
every tensor with a range of its own that reaches one of them through
scale-keeping layers. The group's one range is the EMA range of its last
concatenation, whose values contain every other concatenation's of the
group; each other member is fake-quantized with that range (TFLite
clips it to that scale too).

The output of a scale-keeping layer between a member and a concatenation
gets no call of the shared quantizer: an average pooling of odd window
is rounded to its input's step already
(:mod:`tfcompress.quantize.pooling`), and after a 2x2 one rounding made
QAT agree with the flatbuffer less, not more (top-1 agreement on a small
trained dense network 97.3-98.7% against 98.4-99.0% without).

>>> import keras
>>> from keras import layers as L
>>> from tfcompress.quantize.graph import functional_graph
>>> i = keras.Input((4, 4, 2), name="x")
>>> a = L.Conv2D(2, 1, name="a")(i)
>>> c1 = L.Concatenate(name="c1")([a, L.Conv2D(2, 1, name="b")(a)])
>>> c2 = L.Concatenate(name="c2")([c1, L.Conv2D(2, 1, name="d")(c1)])
>>> m = keras.Model(i, L.Dense(2, name="out")(c2))
>>> sorted(shared_range_groups(functional_graph(m), {"out"}).items())
[('a', 'c2'), ('c1', 'c2'), ('c2', 'c2')]
"""

from __future__ import annotations

from keras import layers as L

from tfcompress.quantize import zoo_layers
from tfcompress.quantize.layers import KEEPS_SCALE


def feeds_concat_only(name, consumers, outputs) -> bool:
    """True if tensor ``name`` is read by concatenations only and is not
    a model output (``consumers``: tensor name -> consuming layers): TFLite
    gives it the concatenation's scale, so it needs no range of its own."""
    cs = consumers.get(name, [])
    return bool(cs) and name not in outputs and all(
        isinstance(c, L.Concatenate) for c in cs)


def _is_plain_concat(layer):
    return type(layer) is L.Concatenate and getattr(
        layer, "_tfcompress_quantize_config", None) in (None, "default")


def shared_range_groups(graph, outputs) -> dict:
    """``{member layer name: root concatenation name}`` for every group
    of two or more tensors that share one range (see the module doc).

    ``graph`` is ``[(layer, [parent names])]`` in topological order,
    ``outputs`` the names of the model's output layers. Tensors that feed
    only concatenations are left out: they have no range of their own and
    take the concatenation's already (a concatenation feeding another
    joins its group all the same).
    """
    parents_of = {layer.name: parents for layer, parents in graph}
    layers = {layer.name: layer for layer, _ in graph}
    consumers = {}
    for layer, parents in graph:
        for p in parents:
            consumers.setdefault(p, []).append(layers[layer.name])

    def producer(name):
        # the tensor whose range sets this one's scale: walk back through
        # layers that keep their input's scale
        for _ in range(len(graph)):
            layer = layers.get(name)
            if layer is None or not (isinstance(layer, KEEPS_SCALE) or
                                     zoo_layers.is_identity(layer)) or \
                    len(parents_of[name]) != 1:
                break
            name = parents_of[name][0]
        return name

    group_of = {}       # union-find over member names

    def find(n):
        while group_of.setdefault(n, n) != n:
            group_of[n] = group_of[group_of[n]]
            n = group_of[n]
        return n

    fed = set()         # concatenations feeding another of their group
    for layer, parents in graph:
        if not _is_plain_concat(layer):
            continue
        find(layer.name)
        for p in parents:
            src = producer(p)
            if src in layers and _is_plain_concat(layers[src]):
                fed.add(src)
            elif feeds_concat_only(src, consumers, outputs):
                continue
            group_of[find(src)] = find(layer.name)
    groups = {}
    for name in list(group_of):
        groups.setdefault(find(name), []).append(name)
    shared = {}
    for members in groups.values():
        roots = [m for m in members if m in layers and
                 _is_plain_concat(layers[m]) and m not in fed]
        if len(members) < 2 or len(roots) != 1:
            continue
        shared.update({m: roots[0] for m in members})
    return shared
