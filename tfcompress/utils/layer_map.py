"""Rebuild Keras models layer by layer.

``map_layers`` clones a Sequential or Functional model (recursing into
nested models used as layers), replacing each leaf layer with what ``fn``
returns for it. ``fn`` receives a fresh copy of the layer, so the result
never shares weights with the original; layers ``fn`` returns unchanged
keep their weights.

>>> import keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
>>> clone = map_layers(m, lambda layer: layer)
>>> bool((clone.layers[0].kernel.numpy() == m.layers[0].kernel.numpy()).all())
True
"""

from __future__ import annotations

from typing import Callable, Iterator

import keras

from tfcompress import compat
from tfcompress.errors import InputError


def is_container(layer) -> bool:
    """True for Sequential and Functional models (models made of layers)."""
    return isinstance(layer, (keras.Sequential, compat.functional_class()))


def iter_layers(model) -> Iterator[keras.layers.Layer]:
    """Yields the leaf layers of ``model``, recursing into nested models.

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    >>> outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1)])
    >>> [type(l).__name__ for l in iter_layers(outer)]
    ['Dense', 'Dense']
    """
    for layer in getattr(model, "layers", []):
        if is_container(layer):
            yield from iter_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def nested_models(model) -> Iterator[keras.Model]:
    """Yields the Sequential/Functional models nested in ``model``, at any
    depth.

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)],
    ...                          name="inner")
    >>> outer = keras.Sequential([keras.Input((3,)), inner])
    >>> [m.name for m in nested_models(outer)]
    ['inner']
    """
    for layer in getattr(model, "layers", []):
        if is_container(layer):
            yield layer
            yield from nested_models(layer)


def with_nested_layers(names, nested):
    """``names`` with each name of a model in ``nested`` (name -> model)
    replaced by the names of its layers, so that naming a nested base in
    ``include``/``exclude`` names its layers; None stays None.

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((3,)),
    ...                           keras.layers.Dense(3, name="fc")])
    >>> sorted(with_nested_layers({"inner", "head"}, {"inner": inner}))
    ['fc', 'head']
    """
    if names is None:
        return None
    out = set()
    for name in names:
        if name in nested:
            out.update(l.name for l in iter_layers(nested[name]))
        else:
            out.add(name)
    return out


def copy_layer(layer: keras.layers.Layer, **overrides) -> keras.layers.Layer:
    """A new layer with the same config and a copy of the weights (a
    ``Lambda`` layer, which holds none, is returned as it is).

    The copy is built and its weights set when ``layer`` is built and says
    how (``get_build_config``); otherwise it is returned unbuilt.
    ``overrides`` replace config entries (e.g. ``activation="linear"``).
    """
    if isinstance(layer, keras.layers.Lambda) and not overrides:
        # no weights to copy, and its function (a Python lambda, or one
        # such as keras.applications.mobilenet_v2.preprocess_input) does
        # not come back from its config: the layer itself is reused
        return layer
    config = layer.get_config()
    config.update(overrides)
    new = layer.__class__.from_config(config)
    compat.carry_input_shape_arg(layer, new)
    if layer.built:
        build_config = layer.get_build_config()
        if build_config:
            new.build_from_config(build_config)
        if new.built and len(new.weights) == len(layer.weights):
            new.set_weights(layer.get_weights())
    return new


