"""``keras.applications`` models by name, as recipes give them.

A recipe names one as ``model: keras.applications.MobileNetV2`` with its
constructor arguments under ``model_options`` (``{alpha: 0.35}``).
tfcompress always builds it untrained for the recipe's data:
``weights=None``, ``classes`` and ``input_shape`` from the data, logits
out (``classifier_activation=None``), as the reference models.

>>> is_application("keras.applications.MobileNetV2"), is_application("seed_cnn")
(True, False)
>>> build_application("keras.applications.MobileNetV2", {"alpha": 0.35},
...                   (32, 32, 3), 10).output_shape
(None, 10)
"""

from __future__ import annotations

import inspect

from tfcompress.errors import InputError

PREFIX = "keras.applications."
# what tfcompress sets itself: no pretrained weights, the classifier on top
# with as many logits as the data has classes, the data's input shape
FIXED = {"weights": None, "include_top": True, "classifier_activation": None}
FROM_DATA = ("classes", "input_shape")
NOT_OPTIONS = tuple(FIXED) + FROM_DATA + ("input_tensor", "pooling")


def is_application(model) -> bool:
    """True if the recipe's ``model`` names a keras.applications model."""
    return isinstance(model, str) and model.startswith(PREFIX)


def application_names() -> list:
    """Every keras.applications model constructor, e.g. ``MobileNetV2``.

    >>> "MobileNetV2" in application_names()
    True
    """
    import keras
    return sorted(n for n in dir(keras.applications)
                  if n[:1].isupper() and callable(
                      getattr(keras.applications, n)))


def _builder(model):
    import keras
    name = model[len(PREFIX):] if is_application(model) else model
    names = application_names()
    if name not in names:
        import difflib
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {PREFIX}{close[0]}? " if close else ""
        raise InputError(f"model {model!r}: no such keras.applications "
                         f"model; {hint}use keras.applications.<Name> with "
                         f"one of {', '.join(names)}")
    return getattr(keras.applications, name)


def check_application(model, options) -> None:
    """Raises InputError for an unknown name or an option its constructor
    does not take (or that tfcompress sets itself); builds nothing.

    >>> check_application("keras.applications.MobileNetV2", {"alpha": 0.5})
    >>> check_application("keras.applications.MobileNetV9", {})
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: model 'keras.applications.MobileNetV9': no such keras.applications model; did you mean keras.applications.MobileNetV2? use keras.applications.<Name> with one of ConvNeXtBase, ...
    """
    builder = _builder(model)
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for option in options or {}:
        if option in NOT_OPTIONS:
            raise InputError(
                f"model_options.{option}: tfcompress sets it (weights=None, "
                "the classifier with logits, classes and input shape from "
                f"the data); remove it (resize images with data.image_size "
                "and data.channels)")
        if option not in params and not takes_any:
            valid = [p for p in params if p not in NOT_OPTIONS]
            raise InputError(
                f"model_options.{option}: {model} takes no such argument; "
                f"it takes {', '.join(valid) or 'none'}")


def build_application(model, options, input_shape, classes):
    """The untrained ``model`` (``keras.applications.<Name>``) for inputs of
    ``input_shape`` and ``classes`` logits; a constructor's refusal (an
    image size it does not take, a bad option value) is an InputError."""
    check_application(model, options)
    builder = _builder(model)
    kwargs = dict(options or {}, **FIXED, input_shape=tuple(input_shape),
                  classes=int(classes))
    try:
        return builder(**kwargs)
    except (ValueError, TypeError) as e:
        reason = " ".join(str(e).split())[:300]
        shown = ", ".join(f"{k}={v!r}" for k, v in (options or {}).items())
        raise InputError(
            f"{model} refuses input shape {tuple(input_shape)}"
            f"{' with ' + shown if shown else ''}: {reason}; fix "
            "model_options, or resize the images with data.image_size "
            f"(e.g. {_smallest_side(reason)}) and data.channels (e.g. 3)"
        ) from None


def _smallest_side(reason) -> int:
    """The smallest input side a constructor's refusal names ("Input size
    must be at least 75x75"), else 32 (most keras.applications models').

    >>> _smallest_side("Input size must be at least 75x75; Received: ...")
    75
    >>> _smallest_side("unknown option")
    32
    """
    import re
    found = re.search(r"at least (\d+)x(\d+)", reason)
    return max(int(found.group(1)), int(found.group(2))) if found else 32


def rescales_input(model) -> bool:
    """True if ``model`` scales its own pixels: its first layer after the
    input is a Rescaling or Normalization (keras.applications MobileNetV3,
    EfficientNet and ConvNeXt with their preprocessing, which expect
    pixels in [0, 255]), or a nested model that does (such a base inside
    a transfer-learning model); the others take pixels in [0, 1].

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4, 4, 3)),
    ...                       keras.layers.Rescaling(1 / 255)])
    >>> rescales_input(m)
    True
    >>> rescales_input(keras.Sequential([keras.Input((4, 4, 3)), m]))
    True
    """
    import keras
    from tfcompress.utils.layer_map import is_container
    first = [l for l in model.layers
             if not isinstance(l, keras.layers.InputLayer)][:1]
    if first and is_container(first[0]):
        return rescales_input(first[0])
    return bool(first) and isinstance(
        first[0], (keras.layers.Rescaling, keras.layers.Normalization))


def set_batchnorm_momentum(model, momentum, keras_module=None) -> int:
    """Sets every BatchNormalization layer's moving-statistics momentum;
    returns how many layers it set.

    keras.applications MobileNets use 0.999: trained from scratch for a few
    hundred steps, their moving statistics stay near the initial values
    and evaluation reads near chance; 0.9 settles within tens of steps.

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)),
    ...                       keras.layers.BatchNormalization()])
    >>> set_batchnorm_momentum(m, 0.9), m.layers[0].momentum
    (1, 0.9)
    """
    import keras
    module = keras_module or keras
    n = 0
    for layer in model.layers:
        if isinstance(layer, module.layers.BatchNormalization):
            layer.momentum = momentum
            n += 1
    return n
