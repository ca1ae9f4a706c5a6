"""``strip_pruning``: remove the wrappers, keeping the pruned weights."""

from __future__ import annotations

import keras

from tfcompress.errors import InputError
from tfcompress.utils.arguments import check_model
from tfcompress.prune.wrapper import PruneLowMagnitude
from tfcompress.utils.layer_map import is_container, iter_layers, map_layers


def is_pruned(model) -> bool:
    """True if ``model`` (or a model nested in it) has pruning wrappers.

    >>> from tfcompress.prune import prune_low_magnitude
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> pruned = prune_low_magnitude(model)
    >>> is_pruned(model), is_pruned(pruned), is_pruned(strip_pruning(pruned))
    (False, True, False)
    """
    if isinstance(model, PruneLowMagnitude):
        return True
    return any(isinstance(l, PruneLowMagnitude) for l in iter_layers(model))


def strip_pruning(model):
    """Returns a plain Keras model with the masked weights baked in.

    The wrappers are removed and each pruned weight is ``weight * mask``,
    so the zeros are really zeros. The result shares no weights with
    ``model``. A model without wrappers is returned as is.

    Example:

    >>> import keras
    >>> from tfcompress.prune import prune_low_magnitude
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> plain = strip_pruning(prune_low_magnitude(m))
    >>> type(plain.layers[0]).__name__
    'Dense'
    """
    if isinstance(model, PruneLowMagnitude):
        model.apply_masks()
        return model.layer
    check_model(model, "strip_pruning", layers_too=True)
    if not isinstance(model, keras.Model) or not is_container(model):
        if isinstance(model, keras.Model) and is_pruned(model):
            raise InputError(f"{model.name} is a subclassed model; strip its "
                             "pruned layers inside the subclass")
        return model
    if not is_pruned(model):
        return model
    for w in iter_layers(model):
        if isinstance(w, PruneLowMagnitude):
            w.apply_masks()

    # copies the wrapped layers, not the wrappers
    return map_layers(model, lambda layer: layer,
                      unwrap=lambda l: isinstance(l, PruneLowMagnitude))
