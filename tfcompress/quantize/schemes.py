"""Quantization schemes: how many bits, per-channel or not, and whether
the zeros of a pruned model are kept.

>>> Default8BitScheme().weight_bits
8
>>> NBitScheme(weight_bits=4, activation_bits=8).weight_bits
4
"""

from __future__ import annotations

import dataclasses

from tfcompress.errors import InputError
from tfcompress.quantize.bit_widths import check_bits
from tfcompress.utils.arguments import check_flags


@dataclasses.dataclass
class Default8BitScheme:
    """int8 weights (symmetric, per-channel for Conv/Depthwise, per-tensor
    for Dense as TFLite requires) and int8 activations (asymmetric, EMA
    ranges); BatchNormalization folded into the preceding Conv/Dense.

    A folded batch norm trains as Keras trains it: each training step
    normalizes with the batch's statistics and moves the moving ones.
    ``freeze_bn_delay`` (training steps, as TF1's ``create_training_graph``)
    switches to the moving statistics after that many steps: training then
    runs the inference graph, gamma and beta still train, and the moving
    statistics stay put. ``None`` never freezes; ``0`` freezes from the
    first step.

    >>> Default8BitScheme(freeze_bn_delay=100).freeze_bn_delay
    100

    ``share_concat_ranges``: TFLite's int8 CONCATENATION takes its inputs
    at its output's scale, so a chain of concatenations (DenseNet's dense
    blocks) gets one range, moved by its last concatenation
    (:mod:`tfcompress.quantize.shared_ranges`); the converter then adds no
    requantizing ops. ``False`` gives each tensor its own range: finer
    steps early in a chain, one QUANTIZE op per concatenation.

    >>> Default8BitScheme().share_concat_ranges
    True

    ``activation_percentile``: each training batch's activation range is
    taken at this percentile (and its mirror) instead of its min and max,
    before the moving average: the rarest outliers are clipped and the
    int8 steps are finer for the rest. ``None`` (tfmot's
    ``MovingAverageQuantizer``) keeps min and max. On the zoo benchmark's
    EfficientNetB0, whose residual sums are long-tailed, 99.99 together
    with ``freeze_bn_delay=0`` put QAT int8 above float; either alone did
    not (docs/zoo_benchmark.md).

    >>> Default8BitScheme(activation_percentile=99.99).activation_percentile
    99.99
    """
    weight_bits: int = 8
    activation_bits: int = 8
    per_channel: bool = True
    fold_batchnorm: bool = True
    preserve_sparsity: bool = False
    preserve_clusters: bool = False
    ema_decay: float = 0.999
    freeze_bn_delay: int | None = None
    share_concat_ranges: bool = True
    activation_percentile: float | None = None

    def __post_init__(self):
        check_flags(type(self).__name__, per_channel=self.per_channel,
                    fold_batchnorm=self.fold_batchnorm,
                    preserve_sparsity=self.preserve_sparsity,
                    preserve_clusters=self.preserve_clusters,
                    share_concat_ranges=self.share_concat_ranges)
        delay = self.freeze_bn_delay
        if delay is not None and (isinstance(delay, bool) or
                                  not isinstance(delay, int) or delay < 0):
            raise InputError(
                f"freeze_bn_delay must be a number of training steps (an "
                f"integer >= 0) or None to never freeze, got {delay!r}")
        if isinstance(self.ema_decay, bool) or not isinstance(
                self.ema_decay, (int, float)) or \
                not 0.0 <= self.ema_decay < 1.0:
            raise InputError(
                f"ema_decay must be in [0, 1) (0.999 by default), got "
                f"{self.ema_decay!r}")
        for name in ("weight_bits", "activation_bits"):
            setattr(self, name, check_bits(getattr(self, name), name))
        pct = self.activation_percentile
        if pct is not None and (isinstance(pct, bool) or not isinstance(
                pct, (int, float)) or not 50.0 < pct <= 100.0):
            raise InputError(
                f"activation_percentile must be a percentage in (50, 100] "
                f"(e.g. 99.99) or None for min and max, got {pct!r}")
        if pct is not None:
            self.activation_percentile = float(pct)


