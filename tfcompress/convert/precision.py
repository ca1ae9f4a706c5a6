"""A float32-compute copy of a mixed-precision model, for conversion.

A model built under ``keras.mixed_precision.set_global_policy(
"mixed_float16")`` keeps float32 weights but computes in float16, and
TFLite has no float16 compute kernels: the converter fails on its casts.
:func:`float32_compute` rebuilds such a Sequential or Functional model
with every layer computing in float32 and the same weights, which is
what ``convert`` turns into a flatbuffer (``mode="float16"`` still
halves the stored weights).

>>> import keras
>>> keras.mixed_precision.set_global_policy("mixed_float16")
>>> i = keras.Input((4,))
>>> m = keras.Model(i, keras.layers.Dense(2, name="fc")(i))
>>> keras.mixed_precision.set_global_policy("float32")
>>> copy, half = float32_compute(m)
>>> half, copy.get_layer("fc").compute_dtype
(['fc'], 'float32')
"""

from __future__ import annotations

HALF = ("float16", "bfloat16")


def half_precision_layers(model) -> list:
    """Names of the layers of ``model`` (nested ones included) that
    compute in float16 or bfloat16."""
    from tfcompress.utils.layer_map import iter_layers
    return sorted({layer.name for layer in iter_layers(model)
                   if str(getattr(layer, "compute_dtype", "float32"))
                   in HALF})


def float32_compute(model):
    """``(model, names)``: ``model`` itself and ``[]`` when every layer
    computes in float32 (or the model is subclassed, which cannot be
    rebuilt: conversion then explains the failure); else a copy whose
    layers compute in float32, with the same weights, and the names of
    the layers that computed in half precision."""
    import keras
    from tfcompress.utils.layer_map import is_container
    half = half_precision_layers(model)
    if not half or not is_container(model):
        return model, []

    def in_float32(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=in_float32,
                                    recursive=True)
    copy.set_weights(model.get_weights())
    return copy, half
