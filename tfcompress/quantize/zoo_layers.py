"""Rules for the custom layers of ``keras.applications`` models.

Recognised through :mod:`tfcompress.compat` (keras.applications defines
them in its model files, not in keras.layers): ``LayerScale`` (ConvNeXt) gets no fake-quant, as
tfcompress reports; ``StochasticDepth`` (ConvNeXt) is the identity at inference;
``CustomScaleLayer`` (InceptionResNetV2) is ``x[0] + x[1] * scale``, whose
scale folds into the convolution producing ``x[1]`` as TFLite folds it.

>>> import keras
>>> is_identity(keras.layers.Activation("linear"))
True
"""

from __future__ import annotations

from keras import layers as L

from tfcompress.compat import is_application_layer


def is_kept_float(layer):
    """LayerScale: a per-channel MUL after ConvNeXt's LayerNormalization,
    left without fake-quant like it (the converter quantizes the MUL)."""
    return is_application_layer(layer, "LayerScale")


def is_identity(layer):
    """Layers that compute nothing at inference: TFLite has no op for
    them, so they get no range of their own."""
    if isinstance(layer, L.Activation):
        return getattr(layer.activation, "__name__", "") == "linear"
    if isinstance(layer, L.Identity):
        return True
    return is_application_layer(layer, "StochasticDepth")


def is_scaled_sum(layer):
    """InceptionResNetV2's ``CustomScaleLayer``: ``x[0] + x[1] * scale``."""
    return is_application_layer(layer, "CustomScaleLayer") and \
        hasattr(layer, "scale")

