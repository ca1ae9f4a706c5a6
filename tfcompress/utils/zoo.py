"""The ``keras.applications`` families at their smallest configuration.

The one family table of tfcompress: used by the zoo tests, the QAT zoo
checks (:mod:`tfcompress.quantize.zoo`) and the coverage table
(benchmarks/zoo_coverage.py):
``weights=None``, 10 classes, logits out, the smallest width multiplier a
family has and the smallest input it accepts.

>>> sorted(FAMILIES)[:3]
['ConvNeXtTiny', 'DenseNet121', 'EfficientNetB0']
>>> build("MobileNetV2").input_shape
(None, 32, 32, 3)
"""

from __future__ import annotations

import keras

from tfcompress.errors import InputError
from tfcompress.models.applications import FIXED

# as recipes build them (weights=None, logits), for 10 classes
COMMON = dict(FIXED, classes=10)

# family -> (keras.applications name, input side, extra arguments)
FAMILIES = {
    "MobileNet": ("MobileNet", 32, dict(alpha=0.25)),
    "MobileNetV2": ("MobileNetV2", 32, dict(alpha=0.35)),
    "MobileNetV3Small": ("MobileNetV3Small", 32, dict(alpha=0.35)),
    "MobileNetV3Small_nopre": ("MobileNetV3Small", 32, dict(
        alpha=0.35, include_preprocessing=False)),
    "MobileNetV3Large": ("MobileNetV3Large", 32, dict(alpha=0.35)),
    "MobileNetV3Large_nopre": ("MobileNetV3Large", 32, dict(
        alpha=0.35, include_preprocessing=False)),
    "EfficientNetB0": ("EfficientNetB0", 32, {}),
    "EfficientNetV2B0": ("EfficientNetV2B0", 32, {}),
    "ResNet50": ("ResNet50", 32, {}),
    "ResNet50V2": ("ResNet50V2", 32, {}),
    "DenseNet121": ("DenseNet121", 32, {}),
    "Xception": ("Xception", 71, {}),
    "InceptionV3": ("InceptionV3", 75, {}),
    "InceptionResNetV2": ("InceptionResNetV2", 75, {}),
    "NASNetMobile": ("NASNetMobile", 32, {}),
    "VGG16": ("VGG16", 32, {}),
    "ConvNeXtTiny": ("ConvNeXtTiny", 32, {}),
}


def accepts(family: str, argument: str, keras_module=None) -> bool:
    """True if ``family``'s builder takes ``argument``.

    >>> accepts("MobileNetV3Small", "include_preprocessing")
    True
    >>> accepts("ResNet50", "include_preprocessing")
    False
    """
    import inspect
    module = keras_module or keras
    builder = getattr(module.applications, _entry(family)[0])
    return argument in inspect.signature(builder).parameters


def _entry(family):
    if family not in FAMILIES:
        raise InputError(f"unknown keras.applications family {family!r}; "
                         f"use one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def build(family: str, keras_module=None, **overrides):
    """The model of ``family`` (a key of :data:`FAMILIES`), untrained.

    ``keras_module``: ``keras`` (default) or ``tf_keras``. ``overrides``
    replace the family's arguments (``alpha=0.75``,
    ``input_shape=(64, 64, 3)``, ``include_preprocessing=False``...).
    """
    module = keras_module or keras
    name, side, extra = _entry(family)
    builder = getattr(module.applications, name)
    kwargs = dict(COMMON, input_shape=(side, side, 3), **extra)
    kwargs.update(overrides)
    if keras_module is not None and keras_module is not keras:
        # tf_keras's MobileNetV3 and ConvNeXt predate some arguments
        import inspect
        params = inspect.signature(builder).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return builder(**kwargs)
