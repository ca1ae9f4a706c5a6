"""Public QAT API with tfmot's names."""

from __future__ import annotations

import contextlib
import dataclasses

import keras

from tfcompress.quantize import transform
from tfcompress.quantize.affine import QuantizeChannelAffine
from tfcompress.quantize.bit_widths import check_bits, check_layer_bits
from tfcompress.quantize.graph import ConstantArithmetic
from tfcompress.quantize.layers import QUANTIZE_LAYERS as _CORE_LAYERS
from tfcompress.quantize.layers import QuantizeFused
from tfcompress.quantize.pooling import (QuantizeAveragePooling,
                                         QuantizeResizing)
from tfcompress.quantize.qat_base import layer_name_prefix
from tfcompress.quantize.schemes import Default8BitScheme, check_scheme
from tfcompress.utils.arguments import check_flags, check_model
from tfcompress.utils.flatten import (flatten_nested, has_nested_model,
                                      repeated_names)
from tfcompress.utils.layer_map import (copy_layer, iter_layers,
                                        keep_output_names, map_layers)
from tfcompress.errors import InputError

QUANTIZE_LAYERS = _CORE_LAYERS + (QuantizeChannelAffine,)


@dataclasses.dataclass
class QuantizeConfig:
    """How to quantize a layer tfcompress has no built-in rule for.

    ``quantize_output``: fake-quantize the layer's output (weightless or
    integer-friendly layers); False keeps the layer float (it is then
    reported, and strict int8 conversion will name it).
    ``weight_bits``: on a Conv/Dense layer, quantize it by the default
    rule with this many weight bits (as ``layer_bits`` does).

    >>> QuantizeConfig(weight_bits=4).weight_bits
    4
    """
    quantize_output: bool = True
    weight_bits: int | None = None

    def __post_init__(self):
        if self.weight_bits is not None:
            self.weight_bits = check_bits(self.weight_bits,
                                          "QuantizeConfig.weight_bits")

    def describe(self):
        return "output int8 (annotated)" if self.quantize_output else \
            "FLOAT (annotated)"


def OutputQuantizeConfig():
    """Config that fake-quantizes a custom layer's output.

    For a custom layer without weights: its output gets an int8 range,
    so its TFLite ops run on int8 between quantized neighbours.

    >>> import keras
    >>> class Double(keras.layers.Layer):  # a custom weightless layer
    ...     def call(self, x):
    ...         return 2.0 * x
    >>> inputs = keras.Input((8,), name="x")
    >>> h = quantize_annotate_layer(keras.layers.Dense(4, name="fc"))(inputs)
    >>> h = quantize_annotate_layer(Double(name="double"),
    ...                             OutputQuantizeConfig())(h)
    >>> outputs = quantize_annotate_layer(
    ...     keras.layers.LayerNormalization(name="norm"),
    ...     NoOpQuantizeConfig())(h)
    >>> qat = quantize_apply(keras.Model(inputs, outputs))
    >>> type(qat.get_layer("quant_double")).__name__
    'QuantizeOutput'
    >>> [r["quantized"] for r in qat.quantize_report
    ...  if r["layer"] == "double"]
    ['output int8 (annotated)']
    """
    return QuantizeConfig(quantize_output=True)


def NoOpQuantizeConfig():
    """Config that leaves a layer float.

    The layer keeps its float ops in the flatbuffer (``convert`` in
    strict int8 mode names them); its neighbours are still quantized.

    >>> import keras
    >>> class Double(keras.layers.Layer):  # a custom weightless layer
    ...     def call(self, x):
    ...         return 2.0 * x
    >>> inputs = keras.Input((8,), name="x")
    >>> h = quantize_annotate_layer(keras.layers.Dense(4, name="fc"))(inputs)
    >>> h = quantize_annotate_layer(Double(name="double"),
    ...                             OutputQuantizeConfig())(h)
    >>> outputs = quantize_annotate_layer(
    ...     keras.layers.LayerNormalization(name="norm"),
    ...     NoOpQuantizeConfig())(h)
    >>> qat = quantize_apply(keras.Model(inputs, outputs))
    >>> type(qat.get_layer("norm")).__name__  # not wrapped
    'LayerNormalization'
    >>> for r in qat.quantize_report[1:]:
    ...     print(r["layer"], "->", r["quantized"])
    fc -> weights int8 per-tensor, output int8
    double -> output int8 (annotated)
    norm -> FLOAT (annotated)
    """
    return QuantizeConfig(quantize_output=False)


