"""Inline nested models: one flat Functional graph of leaf layers.

Transfer learning nests a whole network as one layer
(``Sequential([base, GlobalAveragePooling2D(), Dense(10)])`` with ``base``
a keras.applications model). Graph analyses that follow tensors from
layer to layer, such as channel pruning's channel spaces, see the nested
model as one opaque layer. :func:`flatten_nested` rebuilds the model with
every nested Sequential or Functional model replaced by copies of its
layers, called where the nested model was called; the result computes
the same function with copied weights, and the original is not touched.

>>> import keras
>>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
>>> outer = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(2)])
>>> [type(l).__name__ for l in flatten_nested(outer).layers]
['InputLayer', 'Dense', 'Dense']
"""

from __future__ import annotations

import keras

from tfcompress import compat
from tfcompress.errors import InputError
from tfcompress.utils.layer_map import (copy_layer, input_like,
                                         is_container, iter_layers)


class _Inliner:
    """Calls a model's graph with each nested model replaced by its
    layers. Each layer is copied once: a layer or nested model called
    several times (a siamese base) gives one copy called as often, so the
    flat model shares its weights as the nested one does."""

    def __init__(self):
        self.copies = {}

    def copy(self, layer):
        if is_container(layer) or not isinstance(layer, keras.layers.Layer):
            return layer    # inlined by call / a stateless keras.ops call
        if id(layer) not in self.copies:
            self.copies[id(layer)] = (layer, copy_layer(layer))
        return self.copies[id(layer)][1]

    def call(self, layer, *args, **kwargs):
        """Calls ``layer`` on symbolic ``args``; a nested model is
        replaced by copies of its layers called on them."""
        if not is_container(layer):
            return layer(*args, **kwargs)
        inputs = args[0] if len(args) == 1 else list(args)
        if isinstance(layer, keras.Sequential):
            x = inputs
            for inner in layer.layers:
                x = self.call(self.copy(inner), x)
            return x
        inputs = inputs if isinstance(layer.input, (list, tuple)) or \
            not isinstance(inputs, (list, tuple)) else inputs[0]
        # the graph run on the caller's tensors (a clone_model on them
        # would rebuild it on new inputs when they are a layer's output,
        # as after a Rescaling in front of the base)
        outputs = compat.run_functional_graph(layer, inputs, self.copy,
                                              self.call)
        flat = keras.tree.flatten(outputs)
        return flat[0] if len(flat) == 1 else flat


def has_nested_model(model) -> bool:
    """True when a layer of ``model`` is itself a Sequential or Functional
    model.

    >>> import keras
    >>> has_nested_model(keras.Sequential([keras.Input((2,)),
    ...                                    keras.layers.Dense(1)]))
    False
    """
    return any(is_container(layer) for layer in model.layers)


def repeated_names(model) -> list:
    """Leaf layer names used more than once across ``model`` and the
    models it nests (a flat model needs them unique).

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((2,)),
    ...                           keras.layers.Dense(2, name="fc")])
    >>> outer = keras.Sequential([keras.Input((2,)), inner,
    ...                           keras.layers.Dense(1, name="head")])
    >>> repeated_names(outer)
    []
    """
    import collections
    counts = collections.Counter(l.name for l in iter_layers(model))
    return sorted(name for name, n in counts.items() if n > 1)


def flatten_nested(model: keras.Model) -> keras.Model:
    """``model`` as one Functional model without nested models.

    Returns ``model`` itself when it nests nothing; otherwise a new model
    of copied layers (same names, same weights) that gives the same
    outputs. Train, prune or convert the flat model in place of the
    nested one.

    >>> import keras
    >>> i = keras.Input((8, 8, 3))
    >>> base = keras.Model(i, keras.layers.Conv2D(4, 3, name="conv")(i))
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), base,
    ...                           keras.layers.GlobalAveragePooling2D(),
    ...                           keras.layers.Dense(2, name="head")])
    >>> flat = flatten_nested(model)
    >>> [l.name for l in flat.layers][1:2], flat.count_params() == model.count_params()
    (['conv'], True)

    Raises:
      InputError: for a subclassed model, whose graph cannot be read, and
        when a layer name repeats across the nested models.
    """
    if not isinstance(model, keras.Model) or not is_container(model):
        raise InputError(
            f"flatten_nested takes a Sequential or Functional model; "
            f"{getattr(model, 'name', model)!r} is a subclassed model "
            f"({type(model).__name__}): rebuild it as a Functional model")
    if not model.built or not model.inputs:
        raise InputError(f"model {model.name} is not built; give it an "
                         "Input first")
    if not has_nested_model(model):
        return model
    repeated = repeated_names(model)
    if repeated:
        raise InputError(
            f"model {model.name} cannot be flattened: layer name(s) "
            f"{', '.join(repeated)} appear in more than one of its nested "
            f"models; give the layers unique names (rebuild the head with "
            f"name=...)")
    # named as the user's input layers (an unnamed keras.Input's tensor is
    # keras_tensor_N, its layer input_layer_N)
    inputs = [input_like(t) for t in model.inputs]
    outputs = _Inliner().call(model, *inputs)
    flat = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                       outputs, name=model.name)
    if has_nested_model(flat):
        raise InputError(f"model {model.name} could not be flattened: a "
                         "nested model is still inside")
    return flat
