"""Graph rewrites that keep int8 TFLite graphs inside the XNNPACK delegate.

XNNPACK has no int8 HARD_SWISH kernel: every int8 HARD_SWISH op is run by
TFLite's reference kernel, and the graph is cut into one delegate
partition before it and one after (MobileNetV3Small int8: 21 partitions).
:func:`rewrite_hard_swish` writes each hard-swish as
``(x * (1/6)) * relu6(x + 3)``: the same function, converted to int8
MUL, ADD (with RELU6 fused) and MUL ops, which XNNPACK runs. The order
matters: the TFLite converter matches ``x * relu6(x + 3) * (1/6)`` (and
its other groupings) and writes HARD_SWISH again.

The expanded ops are Keras layers (``ConstantArithmetic``, ``ReLU``,
``Multiply``), so the QAT transform places its fake-quant exactly where
the int8 flatbuffer quantizes: after ``x * (1/6)``, after the RELU6 (the
ADD before it has no range of its own: TFLite fuses the RELU6 into it) and
after the product.

>>> import keras
>>> i = keras.Input((4, 4, 3))
>>> m = keras.Model(i, keras.layers.Conv2D(2, 1, activation="hard_swish")(i))
>>> [type(l).__name__ for l in rewrite_hard_swish(m).layers[1:]]
['Conv2D', 'ConstantArithmetic', 'ConstantArithmetic', 'ReLU', 'Multiply']
"""

from __future__ import annotations

import keras
from keras import layers as L

from tfcompress.quantize.graph import ConstantArithmetic
from tfcompress.utils.layer_map import copy_layer, is_container, iter_layers

HARD_SWISH_NAMES = ("hard_silu", "hard_swish")


def is_hard_swish(activation) -> bool:
    """True for Keras' ``hard_silu`` / ``hard_swish`` activation function.

    >>> import keras
    >>> is_hard_swish(keras.activations.hard_swish)
    True
    """
    return getattr(activation, "__name__", "") in HARD_SWISH_NAMES


def _hard_swish_layer(layer) -> bool:
    return is_hard_swish(getattr(layer, "activation", None))


def count_hard_swish(model) -> int:
    """The number of layers of ``model`` computing a hard-swish (as an
    ``Activation`` layer or as a layer's own activation)."""
    return sum(_hard_swish_layer(l) for l in iter_layers(model))


def hard_swish_ops(x, name, annotation=None):
    """``(x * (1/6)) * relu6(x + 3)`` as Keras layers named after ``name``;
    the final ``Multiply`` is called ``name``. ``annotation``: the
    quantize annotation the new layers carry (the hard-swish layer's)."""
    ops = (ConstantArithmetic("multiply", 1.0 / 6.0, name=f"{name}_sixth"),
           ConstantArithmetic("add", 3.0, name=f"{name}_plus3"),
           L.ReLU(6.0, name=f"{name}_relu6"), L.Multiply(name=name))
    if annotation is not None:
        for op in ops:
            op._tfcompress_quantize_config = annotation
    sixth, plus3, relu6, product = ops
    return product([sixth(x), relu6(plus3(x))])


def _functional(model):
    if isinstance(model, keras.Sequential):
        if not model.inputs:
            return None
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def rewrite_hard_swish(model, annotated_only=False):
    """A copy of ``model`` with every hard-swish written as int8 ops that
    XNNPACK runs (see the module docstring); ``model`` itself is unchanged
    and returned as is when it has no hard-swish or cannot be rebuilt
    (subclassed, or a Sequential model without an ``Input``).
    ``annotated_only``: rewrite only layers annotated for default
    quantization (the others stay float in ``quantize_apply``).

    Hard-swish in nested Functional models is rewritten too; in nested
    Sequential models it is left as it is.
    """
    if not is_container(model) or not count_hard_swish(model):
        return model
    functional = _functional(model)
    if functional is None:
        return model

    def call(layer, *args, **kwargs):
        config = getattr(layer, "_tfcompress_quantize_config", None)
        if not _hard_swish_layer(layer) or kwargs or len(args) != 1 or \
                config not in (None, "default") or \
                (annotated_only and config is None):   # kept as it is
            return layer(*args, **kwargs)
        if isinstance(layer, L.Activation):
            return hard_swish_ops(args[0], layer.name, config)
        core = copy_layer(layer, activation="linear")
        if config is not None:
            core._tfcompress_quantize_config = config
        return hard_swish_ops(core(args[0]), f"{layer.name}_hard_swish",
                              config)

    return keras.models.clone_model(functional, clone_function=_copy,
                                    call_function=call, recursive=True)


def _copy(operation):
    # keras.ops calls in a functional graph (``x + 3.0``) are stateless
    # operations: reused as they are
    if not isinstance(operation, keras.layers.Layer):
        return operation
    copy = copy_layer(operation)
    config = getattr(operation, "_tfcompress_quantize_config", None)
    if config is not None:   # quantize_annotate_layer's mark
        copy._tfcompress_quantize_config = config
    return copy