# tfmot's QuantizeConfig interface: tfcompress quantizes by rule and never
# calls these, so a config that defines them would be silently ignored
TFMOT_CONFIG_METHODS = ("get_weights_and_quantizers",
                        "get_activations_and_quantizers",
                        "set_quantize_weights", "set_quantize_activations",
                        "get_output_quantizers")


def _check_config(config, layer):
    if config is None:
        return
    tfmot_style = [m for m in TFMOT_CONFIG_METHODS if hasattr(config, m)]
    if isinstance(config, QuantizeConfig) and not tfmot_style:
        return
    what = (f"defines tfmot's {', '.join(tfmot_style)}, which tfcompress "
            "does not call (it quantizes by rule)" if tfmot_style else
            "is not a tfcompress.quantize.QuantizeConfig")
    raise InputError(
        f"quantize_annotate_layer({layer.name!r}): the config "
        f"{type(config).__name__} {what}; pass QuantizeConfig(weight_bits="
        "N) for a Conv/Dense with N-bit weights, OutputQuantizeConfig() to "
        "quantize only the output, NoOpQuantizeConfig() to keep the layer "
        "float, or no config for tfcompress's rule")


def _alias(ours, ours_name, tfmots, tfmots_name, api, required=False):
    """The argument given under our name or tfmot's, not both."""
    if tfmots is None:
        if ours is None and required:
            raise InputError(f"{api}: give the {ours_name} to quantize")
        return ours
    if ours is not None:
        raise InputError(f"{api}: give {ours_name}= or tfmot's "
                         f"{tfmots_name}=, not both")
    return tfmots


def quantize_annotate_layer(layer=None, config=None, *, to_annotate=None,
                            quantize_config=None):
    """Returns a copy of ``layer`` marked for quantization (with ``config``
    for custom layers); ``layer`` itself is unchanged. Use the copy where
    the layer would go when building the model. tfmot's keywords
    ``to_annotate=`` and ``quantize_config=`` are accepted too.

    >>> import keras
    >>> layer = quantize_annotate_layer(keras.layers.LayerNormalization(),
    ...                                 NoOpQuantizeConfig())
    >>> layer = quantize_annotate_layer(to_annotate=keras.layers.Dense(2),
    ...                                 quantize_config=None)
    """
    layer = _alias(layer, "layer", to_annotate, "to_annotate",
                   "quantize_annotate_layer", required=True)
    config = _alias(config, "config", quantize_config, "quantize_config",
                    "quantize_annotate_layer")
    check_model(layer, "quantize_annotate_layer", layers_too=True)
    if isinstance(layer, keras.Model):
        raise InputError(
            f"quantize_annotate_layer takes a layer; {layer.name} is a "
            "model: annotate the layers inside it, or all of them with "
            "quantize_annotate_model(model)")
    _check_config(config, layer)
    annotated = copy_layer(layer)
    annotated._tfcompress_quantize_config = config or "default"
    return annotated


def quantize_annotate_model(model=None, *, to_annotate=None):
    """Returns a copy of ``model`` whose layers without an annotation are
    marked for default quantization; ``model`` itself is unchanged.
    tfmot's keyword ``to_annotate=`` is accepted for ``model``.

    >>> from tfcompress.models import lenet_300_100
    >>> annotated = quantize_annotate_model(lenet_300_100())
    >>> has_fake_quant(quantize_apply(annotated))
    True
    >>> annotated = quantize_annotate_model(to_annotate=lenet_300_100())
    """
    model = _alias(model, "model", to_annotate, "to_annotate",
                   "quantize_annotate_model")
    check_model(model, "quantize_annotate_model")
    configs = {layer.name: getattr(layer, "_tfcompress_quantize_config",
                                   None)
               for layer in iter_layers(model)}

    def annotate(layer):
        layer._tfcompress_quantize_config = configs.get(layer.name) or \
            "default"
        return layer

    return map_layers(model, annotate)