@dataclasses.dataclass
class NBitScheme(Default8BitScheme):
    """Experimental lower bit-widths, e.g. 4-bit weights with 8-bit
    activations. The model still converts to int8 TFLite; its weights then
    take at most ``2**weight_bits - 1`` distinct levels per channel.
    tfmot's keywords ``num_bits_weight`` and ``num_bits_activation`` (of
    its ``DefaultNBitQuantizeScheme``) are accepted too.

    >>> NBitScheme(num_bits_weight=4, num_bits_activation=8).weight_bits
    4

    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.convert import convert
    >>> from tfcompress.quantize import quantize_model
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...                           keras.layers.Conv2D(4, 3),
    ...                           keras.layers.Flatten(),
    ...                           keras.layers.Dense(3)])
    >>> qat = quantize_model(model, NBitScheme(weight_bits=4,
    ...                                        activation_bits=8))
    >>> x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    >>> report = convert(qat, "int8", representative_data=x).report
    >>> kernels = [w for w in report["weights"] if w["dtype"] != "INT32"]
    >>> [(w["dtype"], w["distinct_values"] <= 15) for w in kernels]
    [('INT4', True), ('INT4', True)]
    """

    def __init__(self, weight_bits=None, activation_bits=None, *,
                 num_bits_weight=None, num_bits_activation=None, **kwargs):
        # tfmot's DefaultNBitQuantizeScheme names them num_bits_weight and
        # num_bits_activation
        for ours, tfmots, name in ((weight_bits, num_bits_weight,
                                    "weight_bits"),
                                   (activation_bits, num_bits_activation,
                                    "activation_bits")):
            if ours is not None and tfmots is not None:
                raise InputError(f"NBitScheme: give {name}= or tfmot's "
                                 f"num_bits_{name.split('_')[0]}=, not both")
        weight_bits = weight_bits if weight_bits is not None else \
            num_bits_weight if num_bits_weight is not None else 4
        activation_bits = activation_bits if activation_bits is not None \
            else num_bits_activation if num_bits_activation is not None \
            else 8
        super().__init__(weight_bits=weight_bits,
                         activation_bits=activation_bits, **kwargs)


@dataclasses.dataclass
class PrunePreservingScheme(Default8BitScheme):
    """Default8Bit that keeps the zeros of a pruned model at zero through
    QAT and conversion (the mask is the kernel's zero pattern when
    ``quantize_apply`` runs; use it on a ``strip_pruning`` result).

    Half the kernel pruned, then fine-tuned with QAT: the int8 flatbuffer
    keeps the zeros, which the default scheme lets training fill in:

    >>> import keras
    >>> import numpy as np
    >>> from tfcompress import prune
    >>> from tfcompress.convert import convert
    >>> from tfcompress.quantize import quantize_model
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((16,)),
    ...                           keras.layers.Dense(8, name="fc")])
    >>> pruned = prune.prune_low_magnitude(model,
    ...                                    prune.ConstantSparsity(0.5, 0))
    >>> prune.collect_wrappers(pruned)[0].update_masks(0.5)
    >>> plain = prune.strip_pruning(pruned)
    >>> x = np.random.default_rng(0).random((16, 16), dtype=np.float32)
    >>> def kernel_sparsity(scheme):
    ...     qat = quantize_model(plain, scheme)
    ...     qat.compile("sgd", "mse")
    ...     _ = qat.fit(x, np.ones((16, 8)), batch_size=8, verbose=0)
    ...     report = convert(qat, "int8", representative_data=x).report
    ...     return report["weights"][0]["sparsity"]
    >>> kernel_sparsity(PrunePreservingScheme())
    0.5
    >>> kernel_sparsity(Default8BitScheme()) < 0.5
    True
    """
    preserve_sparsity: bool = True


