"""Build-config plumbing shared by tfcompress's wrapper layers.

A wrapper saved in a ``.keras`` file must rebuild its inner layer with the
inner layer's own build config (multi-input layers such as
MultiHeadAttention cannot be built from the wrapper's input shape alone).
"""


class WrappedBuildMixin:
    """``get_build_config``/``build_from_config`` delegating to ``layer``."""

    def get_build_config(self):
        return {"layer": self.layer.get_build_config()}

    def build_from_config(self, config):
        inner = (config or {}).get("layer")
        if inner and not self.layer.built:
            self.layer.build_from_config(inner)
        self.build()
