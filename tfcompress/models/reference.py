"""Reference Keras 3 models used across tests, recipes and benchmarks.

All take 28x28x1 float images in [0, 1] and return 10 logits. Each builder
takes ``keras_module`` (default: Keras 3) so the same architecture can be
built with tf_keras for tfmot, as the side-by-side benchmarks do.

Example:

>>> from tfcompress.models import seed_cnn
>>> model = seed_cnn()
>>> model.output_shape
(None, 10)
"""

from __future__ import annotations

import keras

from tfcompress.errors import InputError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
# Short training runs (tests, demos) need moving statistics that settle in
# a few hundred steps; Keras' default 0.99 leaves them far off.
BN_MOMENTUM = 0.9


def seed_cnn(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
             name="seed_cnn", keras_module=None) -> keras.Model:
    """The CNN of the tfmot pruning tutorial the project started from.

    Conv 32 5x5 -> MaxPool -> BatchNorm -> Conv 64 5x5 -> MaxPool ->
    Flatten -> Dense 1024 -> Dropout 0.4 -> Dense 10 (logits).

    >>> model = seed_cnn()
    >>> model.input_shape, model.output_shape
    ((None, 28, 28, 1), (None, 10))
    >>> [layer.name for layer in model.layers if layer.weights]
    ['conv1', 'bn1', 'conv2', 'fc1', 'logits']
    >>> seed_cnn(input_shape=(8, 8, 1), num_classes=3).output_shape
    (None, 3)
    """
    keras, layers = _modules(keras_module)
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.BatchNormalization(name="bn1"),
        layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2, name="pool2"),
        layers.Flatten(name="flatten"),
        layers.Dense(1024, activation="relu", name="fc1"),
        layers.Dropout(0.4, name="dropout"),
        layers.Dense(num_classes, name="logits"),
    ], name=name)


def lenet_300_100(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                  name="lenet_300_100", keras_module=None) -> keras.Model:
    """LeNet-300-100: the fully connected net of the lottery-ticket paper.

    >>> model = lenet_300_100()
    >>> [layer.units for layer in model.layers[1:]]
    [300, 100, 10]
    >>> model.count_params()
    266610
    """
    keras, layers = _modules(keras_module)
    return keras.Sequential([
        keras.Input(input_shape),
        layers.Flatten(name="flatten"),
        layers.Dense(300, activation="relu", name="fc1"),
        layers.Dense(100, activation="relu", name="fc2"),
        layers.Dense(num_classes, name="logits"),
    ], name=name)


def _modules(keras_module):
    k = keras_module or keras
    return k, k.layers


def _conv_bn_relu6(layers, x, filters, kernel, strides, name):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same",
                      use_bias=False, name=name + "_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return layers.ReLU(6.0, name=name + "_relu6")(x)


def _separable_block(layers, x, filters, strides, name):
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same",
                               use_bias=False, name=name + "_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_dw_bn")(x)
    x = layers.ReLU(6.0, name=name + "_dw_relu6")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=name + "_pw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_pw_bn")(x)
    return layers.ReLU(6.0, name=name + "_pw_relu6")(x)


def mobilenet_small(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES,
                    width=16, name="mobilenet_small",
                    keras_module=None) -> keras.Model:
    """A small MobileNet-style Functional model.

    Conv-BN-ReLU6 stem, depthwise-separable blocks with ReLU6, one residual
    Add, global average pooling and a Dense classifier. ``width`` is the
    stem's filter count; the blocks have 2x, 4x and 4x as many (like
    MobileNet's width multiplier: ``width=32`` doubles every layer).

    >>> mobilenet_small().count_params(), mobilenet_small(width=32).count_params()
    (9610, 32522)
    """
    keras, layers = _modules(keras_module)
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu6(layers, inputs, width, 3, 2, "stem")     # 14x14
    x = _separable_block(layers, x, 2 * width, 1, "block1")      # 14x14
    x = _separable_block(layers, x, 4 * width, 2, "block2")      # 7x7
    shortcut = x
    y = _separable_block(layers, x, 4 * width, 1, "block3")      # 7x7
    x = layers.Add(name="residual_add")([shortcut, y])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


MODELS = {
    "seed_cnn": seed_cnn,
    "lenet_300_100": lenet_300_100,
    "mobilenet_small": mobilenet_small,
}


def get_model(name: str, **kwargs) -> keras.Model:
    """Builds a reference model by name (see ``MODELS``).

    >>> get_model("lenet_300_100").count_params()
    266610
    """
    try:
        builder = MODELS[name]
    except KeyError:
        raise InputError(
            f"unknown reference model {name!r}; choose one of "
            f"{sorted(MODELS)}") from None
    return builder(**kwargs)


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3,
                       optimizer: str = "adam") -> keras.Model:
    """Compiles ``model`` for 10-class logits with integer labels.

    Returns the same model, so it chains with a builder:

    >>> model = compile_classifier(lenet_300_100(), learning_rate=0.01,
    ...                            optimizer="sgd")
    >>> type(model.optimizer).__name__
    'SGD'
    >>> round(float(model.optimizer.learning_rate), 4)
    0.01
    >>> model.loss.get_config()["from_logits"]
    True
    """
    opt = keras.optimizers.get({"class_name": optimizer,
                                "config": {"learning_rate": learning_rate}})
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    return model
