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


# tfmot's names for picking quantizers by hand: tfcompress quantizes by
# rule, so code written for them is told what to use instead of meeting a
# bare AttributeError
_TFMOT_QUANTIZER_NAMES = ("quantizers", "LastValueQuantizer",
                          "MovingAverageQuantizer", "AllValuesQuantizer",
                          "FixedQuantizer", "Quantizer")


def __getattr__(name):
    """tfmot's quantizer names are an AttributeError saying what to use.

    >>> from tfcompress import quantize
    >>> quantize.quantizers.LastValueQuantizer
    Traceback (most recent call last):
    ...
    AttributeError: tfcompress.quantize has no quantizers: ...
    """
    if name in _TFMOT_QUANTIZER_NAMES:
        raise AttributeError(
            f"tfcompress.quantize has no {name}: tfmot's quantizers (and "
            "QuantizeConfigs choosing them) are not used, tfcompress "
            "quantizes each layer by rule, as the int8 converter does; "
            "annotate a layer with QuantizeConfig(weight_bits=N) for N-bit "
            "Conv/Dense weights, OutputQuantizeConfig() to quantize only its "
            "output or NoOpQuantizeConfig() to keep it float, or use "
            "NBitScheme(weight_bits=, activation_bits=) for the whole model")
    raise AttributeError(
        f"module 'tfcompress.quantize' has no attribute {name!r}")

