"""Quantization-aware training for Keras 3, with tfmot's names.

>>> from tfcompress import quantize
>>> from tfcompress.models import seed_cnn
>>> qat = quantize.quantize_model(seed_cnn())
>>> # qat.compile(...); qat.fit(...); tfcompress.convert.convert(qat, "int8")
"""

from tfcompress.quantize.api import (NoOpQuantizeConfig,
                                     OutputQuantizeConfig, QuantizeConfig,
                                     has_fake_quant, quantize_annotate_layer,
                                     quantize_annotate_model, quantize_apply,
                                     quantize_model, quantize_scope, summary)
from tfcompress.quantize.int8_rounding import device_rounding
from tfcompress.quantize.layers import (QuantizeAffine, QuantizeFused,
                                        QuantizeOutput)
from tfcompress.quantize.schemes import (
    ClusterPreservingScheme, Default8BitClusterPreserveQuantizeScheme,
    Default8BitPrunePreserveQuantizeScheme, Default8BitQuantizeScheme,
    Default8BitScheme, DefaultNBitQuantizeScheme, NBitScheme,
    PrunePreservingScheme)
from tfcompress.quantize.transform import UnsupportedLayerError

__all__ = [
    "ClusterPreservingScheme", "Default8BitClusterPreserveQuantizeScheme",
    "Default8BitPrunePreserveQuantizeScheme", "Default8BitQuantizeScheme",
    "Default8BitScheme", "DefaultNBitQuantizeScheme", "NBitScheme", "NoOpQuantizeConfig",
    "OutputQuantizeConfig", "PrunePreservingScheme", "QuantizeAffine",
    "QuantizeConfig", "QuantizeFused", "QuantizeOutput",
    "UnsupportedLayerError", "device_rounding", "has_fake_quant",
    "quantize_annotate_layer",
    "quantize_annotate_model", "quantize_apply", "quantize_model",
    "quantize_scope", "summary",
]
