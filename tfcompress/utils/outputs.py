"""What a classifier's output is: logits, or the probabilities of a final
softmax (keras.applications' default ``classifier_activation``) or
sigmoid. Recipes, distillation and sensitivity analysis read it to pick
their losses and decisions."""

from __future__ import annotations


def output_activation(model):
    """The activation ``model``'s output comes from (``"softmax"`` for a
    ``Softmax`` layer too), looked for through tfcompress's training
    wrappers and nested models (a keras.applications classifier used as
    a layer); None for a linear output (logits) or more than one
    output.

    >>> import keras
    >>> output_activation(keras.Sequential([
    ...     keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")]))
    'sigmoid'
    """
    import keras
    from tfcompress import compat
    from tfcompress.utils.layer_map import is_container
    outputs = getattr(model, "outputs", None)  # none when subclassed
    if not outputs or len(outputs) != 1:
        return None
    layer = compat.keras_history(outputs[0]).operation
    while True:
        if isinstance(layer, keras.layers.Softmax):
            return "softmax"
        name = getattr(getattr(layer, "activation", None), "__name__", None)
        if name not in (None, "linear"):
            return name
        if is_container(layer):
            if len(layer.outputs) != 1:
                return None
            layer = compat.keras_history(layer.outputs[0]).operation
            continue
        inner = getattr(layer, "layer", None)
        if not isinstance(inner, keras.layers.Layer):
            return None
        layer = inner


def gives_probabilities(model) -> bool:
    """True if ``model``'s output comes from a softmax (a layer with
    ``activation="softmax"``, a ``Softmax`` layer or ``Activation``), looked
    for through tfcompress's training wrappers and nested models (a
    keras.applications classifier used as a layer): recipes then train it
    on probabilities, and distillation takes their log as its logits.

    >>> import keras
    >>> gives_probabilities(keras.Sequential([
    ...     keras.Input((4,)), keras.layers.Dense(3, activation="softmax")]))
    True
    >>> gives_probabilities(keras.Sequential([
    ...     keras.Input((4,)), keras.layers.Dense(3)]))
    False
    """
    return output_activation(model) == "softmax"
