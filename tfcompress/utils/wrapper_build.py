"""Build and config plumbing shared by tfcompress's wrapper layers.

A wrapper saved in a ``.keras`` file must rebuild its inner layer with the
inner layer's own build config (multi-input layers such as
MultiHeadAttention cannot be built from the wrapper's input shape alone).
"""


def follow_trainable(kwargs, layer):
    """Gives a layer that holds ``layer`` its ``trainable`` (unless the
    config sets it), as tfmot's wrappers do. A wrapper left trainable
    around a frozen layer could not unfreeze it: on the TensorFlow
    backend, setting ``trainable = True`` on a layer that already is
    does not reach the layers it holds."""
    kwargs.setdefault("trainable", layer.trainable)


class WrappedBuildMixin:
    """``get_build_config``/``build_from_config`` delegating to ``layer``,
    and ``from_config`` rebuilding ``layer`` from its serialized config.
    The wrapper keeps the ``input_shape=`` of ``layer``, so that
    ``Sequential([wrap(Dense(20, input_shape=(20,))), ...])`` is built as
    the plain model would be. The wrapper takes the ``trainable`` of
    ``layer`` (:func:`follow_trainable`)."""

    def __init__(self, layer, **kwargs):
        from tfcompress import compat
        follow_trainable(kwargs, layer)
        super().__init__(layer, **kwargs)
        compat.carry_input_shape_arg(layer, self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        import keras
        config = dict(config)
        layer = keras.layers.deserialize(config.pop("layer"),
                                         custom_objects=custom_objects)
        return cls(layer, **config)

    def get_build_config(self):
        return {"layer": self.layer.get_build_config()}

    def build_from_config(self, config):
        inner = (config or {}).get("layer")
        if inner and not self.layer.built:
            self.layer.build_from_config(inner)
        self.build()
