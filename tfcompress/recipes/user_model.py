"""A recipe's own ``.keras`` model against the recipe's data.

A recipe trains a classifier: one image input, one output of class
logits. :func:`fit_data_to_model` checks that the user's model can take
the recipe's images and labels before anything trains (a model that
cannot fails in one line, not after minutes inside ``fit``), and shapes
the images as the model takes them.
"""

from __future__ import annotations

import numpy as np

from tfcompress.errors import InputError


def _shape(shape):
    return tuple(None if d is None else int(d) for d in shape)


def _compatible(model_shape, data_shape):
    return len(model_shape) == len(data_shape) and all(
        m is None or m == d for m, d in zip(model_shape, data_shape))


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
    if not _compatible(want, have) and have[-1:] == (1,) and \
            _compatible(want, have[:-1]):
        xt, xv = xt[..., 0], xv[..., 0]
    elif not _compatible(want, have):
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
