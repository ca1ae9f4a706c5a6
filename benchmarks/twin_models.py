"""tfcompress' reference models (``tfcompress.models``), rebuilt with any
Keras module — Keras 3 or tf_keras — so tfmot can run on the same
architecture. Layer names, widths and batch-norm momentum match.

    import tf_keras
    model = build("mobilenet_small", tf_keras)
"""

BN_MOMENTUM = 0.9  # tfcompress.models.reference.BN_MOMENTUM


def seed_cnn(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Conv2D(32, 5, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(2, name="pool1"),
        L.BatchNormalization(name="bn1"),
        L.Conv2D(64, 5, padding="same", activation="relu", name="conv2"),
        L.MaxPooling2D(2, name="pool2"),
        L.Flatten(name="flatten"),
        L.Dense(1024, activation="relu", name="fc1"),
        L.Dropout(0.4, name="dropout"),
        L.Dense(10, name="logits"),
    ], name="seed_cnn")


def lenet_300_100(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Flatten(name="flatten"),
        L.Dense(300, activation="relu", name="fc1"),
        L.Dense(100, activation="relu", name="fc2"),
        L.Dense(10, name="logits"),
    ], name="lenet_300_100")


def mobilenet_small(keras, width=16):
    L = keras.layers

    def conv_bn_relu6(x, filters, kernel, strides, name):
        x = L.Conv2D(filters, kernel, strides=strides, padding="same",
                     use_bias=False, name=name + "_conv")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM, name=name + "_bn")(x)
        return L.ReLU(6.0, name=name + "_relu6")(x)

    def separable(x, filters, strides, name):
        x = L.DepthwiseConv2D(3, strides=strides, padding="same",
                              use_bias=False, name=name + "_dw")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM,
                                 name=name + "_dw_bn")(x)
        x = L.ReLU(6.0, name=name + "_dw_relu6")(x)
        x = L.Conv2D(filters, 1, use_bias=False, name=name + "_pw")(x)
        x = L.BatchNormalization(momentum=BN_MOMENTUM,
                                 name=name + "_pw_bn")(x)
        return L.ReLU(6.0, name=name + "_pw_relu6")(x)

    inputs = keras.Input((28, 28, 1), name="image")
    x = conv_bn_relu6(inputs, width, 3, 2, "stem")
    x = separable(x, 2 * width, 1, "block1")
    x = separable(x, 4 * width, 2, "block2")
    y = separable(x, 4 * width, 1, "block3")
    x = L.Add(name="residual_add")([x, y])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(10, name="logits")(x),
                       name="mobilenet_small")


MODELS = {"seed_cnn": seed_cnn, "lenet_300_100": lenet_300_100,
          "mobilenet_small": mobilenet_small}


def build(name, keras):
    """The reference model ``name`` built with the Keras module ``keras``."""
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r}; choose from "
                         f"{sorted(MODELS)}")
    return MODELS[name](keras)