def map_layers(model: keras.Model,
               fn: Callable[[keras.layers.Layer], keras.layers.Layer],
               copy: bool = True, unwrap=None) -> keras.Model:
    """Returns a clone of ``model`` with each leaf layer replaced by ``fn``.

    Args:
      model: a Sequential or Functional model (possibly nesting others).
      fn: called with a copy of each leaf layer (or the layer itself when
        ``copy=False``); returns the layer to use: the same one, a new layer,
        or a wrapper around it. Weights of the copies are restored after the
        new model is built.
      copy: copy layers before calling ``fn`` (default). With ``copy=False``
        ``fn`` sees the original layer and the clone shares its weights.
      unwrap: optional predicate; a wrapper layer for which it is true is
        replaced by (a copy of) the layer it wraps before ``fn`` sees it,
        so stripping wrappers never rebuilds them.

    Raises:
      ValueError: for subclassed models, whose structure cannot be rebuilt.
    """
    if not is_container(model):
        raise InputError(
            f"{model.name} is a subclassed model ({type(model).__name__}); "
            "tfcompress can rebuild only Sequential and Functional models. "
            "Apply the function to its layers inside the subclass instead, "
            "or rebuild it as a Functional model.")
    pairs = []  # (original, copy) whose weights must be restored

    def clone_fn(layer):
        if not isinstance(layer, keras.layers.Layer):
            # a keras.ops call in a functional graph (``x + 3.0``): a
            # stateless operation, reused as is
            return layer
        if is_container(layer):
            return map_layers(layer, fn, copy=copy, unwrap=unwrap)
        if unwrap is not None and unwrap(layer):
            layer = layer.layer
        target = layer
        if copy:
            target = copy_layer(layer)
            if layer.weights and not target.built:
                pairs.append((layer, target))
        return fn(target)

    clone = keras.models.clone_model(model, clone_function=clone_fn,
                                     **_named_inputs(model))
    if not model.trainable and clone.trainable:
        # a frozen base (base.trainable = False) stays a frozen model, so
        # that setting it trainable again unfreezes its layers (Keras'
        # clone of a Functional model does not carry the flag)
        clone.trainable = False
    for original, new in pairs:
        if original.built and original.weights:
            if not new.built:
                raise InputError(f"layer {new.name} was not built when "
                                 "cloning; build the model first")
            new.set_weights(original.get_weights())
    return clone


def input_like(tensor, name=None):
    """A new ``keras.Input`` with ``tensor``'s batch shape and dtype, named
    ``name`` or as the InputLayer behind ``tensor`` (what the user named:
    an unnamed ``keras.Input`` has the layer ``input_layer_N`` and the
    tensor ``keras_tensor_N``).

    >>> i = keras.Input((3,))
    >>> input_like(i).name == keras.Model(i, i).layers[0].name
    True
    """
    if name is None:
        name = compat.keras_history(tensor).operation.name
    return keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype,
                       name=name)


def _named_inputs(model):
    """``clone_model``'s ``input_tensors`` for a Functional ``model``: new
    inputs named as its input layers, where Keras would name them after
    the tensors; none for a Sequential model, whose clone keeps them."""
    if isinstance(model, keras.Sequential) or not getattr(
            model, "inputs", None):
        return {}
    try:
        inputs = [input_like(t) for t in model.inputs]
    except compat.CompatError:
        return {}
    return {"input_tensors": keras.tree.pack_sequence_as(model.input,
                                                         inputs)}


def copy_model(model: keras.Model) -> keras.Model:
    """A copy of ``model`` sharing no variables with it.

    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> c = copy_model(m)
    >>> c.layers[0].kernel is m.layers[0].kernel
    False
    """
    return map_layers(model, lambda layer: layer)


def keep_output_names(new, original):
    """Gives ``new``, a rebuild of ``original`` whose output layers are
    wrapped (``prune_low_magnitude_fc``, ``quant_fc``, ``cluster_fc``),
    the output names of ``original``, so that ``compile(loss={"fc":
    ...})``, metrics keyed by output and the history keys
    (``val_fc_loss``) stay those of the model the user built. Keras
    takes a Functional model's output names from its output layers. A
    ``.keras`` file of ``new`` loads with the wrappers' names.

    >>> import keras
    >>> i = keras.Input((2,))
    >>> m = keras.Model(i, [keras.layers.Dense(1, name="a")(i),
    ...                     keras.layers.Dense(1, name="b")(i)])
    >>> j = keras.Input((2,))
    >>> w = keras.Model(j, [keras.layers.Dense(1, name="wa")(j),
    ...                     keras.layers.Dense(1, name="wb")(j)])
    >>> keep_output_names(w, m).output_names
    ['a', 'b']
    """
    names = getattr(original, "output_names", None)
    if isinstance(new, keras.Sequential) or names is None or \
            getattr(new, "output_names", None) is None or \
            len(names) != len(new.output_names):
        return new
    new.output_names = list(names)
    return new