def _flat_keeping_annotations(model):
    """``flatten_nested(model)`` with each layer's quantize annotation
    (lost when flattening copies the layers) put back by name."""
    configs = {layer.name: layer._tfcompress_quantize_config
               for layer in iter_layers(model)
               if hasattr(layer, "_tfcompress_quantize_config")}
    flat = flatten_nested(model)
    for layer in iter_layers(flat):
        if layer.name in configs:
            layer._tfcompress_quantize_config = configs[layer.name]
    return flat


def quantize_apply(model, scheme=None, layer_bits=None,
                   xnnpack_rewrites=True, *,
                   quantized_layer_name_prefix="quant_"):
    """Rebuilds ``model`` with fake-quant QAT layers per ``scheme``, for
    the layers annotated with :func:`quantize_annotate_layer` (or all of
    them, after :func:`quantize_annotate_model`).

    As in tfmot, layers without an annotation stay float; a quantized
    layer that reads a float tensor gets a quantizer on it (the
    flatbuffer's QUANTIZE op), and ``convert(..., strict=False)`` reports
    the float ops (``strict=True`` refuses them). A model with no annotated
    layer is an ``InputError``: use :func:`quantize_model` to quantize every
    layer.

    ``layer_bits`` (``{layer name: weight bits}``, 2 to 8) overrides
    ``scheme.weight_bits`` for the named Conv/Dense layers; activations
    keep ``scheme.activation_bits``. A model that nests others (a
    keras.applications base inside a Sequential) is quantized as one flat
    graph (:func:`tfcompress.prune.flatten_nested`): the QAT model is flat,
    with the same layer names. ``xnnpack_rewrites``: first write
    hard-swish as int8 ops the XNNPACK delegate runs
    (:func:`tfcompress.convert.rewrites.rewrite_hard_swish`), with fake-quant
    where the int8 flatbuffer quantizes them. Returns a new Keras model (the
    original is unchanged); its ``quantize_report`` attribute lists what
    happened to each layer.

    ``quantized_layer_name_prefix`` (tfmot's keyword): the QAT layers are
    named this prefix + the name of the layer they wrap (``quant_fc1``);
    ``None`` or ``""`` keeps the layer's own name. The quantizers of the
    model's inputs keep their names (``quant_input``).

    >>> import keras
    >>> i = keras.Input((8,))
    >>> x = quantize_annotate_layer(keras.layers.Dense(4, name="fc1"))(i)
    >>> m = keras.Model(i, keras.layers.Dense(2, name="fc2")(x))
    >>> {r["layer"]: r["quantized"] for r in
    ...  quantize_apply(m).quantize_report}["fc2"]
    'FLOAT (not annotated)'
    >>> qat = quantize_apply(m, quantized_layer_name_prefix="q8_")
    >>> [layer.name for layer in qat.layers[2:]]   # after the input's
    ['q8_fc1', 'fc2']
    """
    _check_model(model, "quantize_apply")
    scheme = check_scheme(scheme, "quantize_apply")
    annotated = {layer.name for layer in iter_layers(model)
                 if transform.is_annotated(layer)}
    if not annotated:
        raise InputError(
            f"quantize_apply: no layer of model {model.name} is annotated, so "
            "there is nothing to quantize. Annotate the layers to quantize "
            "with quantize_annotate_layer, or all of them with "
            "quantize_annotate_model, or call quantize_model(model)")
    not_annotated = sorted(set(layer_bits or {}) - annotated)
    if not_annotated and set(layer_bits) <= weight_layer_names(model):
        raise InputError(
            f"quantize_apply: layer_bits names {', '.join(not_annotated)}, "
            "which is not annotated and stays float; annotate it with "
            "quantize_annotate_layer or leave it out of layer_bits")
    return _quantize(model, scheme, layer_bits, xnnpack_rewrites,
                     annotated_only=True,
                     prefix=_check_prefix(quantized_layer_name_prefix,
                                          "quantize_apply"))


def _check_prefix(prefix, api):
    """``quantized_layer_name_prefix``: a string without ``/`` (a Keras
    layer name cannot hold one) or None; InputError otherwise."""
    if prefix is None or (isinstance(prefix, str) and "/" not in prefix):
        return prefix
    raise InputError(
        f"{api}: quantized_layer_name_prefix must be a string without '/' "
        f"(a layer name cannot hold one) or None, got {prefix!r:.60}")


