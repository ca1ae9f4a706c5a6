"""Which layers of a QAT model compute in float.

A QAT model from :func:`tfcompress.quantize.quantize_apply` keeps the
layers that were not annotated float, and one from either API keeps float
those annotated with ``NoOpQuantizeConfig()`` and the LayerNormalization
and LayerScale layers (no int8 TFLite kernel for LayerNormalization's
NEG). The converter must leave them float: given calibration inputs (a QAT
model gets random ones, only to satisfy the converter's check), it would
otherwise quantize them with ranges nobody trained or calibrated.

:func:`float_layers` finds them from the QAT model alone, so it works on a
model loaded from a ``.keras`` file as well: walking the graph in order, a
tensor is float when it is a model input or the output of a layer outside
any QAT wrapper, unless that layer only passes a quantized tensor on
(pooling, reshaping, padding, dropout: TFLite keeps its input's scale).

>>> import keras
>>> from tfcompress import quantize
>>> i = keras.Input((8,))
>>> x = quantize.quantize_annotate_layer(keras.layers.Dense(4, name="a"))(i)
>>> x = keras.layers.Dense(4, name="b")(x)
>>> m = keras.Model(i, keras.layers.Flatten(name="flat")(x))
>>> float_layers(quantize.quantize_apply(m))
['b', 'flat']
>>> no_int8_kernel(keras.layers.LayerNormalization())
True
"""

from __future__ import annotations

from keras import layers as L

from tfcompress.quantize import zoo_layers
from tfcompress.quantize.affine import QuantizeChannelAffine
from tfcompress.quantize.layers import (KEEPS_SCALE, QUANTIZE_LAYERS,
                                        QuantizeOutput)
from tfcompress.quantize.pooling import QuantizeAveragePooling
from tfcompress.utils.graph import node_graph
from tfcompress.utils.layer_map import is_container, iter_layers

_QUANTIZED = QUANTIZE_LAYERS + (QuantizeChannelAffine, QuantizeAveragePooling)


def no_int8_kernel(layer) -> bool:
    """LayerNormalization and ConvNeXt's LayerScale: QAT keeps them float
    whatever the annotations, and strict conversion refuses them."""
    return isinstance(layer, L.LayerNormalization) or \
        zoo_layers.is_kept_float(layer)


def _passes_scale_on(layer) -> bool:
    return isinstance(layer, KEEPS_SCALE) or zoo_layers.is_identity(layer)


def float_layers(model) -> list:
    """Names of the layers of QAT ``model`` that compute in float, in
    graph order (see the module docstring); ``[]`` for a model that is
    not Sequential or Functional."""
    if not is_container(model):
        return []
    float_tensors, names = set(), []
    # one node per call: QAT calls a shared range's quantizer many times
    for node in node_graph(model):
        layer = node.op
        if not node.parents:        # an input
            float_tensors.add(node.key)
            continue
        if isinstance(layer, _QUANTIZED):
            continue
        if is_container(layer):
            inner = float_layers(layer)
            names.extend(n for n in inner if n not in names)
            if inner:
                float_tensors.add(node.key)
            continue
        if getattr(layer, "weights", None) or not _passes_scale_on(
                layer) or any(p in float_tensors for p in node.parents):
            float_tensors.add(node.key)
            if layer.name not in names:
                names.append(layer.name)
    return names


def output_only_layers(model) -> list:
    """Names of the layers of QAT ``model`` quantized by an
    ``OutputQuantizeConfig()`` annotation: QAT gives a range to their
    output only, so the converter calibrates any tensor inside them (a
    LayerNormalization is several ops) and needs real inputs for it.

    >>> import keras
    >>> from tfcompress import quantize
    >>> i = keras.Input((8,))
    >>> norm = quantize.quantize_annotate_layer(
    ...     keras.layers.LayerNormalization(name="norm"),
    ...     quantize.OutputQuantizeConfig())
    >>> m = keras.Model(i, keras.layers.Dense(2)(norm(i)))
    >>> output_only_layers(quantize.quantize_model(m))
    ['norm']
    """
    from tfcompress.quantize.transform import OUTPUT_QUANTIZED
    return [layer.layer.name for layer in iter_layers(model)
            if isinstance(layer, QuantizeOutput) and layer.layer is not None
            and not isinstance(layer.layer, OUTPUT_QUANTIZED)]