@dataclasses.dataclass
class ClusterPreservingScheme(Default8BitScheme):
    """Default8Bit that keeps a clustered model's weight sharing through
    QAT and conversion: each output channel's kernel stays ``centroids[
    indices]`` (the centroids train, the assignment is fixed), so the int8
    flatbuffer holds at most as many distinct values per channel as there
    were clusters. Zeros of a pruned-then-clustered model stay zero
    (``preserve_sparsity=True``, as tfmot's PCQAT). Use it on a
    ``strip_clustering`` result.

    >>> ClusterPreservingScheme().preserve_clusters
    True
    """
    preserve_clusters: bool = True
    preserve_sparsity: bool = True


# tfmot's scheme names, so its guides' quantize_apply(model, scheme) calls
# run with the import changed (tfmot.experimental.combine and
# tfmot.quantization.keras.default_8bit / experimental.default_n_bit)

def _per_channel(what, disable_per_axis):
    check_flags(what, disable_per_axis=disable_per_axis)
    return not disable_per_axis


class Default8BitQuantizeScheme(Default8BitScheme):
    """tfmot's name for :class:`Default8BitScheme`; ``disable_per_axis=True``
    is ``per_channel=False``.

    >>> Default8BitQuantizeScheme(disable_per_axis=True).per_channel
    False
    """

    def __init__(self, disable_per_axis=False, **kwargs):
        super().__init__(per_channel=_per_channel(
            "Default8BitQuantizeScheme", disable_per_axis), **kwargs)


class DefaultNBitQuantizeScheme(NBitScheme):
    """tfmot's name for :class:`NBitScheme`, with tfmot's arguments and
    defaults (8-bit weights and activations unless told otherwise, where
    ``NBitScheme()`` has 4-bit weights).

    >>> s = DefaultNBitQuantizeScheme(num_bits_weight=4)
    >>> s.weight_bits, s.activation_bits, s.per_channel
    (4, 8, True)
    """

    def __init__(self, disable_per_axis=False, num_bits_weight=8,
                 num_bits_activation=8, **kwargs):
        super().__init__(num_bits_weight=num_bits_weight,
                         num_bits_activation=num_bits_activation,
                         per_channel=_per_channel(
                             "DefaultNBitQuantizeScheme", disable_per_axis),
                         **kwargs)


class Default8BitPrunePreserveQuantizeScheme(PrunePreservingScheme):
    """tfmot's name for :class:`PrunePreservingScheme` (PQAT), as in its
    collaborative optimization guide:

    >>> import keras
    >>> from tfcompress import quantize
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> pqat = quantize.quantize_apply(
    ...     quantize.quantize_annotate_model(model),
    ...     quantize.Default8BitPrunePreserveQuantizeScheme())
    >>> quantize.summary(pqat, print_fn=None)[-1]["preserve_sparsity"]
    True
    """


class Default8BitClusterPreserveQuantizeScheme(ClusterPreservingScheme):
    """tfmot's name for :class:`ClusterPreservingScheme` (CQAT);
    ``preserve_sparsity`` (first argument, True by default as in tfmot)
    also keeps a pruned-then-clustered model's zeros (PCQAT).

    >>> Default8BitClusterPreserveQuantizeScheme(False).preserve_sparsity
    False
    >>> Default8BitClusterPreserveQuantizeScheme().preserve_clusters
    True
    """

    def __init__(self, preserve_sparsity=True, **kwargs):
        super().__init__(preserve_sparsity=preserve_sparsity, **kwargs)


def check_scheme(scheme, api):
    """``scheme``, or ``Default8BitScheme()`` for None; InputError for
    anything that is not a scheme instance."""
    if scheme is None:
        return Default8BitScheme()
    if isinstance(scheme, Default8BitScheme):
        return scheme
    if isinstance(scheme, type) and issubclass(scheme, Default8BitScheme):
        raise InputError(
            f"{api}: scheme {scheme.__name__} is a class; pass an instance, "
            f"e.g. scheme={scheme.__name__}()")
    raise InputError(
        f"{api}: scheme must be a tfcompress.quantize scheme "
        f"(Default8BitScheme(), NBitScheme(), PrunePreservingScheme() or "
        f"ClusterPreservingScheme()), got {type(scheme).__name__} "
        f"{scheme!r:.60}")