def _check_model(model, api):
    check_model(model, api)
    if not model.built:
        raise InputError(f"model {model.name} is not built; give it an Input")
    from tfcompress.utils.training_wrappers import refuse_wrapped
    refuse_wrapped(
        model, api, lambda layer: (
            f"{api}: model {model.name} is already quantized (layer "
            f"{layer.name!r} is a QAT layer); pass the float model instead, "
            "or keep training and convert this one"),
        {"pruning": " (and quantize with PrunePreservingScheme() to keep "
                    "the zeros)",
         "clustering": " (and quantize with ClusterPreservingScheme() to "
                       "keep the clusters)"})


def _quantize(model, scheme, layer_bits, xnnpack_rewrites, annotated_only,
              prefix="quant_"):
    check_flags("quantize_model" if not annotated_only else
                "quantize_apply", xnnpack_rewrites=xnnpack_rewrites)
    original = model
    scheme = scheme or Default8BitScheme()
    layer_bits = check_layer_bits(layer_bits, weight_layer_names(model))
    if has_nested_model(model) and not repeated_names(model):
        # one flat graph: a nested model quantized on its own gets an
        # input range of its own, and the converter a float island at its
        # border
        model = _flat_keeping_annotations(model)
    model = _float32_compute(model)
    if xnnpack_rewrites:
        from tfcompress.convert.rewrites import rewrite_hard_swish
        model = rewrite_hard_swish(model, annotated_only=annotated_only)
    report = []
    # int8 simulation computes in float32, also under a mixed_float16
    # global policy (TensorFlow's fake-quant ops take float32 only)
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        with layer_name_prefix(prefix):
            qat = transform.quantize_graph(model, scheme, report, layer_bits,
                                           annotated_only=annotated_only)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    keep_output_names(qat, original)
    if original.compiled and original.get_compile_config():
        # compiled as the original was (a fresh optimizer), as
        # clone_model and prune_low_magnitude do
        qat.compile_from_config(original.get_compile_config())
    qat.quantize_report = report
    qat.quantize_scheme = scheme
    return qat


def _float32_compute(model):
    """``model``, or a copy computing in float32 if it was built under a
    mixed-precision policy; annotations are carried over."""
    from tfcompress.convert.precision import float32_compute
    copy, half = float32_compute(model)
    if half:
        for old, new in zip(iter_layers(model), iter_layers(copy)):
            for key, value in vars(old).items():
                if key.startswith("_tfcompress_"):
                    setattr(new, key, value)
    return copy


def weight_layer_names(model):
    """Names of the layers whose weights QAT fake-quantizes (the names
    ``layer_bits`` takes)."""
    return {layer.name for layer in iter_layers(model)
            if isinstance(layer, transform.FUSABLE)}


def quantize_model(model=None, scheme=None, layer_bits=None,
                   xnnpack_rewrites=True, *, to_quantize=None,
                   quantized_layer_name_prefix="quant_"):
    """QAT in one call: annotate every layer and apply ``scheme``.

    Works on Sequential, Functional and nested models. Layers without a
    quantize rule raise an error that says how to annotate them.
    ``layer_bits`` sets the weight bits of single layers, e.g.
    ``{"fc1": 4}`` for packed 4-bit weights in one Dense layer; a layer
    whose TFLite op has no 4-bit kernel stays 8-bit (``summary`` says so).
    tfmot's keyword ``to_quantize=`` is accepted for ``model``, and its
    ``quantized_layer_name_prefix`` as in :func:`quantize_apply`. A
    compiled ``model`` gives a QAT model compiled the same way (loss,
    metrics, a fresh optimizer of the same configuration).

    >>> from tfcompress.models import seed_cnn
    >>> qat = quantize_model(seed_cnn())
    >>> has_fake_quant(qat)
    True
    >>> model = seed_cnn()
    >>> big = max(model.layers, key=lambda l: l.count_params()).name
    >>> qat4 = quantize_model(model, layer_bits={big: 4})
    >>> [r["weight_bits"] for r in summary(qat4, print_fn=None)
    ...  if r.get("wraps") == big]
    [4]
    """
    model = _alias(model, "model", to_quantize, "to_quantize",
                   "quantize_model", required=True)
    _check_model(model, "quantize_model")
    scheme = check_scheme(scheme, "quantize_model")
    # unannotated layers get the default rule: no annotated copy needed
    return _quantize(model, scheme, layer_bits, xnnpack_rewrites,
                     annotated_only=False,
                     prefix=_check_prefix(quantized_layer_name_prefix,
                                          "quantize_model"))


