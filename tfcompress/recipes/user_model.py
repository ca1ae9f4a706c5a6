"""A recipe's own ``.keras`` model against the recipe's data.

A recipe trains a classifier: one image input, one output of class
logits. :func:`fit_data_to_model` checks that the user's model can take
the recipe's images and labels before anything trains (a model that
cannot fails in one line, not after minutes inside ``fit``), and shapes
the images as the model takes them.
"""

from __future__ import annotations

import numpy as np

from tfcompress.convert.inputs import fits
from tfcompress.errors import InputError
from tfcompress.recipes.schema import MODEL_STAGES


def _shape(shape):
    return tuple(None if d is None else int(d) for d in shape)


def _shown(shape):
    return "(" + ", ".join("None" if d is None else str(d)
                           for d in shape) + ("," if len(shape) == 1
                                              else "") + ")"


def fit_data_to_model(model, data, classes, name="the model"):
    """``data`` (``((x, y), (x_test, y_test))``, images with a channel
    axis) shaped as ``model`` takes it: the channel axis dropped for a
    model whose input has none (``keras.Input((28, 28))``).

    Raises :class:`InputError` naming the mismatch and the fix when the
    model has more than one input or output, takes another image shape,
    or gives fewer logits than the data has classes.

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4, 4)),
    ...                           keras.layers.Flatten(),
    ...                           keras.layers.Dense(3)])
    >>> x = np.zeros((2, 4, 4, 1), np.float32)
    >>> y = np.array([0, 2])
    >>> (x2, _), _ = fit_data_to_model(model, ((x, y), (x, y)), classes=3)
    >>> x2.shape
    (2, 4, 4)
    >>> fit_data_to_model(model, ((x, y), (x, y)), classes=5)
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: the model gives 3 logits per image, but the data has labels 0 to 4: give a model whose last layer has 5 units (one per class)
    """
    if len(model.inputs) != 1:
        raise InputError(
            f"{name} has {len(model.inputs)} inputs; a recipe trains a model "
            "with one image input: give a model with one input")
    if len(model.outputs) != 1:
        raise InputError(
            f"{name} has {len(model.outputs)} outputs; a recipe trains a "
            "classifier with one output of class logits: give a model with "
            "one output")
    (xt, yt), (xv, yv) = data
    want = _shape(model.inputs[0].shape[1:])
    have = tuple(xt.shape[1:])
    if not fits(want, have) and have[-1:] == (1,) and \
            fits(want, have[:-1]):
        xt, xv = xt[..., 0], xv[..., 0]
    elif not fits(want, have):
        raise InputError(
            f"{name} takes inputs of shape {_shown(want)}, the recipe's data "
            f"gives images of shape {_shown(have)}: resize them with "
            "data.image_size and data.channels (e.g. image_size: 32, "
            "channels: 3), or give a model for the data's shape")
    out = _shape(model.outputs[0].shape[1:])
    if len(out) != 1:
        raise InputError(
            f"{name} gives outputs of shape {_shown(out)}; a recipe trains "
            "a classifier with one logit per class: end the model with "
            "pooling and a Dense layer")
    if out[0] is not None and out[0] < classes:
        raise InputError(
            f"{name} gives {out[0]} logits per image, but the data has "
            f"labels 0 to {classes - 1}: give a model whose last layer has "
            f"{classes} units (one per class)")
    return (np.asarray(xt), yt), (np.asarray(xv), yv)


# stages that take a float model: each refuses a QAT model
FLOAT_STAGES = MODEL_STAGES


def check_stages_take(model, variants, name="the model"):
    """InputError, before anything trains, when ``model`` is a QAT model
    and a variant has a stage that takes a float model, or converts with
    a calibration method (a QAT model's ranges are learned in training).

    >>> import keras
    >>> from tfcompress import quantize
    >>> q = quantize.quantize_model(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2)]))
    >>> check_stages_take(q, [{"name": "v", "stages": [
    ...     {"prune": {}}]}], "m.keras")
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: m.keras is a QAT model: variant 'v' stage 0 (prune) takes a float model; name the float model file, or keep only convert and bench stages
    """
    from tfcompress.utils.training_wrappers import training_wrapper
    if training_wrapper(model, ("qat",)) is None:
        return
    for variant in variants:
        where = f"{name} is a QAT model: variant {variant['name']!r}"
        for i, stage in enumerate(variant["stages"]):
            (kind, params), = stage.items()
            if kind in FLOAT_STAGES:
                raise InputError(f"{where} stage {i} ({kind}) takes a float "
                                 "model; name the float model file, or "
                                 "keep only convert and bench stages")
            method = (params or {}).get("calibration", "minmax")
            if kind == "convert" and method != "minmax":
                raise InputError(f"{where} calibration {method} does not "
                                 "apply to a QAT model (its ranges are "
                                 "learned in training): use calibration "
                                 "minmax")
