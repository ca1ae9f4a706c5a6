"""Rules for the custom layers of ``keras.applications`` models.

Recognised by class name and module (keras.applications defines them in
its model files): ``LayerScale`` (ConvNeXt) gets no fake-quant, as
tfcompress reports; ``StochasticDepth`` (ConvNeXt) is the identity at inference;
``CustomScaleLayer`` (InceptionResNetV2) is ``x[0] + x[1] * scale``, whose
scale folds into the convolution producing ``x[1]`` as TFLite folds it.

>>> import keras
>>> is_identity(keras.layers.Activation("linear"))
True
"""

from __future__ import annotations

from keras import layers as L


def _keras_class(layer, *names):
    cls = type(layer)
    return cls.__name__ in names and cls.__module__.startswith("keras")


def is_kept_float(layer):
    """LayerScale: a per-channel MUL after ConvNeXt's LayerNormalization,
    left without fake-quant like it (the converter quantizes the MUL)."""
    return _keras_class(layer, "LayerScale")


def is_identity(layer):
    """Layers that compute nothing at inference: TFLite has no op for
    them, so they get no range of their own."""
    if isinstance(layer, L.Activation):
        return getattr(layer.activation, "__name__", "") == "linear"
    if isinstance(layer, L.Identity):
        return True
    return _keras_class(layer, "StochasticDepth")


def is_scaled_sum(layer):
    """InceptionResNetV2's ``CustomScaleLayer``: ``x[0] + x[1] * scale``."""
    return _keras_class(layer, "CustomScaleLayer") and \
        hasattr(layer, "scale")