@contextlib.contextmanager
def quantize_scope(*args):
    """Makes tfcompress's QAT layers known when loading ``.keras`` files.

    They are registered serializables already, so this scope is only for
    code written for tfmot:

    >>> with quantize_scope():
    ...     pass
    """
    objects = {cls.__name__: cls for cls in QUANTIZE_LAYERS + (
        ConstantArithmetic, QuantizeAveragePooling, QuantizeResizing)}
    for a in args:
        objects.update(a)
    with keras.saving.custom_object_scope(objects):
        yield


def has_fake_quant(model) -> bool:
    """True if ``model`` contains tfcompress QAT layers.

    >>> import keras
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> has_fake_quant(model), has_fake_quant(quantize_model(model))
    (False, True)
    """
    return any(isinstance(l, QUANTIZE_LAYERS) for l in iter_layers(model))


def summary(model, print_fn=print) -> list:
    """Per QAT layer: what is quantized, bits, folded BN and ranges;
    layers QAT leaves without fake-quant (LayerNormalization, LayerScale,
    layers ``quantize_apply`` found without annotation) are rows with a
    ``float`` entry saying so. Every layer with weights has
    ``weight_bits``; a ``note`` says when they differ from the bits asked
    for (e.g. an op with no 4-bit TFLite kernel kept at 8 bits).

    >>> import keras
    >>> model = keras.Sequential([
    ...     keras.Input((8, 8, 1)),
    ...     keras.layers.Conv2D(4, 3, name="conv"),
    ...     keras.layers.BatchNormalization(name="bn"),
    ...     keras.layers.ReLU(name="relu"),
    ...     keras.layers.Flatten(name="flatten"),
    ...     keras.layers.Dense(3, name="logits")])
    >>> rows = summary(quantize_model(model, layer_bits={"logits": 4}),
    ...                print_fn=None)
    >>> [r["layer"] for r in rows]
    ['quant_input', 'quant_conv', 'quant_logits']
    >>> [r["type"] for r in rows]
    ['QuantizeOutput', 'QuantizeFused', 'QuantizeFused']
    >>> conv = rows[1]
    >>> conv["folded_batchnorm"], conv["activation"], conv["per_channel"]
    ('bn', 'relu', True)
    >>> rows[2]["weight_bits"], rows[2]["per_channel"]
    (4, False)
    """
    check_model(model, "quantize.summary")
    rows = []
    for layer in iter_layers(model):
        kept = getattr(layer, "_tfcompress_kept_float", False)
        if kept:
            rows.append({"layer": layer.name, "type": type(layer).__name__,
                         "output_range": None,
                         "float": kept if isinstance(kept, str) else
                         "kept float: TFLite has no int8 kernel for "
                         "LayerNormalization's NEG; the converter keeps "
                         "its ops float"})
            continue
        if not isinstance(layer, QUANTIZE_LAYERS):
            continue
        lo, hi, _ = layer.range
        own = getattr(layer, "quantize_output", True)
        row = {"layer": layer.name, "type": type(layer).__name__,
               "output_range": ((round(float(lo.numpy()), 5),
                                 round(float(hi.numpy()), 5)) if own
                                else None),
               "activation_bits": layer.activation_bits}
        if isinstance(layer, QuantizeFused):
            row.update({"wraps": layer.layer.name,
                        "folded_batchnorm": (layer.batchnorm.name
                                             if layer.batchnorm else None),
                        "activation": layer.activation_name,
                        "weight_bits": layer.weight_bits,
                        "per_channel": layer.per_channel,
                        "preserve_sparsity": layer.preserve_sparsity,
                        "preserve_clusters": (
                            int(layer.cluster_centroids.shape[-1])
                            if layer.cluster_centroids is not None
                            else None)})
            if layer.weight_bits_note:
                row["note"] = layer.weight_bits_note
        elif hasattr(layer, "weight_bits"):    # per-channel affine
            row["weight_bits"] = layer.weight_bits
        rows.append(row)
    if print_fn is not None:
        for r in rows:
            print_fn("  ".join(f"{k}={v}" for k, v in r.items()))
    return rows
