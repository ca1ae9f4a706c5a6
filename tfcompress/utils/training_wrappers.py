"""Which compression-training wrapper a model still holds, if any.

Pruning, clustering, QAT and the post-training steps each take a model in
one state (float, stripped); a model still holding another step's
training layers would go through them unchanged, so each refuses it,
naming what to do. They find the layer here.

>>> import keras
>>> from tfcompress import prune
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> training_wrapper(m) is None
True
>>> kind, layer = training_wrapper(prune.prune_low_magnitude(m))
>>> kind, type(layer).__name__
('pruning', 'PruneLowMagnitude')
"""

from __future__ import annotations

from tfcompress.utils.layer_map import iter_layers

KINDS = ("pruning", "clustering", "qat")


def training_wrapper(model, kinds=KINDS):
    """``(kind, layer)`` for the first layer of ``model`` (nested models
    included) that is a pruning wrapper, a clustering wrapper or a QAT
    layer, among ``kinds``; None when there is none."""
    # imported here: the packages that hold the wrappers use this module
    from tfcompress.cluster.wrapper import ClusterWeights
    from tfcompress.prune.wrapper import PruneLowMagnitude
    from tfcompress.quantize.api import QUANTIZE_LAYERS
    classes = {"pruning": PruneLowMagnitude, "clustering": ClusterWeights,
               "qat": QUANTIZE_LAYERS}
    for layer in iter_layers(model):
        for kind in kinds:
            if isinstance(layer, classes[kind]):
                return kind, layer
    return None


def strip_first(api, kind, layer) -> str:
    """The message for a ``pruning`` or ``clustering`` wrapper ``layer``
    left in a model given to ``api``: strip it first.

    >>> class Layer: name = "fc"
    >>> strip_first("fold_batchnorm", "pruning", Layer())
    "fold_batchnorm: layer 'fc' still has its pruning wrapper; call tfcompress.prune.strip_pruning(model) first"
    """
    strip = {"pruning": "prune.strip_pruning",
             "clustering": "cluster.strip_clustering"}[kind]
    return (f"{api}: layer {layer.name!r} still has its {kind} wrapper; "
            f"call tfcompress.{strip}(model) first")


def refuse_wrapped(model, api, qat_message, strip_notes=None) -> None:
    """InputError when ``model`` still holds a training wrapper:
    ``qat_message(layer)`` for a QAT layer; for a pruning or clustering wrapper, :func:`strip_first`'s
    message followed by ``strip_notes[kind]``, if given.

    >>> import keras
    >>> from tfcompress import prune
    >>> m = keras.Sequential([keras.Input((4,)),
    ...                       keras.layers.Dense(2, name="fc")])
    >>> refuse_wrapped(m, "example", str)    # a plain model passes
    >>> refuse_wrapped(prune.prune_low_magnitude(m), "example", str)
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: example: layer 'prune_low_magnitude_fc' still has its pruning wrapper; call tfcompress.prune.strip_pruning(model) first
    """
    from tfcompress.errors import InputError
    found = training_wrapper(model)
    if found is None:
        return
    kind, layer = found
    if kind == "qat":
        raise InputError(qat_message(layer))
    raise InputError(strip_first(api, kind, layer) +
                     (strip_notes or {}).get(kind, ""))
