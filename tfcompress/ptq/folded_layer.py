"""The layer a folded batch norm leaves behind: an identity (no TFLite op)
that accepts the ``training`` and ``mask`` arguments the batch norm was
called with, so the rest of the graph is rebuilt unchanged.

>>> import numpy as np
>>> FoldedBatchNorm(name="bn")(np.ones((1, 2), "float32")).numpy().tolist()
[[1.0, 1.0]]
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tfcompress")
class FoldedBatchNorm(keras.layers.Identity):
    """Identity standing where a folded BatchNormalization was."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_spec(self, inputs, training=None, mask=None):
        return super().compute_output_spec(inputs)
