"""``convert``: strip training wrappers and write a TFLite flatbuffer."""

from __future__ import annotations

import re
import time

import numpy as np

from tfcompress import compat
from tfcompress.convert.inputs import (as_samples, describe_ranges, first,
                                       input_dtypes, input_layer_names,
                                       input_ranges, input_shapes,
                                       one_at_a_time, random_samples)
from tfcompress.convert.recurrent import check_integer_conversion
from tfcompress.convert.options import (CALIBRATIONS, INTEGER_MODES,
                                        IO_TYPES, MODES, io_types_for)
from tfcompress.convert.result import (ConversionResult, FloatFallbackError,
                                       UnrunnableModelError)
from tfcompress.errors import InputError
from tfcompress.convert.precision import (float32_compute,
                                          half_precision_layers)
from tfcompress.quiet import (converter_output_silenced,
                             native_stderr_filtered, wants_native_logs)
from tfcompress.utils.atomic import check_writable_folder
from tfcompress.utils.arguments import (check_counts, check_flags,
                                         check_path)


def strip_training_wrappers(model):
    """Removes pruning and clustering wrappers (QAT layers are kept: the
    converter reads their fake-quant ranges). Accepts tf_keras models made
    by tfmot and strips them with tfmot's own functions.

    :func:`convert` calls it; call it yourself to save the plain model.

    >>> import keras
    >>> from tfcompress import prune
    >>> model = keras.Sequential([keras.Input((8,)),
    ...                           keras.layers.Dense(4, name="fc")])
    >>> pruned = prune.prune_low_magnitude(
    ...     model, prune.ConstantSparsity(0.5, begin_step=0))
    >>> [type(layer).__name__ for layer in pruned.layers]
    ['PruneLowMagnitude']
    >>> plain = strip_training_wrappers(pruned)
    >>> [(type(layer).__name__, layer.name) for layer in plain.layers]
    [('Dense', 'fc')]
    >>> strip_training_wrappers(model) is model  # nothing to strip
    True
    """
    if type(model).__module__.startswith("tf_keras"):
        import tensorflow_model_optimization as tfmot
        model = tfmot.sparsity.keras.strip_pruning(model)
        # returns a model without clustering wrappers as it is
        return tfmot.clustering.keras.strip_clustering(model)
    try:
        from tfcompress.prune import is_pruned, strip_pruning
        if is_pruned(model):
            model = strip_pruning(model)
    except ImportError:
        pass
    try:
        from tfcompress.cluster import strip_clustering
        from tfcompress.utils.layer_map import is_container
        # a subclassed model cannot be rebuilt; its clustering wrappers
        # compute the clustered kernels, which conversion folds
        if is_container(model):
            model = strip_clustering(model)
    except (ImportError, AttributeError):
        pass
    return model


def _static_reshape_class():
    import keras

    class StaticReshape(keras.layers.Layer):
        """A reshape to ``(-1, *target_shape)`` with every feature dimension
        known: the same result for any batch size, one TFLite RESHAPE."""

        def __init__(self, target_shape, **kwargs):
            super().__init__(**kwargs)
            self.target_shape = tuple(int(d) for d in target_shape)

        def call(self, x):
            return keras.ops.reshape(x, (-1, *self.target_shape))

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *self.target_shape)

        def get_config(self):
            return {**super().get_config(), "target_shape": self.target_shape}
    return StaticReshape


def _static_target(layer):
    """The feature shape ``layer`` (a Keras ``Flatten`` or ``Reshape``)
    writes, every dimension known; None when it cannot be known before run
    time."""
    import keras
    if type(layer) not in (keras.layers.Flatten, keras.layers.Reshape):
        return None
    features = tuple(layer.input.shape[1:])
    if None in features:
        return None
    if type(layer) is keras.layers.Flatten:
        if layer.data_format != "channels_last":
            return None
        return (int(np.prod(features)),)
    target = tuple(layer.output.shape[1:])
    return None if None in target else target


def batch_free_reshape(model):
    """Replaces Keras 3 ``Flatten`` (channels-last) and ``Reshape`` layers
    whose output shape is known with a reshape to ``(-1, *shape)``.

    Keras 3's Flatten and Reshape reshape to ``(batch, ...)`` with the
    batch read at run time, which the converter writes as SHAPE +
    STRIDED_SLICE + PACK before every RESHAPE (tf_keras' gave a single
    RESHAPE); XNNPACK does not take those ops, so each squeeze-and-excite
    ``Reshape`` (EfficientNet) cuts the graph into two more delegate
    partitions. The replacement computes the same values and converts to
    one RESHAPE. Models it cannot rebuild (subclassed) are returned as
    they are.

    >>> import keras
    >>> i = keras.Input((4,))
    >>> m = keras.Model(i, keras.layers.Reshape((2, 2))(i))
    >>> type(batch_free_reshape(m).layers[-1]).__name__
    'StaticReshape'
    """
    from tfcompress.utils.layer_map import is_container, iter_layers, \
        map_layers
    if not is_container(model):
        return model
    if not any(_static_target(l) for l in iter_layers(model)):
        return model
    cls = _static_reshape_class()

    def replace(layer):
        target = _static_target(layer)
        return layer if target is None else cls(target, name=layer.name)
    return map_layers(model, replace, copy=False)


def outside_strategy(model):
    """A copy of ``model`` with plain variables when it was built inside a
    tf.distribute strategy scope (else ``model`` itself).

    Exporting distributed variables is a collective operation under
    MultiWorkerMirroredStrategy (every worker would have to convert); the
    copy lets the chief convert alone.
    """
    if compat.model_distribute_strategy(model) is None:
        return model        # built outside any strategy scope
    import keras
    import tensorflow as tf
    if tf.distribute.has_strategy():
        raise InputError("convert() inside strategy.scope(): call it "
                         "outside the scope")
    copy = keras.models.clone_model(model)
    copy.set_weights([np.asarray(w) for w in model.get_weights()])
    return copy


def has_fake_quant(model) -> bool:
    """True if ``model`` holds QAT fake-quant layers (tfcompress or tfmot).

    :func:`convert` then takes the ranges from the fake-quant layers, so
    ``representative_data`` is optional.

    >>> import keras
    >>> from tfcompress import quantize
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> has_fake_quant(model), has_fake_quant(quantize.quantize_model(model))
    (False, True)
    """
    if type(model).__module__.startswith("tf_keras"):
        return any("Quantize" in type(l).__name__ for l in model.layers)
    try:
        from tfcompress.quantize import has_fake_quant as quantized
        return bool(quantized(model))
    except (ImportError, AttributeError):
        return False


def _check_model(model):
    import keras
    ok = isinstance(model, keras.Model) or \
        type(model).__module__.startswith("tf_keras")
    if not ok:
        raise InputError(f"convert takes a Keras model, got "
                         f"{type(model).__name__}; load it with "
                         "keras.models.load_model first")
    if not model.built or not getattr(model, "inputs", None) and \
            not model.built:
        raise InputError(f"model {model.name} is not built; call it on "
                         "data or give it an Input layer first")
    for name, shape in zip(input_layer_names(model),
                           input_shapes(model) or []):
        if None in shape:
            sized = ", ".join("n" if d is None else str(d) for d in shape)
            sized += "," if len(shape) == 1 else ""
            raise InputError(
                f"input {name!r} of model {model.name} has shape {shape}; "
                f"convert needs every size but the batch's: convert "
                f"keras.Model(i, model(i)) with i = keras.Input(({sized})),"
                f" each n the size you deploy")


def _tf_type(name):
    import tensorflow as tf
    return {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8,
            "int16": tf.int16}[name]


def convert(model, mode="int8", representative_data=None,
            input_type="float32", output_type="float32", output_path=None,
            strict=None, sparse=False, calibration="minmax",
            calibration_samples=200, percentile=99.99, check_data=None,
            check_samples=200, per_channel=True, xnnpack_rewrites=True,
            float_layers=None):
    """Converts a Keras model to a TFLite flatbuffer and reports on it.

    Args:
      model: a Keras 3 model, plain, pruned (wrappers are stripped here),
        QAT (its fake-quant ranges are used) or both; or a tf_keras model
        made by tfmot.
      mode: ``float32``, ``float16``, ``dynamic`` (int8 weights, float
        activations), ``int8`` (fully integer) or ``int16x8``.
      representative_data: inputs for calibration (array ``(n, ...)``,
        ``(x, y)``, a generator function as TFLite takes, a generator or a
        ``tf.data.Dataset`` of samples or batches; for a model
        with several inputs a list of arrays in ``model.inputs`` order or
        a dict keyed by input name). Required for post-training
        ``int8``/``int16x8``; optional for QAT models.
      input_type, output_type: ``float32``; ``int8`` or ``uint8`` with
        mode ``int8``; ``int16`` with mode ``int16x8``
        (:func:`tfcompress.convert.options.io_types_for`).
      output_path: where to write the ``.tflite`` (atomically); optional.
      strict: raise :class:`FloatFallbackError` if any op computes in float.
        Defaults to True for ``int8``/``int16x8``; other modes compute in
        float and take only False (or None).
      sparse: store pruned weights in TFLite's sparse format where the
        converter supports it (``Optimize.EXPERIMENTAL_SPARSITY``). The
        report's notes say which weights were stored sparse and whether
        DENSIFY ops expand them at load (then only the file is smaller).
      calibration: activation ranges for post-training int8: ``minmax``,
        ``percentile`` or ``entropy``. ``int16x8``, the float modes and QAT
        models (ranges learned in training) take ``minmax`` only: another
        method would have no effect and is an :class:`InputError`.
      check_data: inputs to compare TFLite and Keras outputs on (default:
        the representative data, else random inputs); a model with several
        outputs is compared output by output.
      per_channel: quantize post-training weights per output channel
        (default); False gives one scale per weight tensor, what some NPUs
        and microcontroller kernels need (see :mod:`tfcompress.ptq` to
        keep accuracy). Weights of QAT models follow their fake-quant
        layers.
      xnnpack_rewrites: for post-training ``int8``, write hard-swish as
        int8 ops the XNNPACK delegate runs instead of HARD_SWISH, which it
        does not (:mod:`tfcompress.convert.rewrites`); for ``int16x8``,
        as int16 ops, where TFLite has no int16 HARD_SWISH kernel at all.
        The same function; False keeps the converter's own graph. QAT
        models carry the rewrite from ``quantize_apply``.
      float_layers: names of Keras layers whose ops stay float32 in a
        post-training ``int8`` model (QUANTIZE/DEQUANTIZE around them),
        for layers that lose too much accuracy in int8
        (:mod:`tfcompress.convert.fallback`). Strict mode accepts their
        float ops; the report lists them under ``float_by_request``.

    Returns:
      A :class:`ConversionResult`.

    Example:

    >>> from tfcompress.models import lenet_300_100
    >>> import numpy as np
    >>> x = np.random.rand(16, 28, 28, 1).astype("float32")
    >>> result = convert(lenet_300_100(), "int8", representative_data=x)
    >>> result.report["fully_integer"]
    True

    The converter's and LiteRT's C++ log lines (``fully_quantize: 0``,
    the XNNPACK delegate note) are kept out of the output unless
    ``TF_CPP_MIN_LOG_LEVEL`` is 0 or 1; on an unexpected error they are
    shown (an :class:`InputError` or a strict-mode
    :class:`FloatFallbackError` says what is wrong by itself).
    """
    # traced with the fake-quant ops the converter reads its ranges from,
    # even inside quantize.device_rounding (imported here: importing the
    # quantize package loads TensorFlow, which `tfcompress inspect` skips)
    from tfcompress.quantize.int8_rounding import fake_quant_rounding
    with native_stderr_filtered(enabled=not wants_native_logs(),
                                user_errors=(InputError, FloatFallbackError)
                                ), fake_quant_rounding():
        return _convert(model, mode, representative_data, input_type,
                        output_type, output_path, strict, sparse,
                        calibration, calibration_samples, percentile,
                        check_data, check_samples, per_channel,
                        xnnpack_rewrites, float_layers)


def _convert(model, mode, representative_data, input_type, output_type,
             output_path, strict, sparse, calibration, calibration_samples,
             percentile, check_data, check_samples, per_channel,
             xnnpack_rewrites, float_layers):
    """:func:`convert`, its arguments checked here, C++ logs not
    filtered."""
    _check_arguments(mode, input_type, output_type, calibration, sparse,
                     float_layers, output_path)
    check_counts("convert", calibration_samples=calibration_samples,
                 check_samples=check_samples)
    check_flags("convert", sparse=sparse, per_channel=per_channel,
                xnnpack_rewrites=xnnpack_rewrites,
                **({} if strict is None else {"strict": strict}))
    if not isinstance(percentile, (int, float)) or \
            not 50 < percentile <= 100:
        # below 50 the lower bound passes the upper one
        raise InputError(f"percentile={percentile!r}: give the share of "
                         "values each range keeps on each side, above 50 "
                         "and at most 100 (e.g. 99.99)")
    if percentile != 99.99 and calibration != "percentile":
        # the share is read by percentile calibration alone
        raise InputError(f"percentile={percentile!r} sets the share kept by "
                         f"calibration='percentile', but calibration is "
                         f"{calibration!r}: pass calibration='percentile' "
                         "too, or leave percentile out")
    _check_model(model)
    if strict is None:
        strict = mode in INTEGER_MODES
    elif strict and mode not in INTEGER_MODES:
        # every op of a float model computes in float by design
        raise InputError(f"strict=True refuses float ops in an int8 or "
                         f"int16x8 model; mode {mode} computes in float: "
                         "use mode int8 or int16x8, or leave strict unset")

    start = time.time()
    keras_model = model = outside_strategy(model)
    model = batch_free_reshape(strip_training_wrappers(model))
    model, half_precision = float32_compute(model)
    qat = has_fake_quant(model)
    _check_qat_calibration(qat, calibration)
    if mode in ("int8", "int16x8") and xnnpack_rewrites and not qat:
        # keras is imported on first use, not with the CLI
        from tfcompress.convert.rewrites import rewrite_hard_swish
        model = rewrite_hard_swish(model)
    float_layers = _check_float_layers(float_layers, model, mode, qat)
    if qat and mode in ("int8", "int16x8") and representative_data is None:
        _check_output_only_layers(model)
    qat_float, no_kernel = (_qat_float_layers(model)
                            if qat and mode == "int8" else ([], set()))
    if qat_float:
        float_layers = qat_float
    check_integer_conversion(model, mode)
    # a generator or data set is read no further than needed
    samples = as_samples(representative_data, model,
                         limit=max(calibration_samples, check_samples))
    if isinstance(samples, list) and (float_layers or calibration !=
                                      "minmax"):
        raise InputError(
            "float_layers and calibration other than minmax work on "
            "single-input models; this model has "
            f"{len(samples)} inputs: use calibration='minmax' without "
            "float_layers")
    notes = []
    if half_precision:
        notes.append(
            f"{len(half_precision)} layer(s) computed in float16 (mixed "
            "precision), which TFLite has no kernels for: converted a "
            "copy computing in float32 with the same weights, and checked "
            "against that copy")
    given = samples     # the user's data, if any
    if mode in ("int8", "int16x8") and samples is None:
        if not qat:
            raise InputError(
                f"mode {mode} without QAT needs representative_data (about "
                "100-500 typical inputs) to calibrate activation ranges")
        samples = random_samples(input_shapes(model), 8, seed=0,
                                 dtypes=input_dtypes(model),
                                 ranges=input_ranges(model))
        notes.append("QAT model: ranges come from its fake-quant layers; 8 "
                     "random inputs were given to the converter only to "
                     "satisfy its representative-dataset check "
                     "(tensorflow#38285)")
    calib = None if samples is None else first(samples,
                                                calibration_samples)
    if calib is not None:
        _check_finite_outputs(model, calib)
        count = len(calib[0] if isinstance(calib, list) else calib)
        if given is not None and count < calibration_samples:
            notes.append(
                f"activation ranges calibrated from {count} samples "
                f"(calibration_samples={calibration_samples}): ranges from "
                "few samples miss the values other inputs reach; give "
                "100-500 typical inputs")

    def configured(converter):
        return _configure(converter, mode, calib, sparse, per_channel,
                          input_type, output_type)

    def run(converter):
        with converter_output_silenced():
            if float_layers or (mode == "int8" and not qat
                                and calibration != "minmax"):
                return _convert_recalibrated(
                    configured(converter), calib, calibration, percentile,
                    input_type, output_type, per_channel,
                    _float_nodes_of(float_layers, model,
                                    every_layer_has_ops=not qat_float))
            return configured(converter).convert(), None, None

    tflite_bytes, ranges, float_nodes = _frozen_or_savedmodel(
        run, model, mode, notes)
    seconds = time.time() - start
    result = ConversionResult.build(
        tflite_bytes, mode=mode, keras_model=model, qat=qat,
        calibration=("qat" if qat else calibration if mode == "int8" and
                     samples is not None else None),
        calibration_ranges=ranges, notes=notes, seconds=seconds,
        layer_names=_layer_names(keras_model),
        output_layers=_output_layers(model))
    if float_layers:
        _mark_float_layers(result, float_nodes, no_kernel,
                           by_qat=bool(qat_float))
    if sparse:
        _note_sparse_storage(result)
    _check_numerically(result, model, given, check_data, check_samples)
    if strict and result.fallback_ops:
        raise FloatFallbackError(result)
    if output_path is not None:
        result.save(output_path)
    return result


def _check_finite_outputs(model, calib):
    """Raises :class:`InputError` if ``model`` outputs NaN or inf on the
    calibration samples ``calib``: ranges calibrated from them are
    meaningless, and TensorFlow's calibration can crash the process on
    them (a segmentation fault, seen on a diverged EfficientNetB0)."""
    import keras
    from tfcompress.convert.inputs import model_feed
    outputs = keras.tree.flatten(model.predict(model_feed(model, calib),
                                               verbose=0, batch_size=256))
    count = len(calib[0] if isinstance(calib, list) else calib)
    bad = np.zeros(count, bool)
    for output in outputs:
        output = np.asarray(output)
        if output.dtype.kind == "f":
            bad |= ~np.isfinite(output.reshape(count, -1)).all(axis=1)
    if bad.any():
        raise InputError(
            f"the model's outputs hold NaN or infinite values on "
            f"{int(bad.sum())} of the {count} representative samples: its "
            "weights or batch-norm statistics have diverged (retrain with "
            "a lower learning rate, or load the last good weights); "
            "nothing was converted")


def _mark_float_layers(result, float_nodes, no_kernel, by_qat):
    """Marks the float ops of the layers kept float on purpose (asked for,
    or left float by QAT) in ``result``'s report."""
    from tfcompress.convert.fallback import mark_requested
    # LayerNormalization/LayerScale stay float but are not asked for:
    # strict mode refuses them
    requested = {layer: nodes for layer, nodes in float_nodes.items()
                 if layer not in no_kernel}
    mark_requested(result.report, requested, by=(
        "QAT (not annotated, or NoOpQuantizeConfig)" if by_qat
        else "request"))


def _check_numerically(result, model, samples, check_data, check_samples):
    """Compares the flatbuffer with ``model`` on ``check_data``, else the
    calibration samples, else random inputs in the range the model's
    inputs take (:func:`input_ranges`; said in the report)."""
    check = as_samples(check_data, model, "check_data",
                       limit=check_samples) \
        if check_data is not None else samples
    if check is None:
        # a subclassed model has no symbolic inputs: the flatbuffer's shape
        shapes = input_shapes(model) or [tuple(
            result.report["inputs"][0]["shape"][1:])]
        ranges, dtypes = input_ranges(model), input_dtypes(model)
        check = random_samples(shapes, 32, seed=1, dtypes=dtypes,
                               ranges=ranges)
        result.report["numerical_check_data"] = (
            "random inputs in " + describe_ranges(dtypes, ranges))
    try:
        result.add_numerical_check(model, first(check, check_samples))
    except RuntimeError as e:
        if not re.search(r"failed to (prepare|invoke)", str(e)):
            raise
        raise UnrunnableModelError(_cannot_run(result.report, e)) from e


def _cannot_run(report, error):
    """What to say when LiteRT cannot prepare or run the converted
    flatbuffer (``error``: its ``Node number N (OP) failed to ...``)."""
    reason = " ".join(str(error).split())
    match = re.search(r"Node number (\d+) \((\w+)\) failed to (prepare|"
                      r"invoke)", reason)
    where = ""
    if match and int(match.group(1)) < len(report["ops"]):
        op = report["ops"][int(match.group(1))]
        where = f" op #{op['index']} {op['op']} (layer {op['layer']}):"
    mode = report["mode"]
    if mode != "int16x8":
        hint = ""
    elif "overflow" in reason:
        hint = (". Its 16-bit kernels refuse some very narrow calibrated "
                "ranges (activations near zero); mode int8 converts such a "
                "model, or calibrate on inputs that give the layer a wider "
                "range")
    else:
        hint = (". LiteRT has no 16-bit kernel for it (LayerNormalization "
                "computes SQUARED_DIFFERENCE): convert with mode int8 "
                "(strict=False keeps such ops float) or float16")
    return (f"LiteRT cannot run the converted {mode} flatbuffer, so "
            f"nothing was written:{where} {reason.rstrip('.')[:300]}{hint}")


def _configure(converter, mode, calib, sparse, per_channel, input_type,
               output_type):
    """Sets ``converter`` up for ``mode`` (optimizations, representative
    data, op sets, I/O types); returns it."""
    import tensorflow as tf
    optimizations = []
    if mode != "float32":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    if not per_channel and mode != "float32":
        compat.disable_per_channel_quantization(converter)
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode in ("int8", "int16x8"):
        converter.representative_dataset = lambda: one_at_a_time(calib)
        ops = (tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if mode == "int8" else
               tf.lite.OpsSet.
               EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)
        # TFLITE_BUILTINS too, so ops without an integer kernel convert and
        # are reported (strict mode raises) instead of failing obscurely.
        converter.target_spec.supported_ops = [ops,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.inference_input_type = _tf_type(input_type)
        converter.inference_output_type = _tf_type(output_type)
    return converter


def _frozen_or_savedmodel(run, model, mode, notes):
    """``run(converter)`` on the frozen inference function's converter
    (:mod:`tfcompress.convert.frozen`), signature added; if that fails, on
    ``from_keras_model``'s (the SavedModel round trip), with a note.
    Returns what ``run`` returns: ``(bytes, ranges, float nodes)``."""
    from tfcompress.convert.frozen import (add_signature,
                                           inference_converter,
                                           keras_converter)
    try:
        converter, inputs, outputs = inference_converter(model)
        tflite_bytes, ranges, float_nodes = run(converter)
        if inputs is not None:
            tflite_bytes = add_signature(tflite_bytes, inputs, outputs)
        return tflite_bytes, ranges, float_nodes
    except (InputError, compat.CompatError):
        raise
    except Exception as frozen_error:
        frozen_gist = _gist(frozen_error)
    try:
        converted = run(keras_converter(model))
    except (InputError, compat.CompatError):
        raise
    except Exception as e:   # converter errors are long: keep the gist
        gist = _gist(e)
        raise RuntimeError(f"TFLite conversion failed ({mode}): "
                           f"{gist}{_hint(gist, model)}") from e
    notes.append("converted through a SavedModel: the frozen inference "
                 f"function failed ({frozen_gist})")
    return converted


def _hint(gist, model) -> str:
    """What to do about a converter error ``gist`` on ``model``, if known."""
    if "TensorList" in gist:
        return ("; a recurrent layer converts with a fixed batch size "
                "(keras.Input(shape, batch_size=1)) or unroll=True")
    half = half_precision_layers(model)
    if half and "neither a custom op nor a flex op" in gist:
        return (f"; layers {', '.join(half[:3])}"
                f"{' ...' if len(half) > 3 else ''} compute in float16 "
                "(mixed precision), which TFLite has no kernels for: build "
                "the model again under keras.mixed_precision."
                "set_global_policy('float32'), load the weights, and "
                "convert that (mode='float16' halves the weights)")
    return ""


def _gist(error) -> str:
    """The message of a (long) converter error that says what went wrong:
    the first ``error:`` line's text, without its MLIR location."""
    lines = str(error).strip().splitlines()
    for line in lines:
        if "error: " not in line:
            continue
        message = line.split("error: ", 1)[1].strip()
        if message.startswith("loc("):
            message = message.rsplit("): ", 1)[-1].strip()
        if message and not message.startswith("loc("):
            return message[:300]
    gist = next((l for l in lines if "error" in l.lower()),
                lines[0] if lines else type(error).__name__)
    return gist.strip()[:300]


def _note_sparse_storage(result):
    """Says what ``sparse=True`` bought: which weights are stored sparse
    and whether the runtime densifies them at load (DENSIFY ops: a smaller
    file, not a faster or smaller-in-memory model)."""
    report = result.report
    stored = [w["name"] for w in report["weights"] if w.get("sparse_format")]
    densify = sum(op["op"] == "DENSIFY" for op in report["ops"])
    if not stored:
        report["notes"].append(
            "sparse=True: no weight was stored sparse (the converter found "
            "too few zeros); the flatbuffer is dense")
    elif densify:
        report["notes"].append(
            f"sparse=True: {len(stored)} weight(s) stored sparse; "
            f"{densify} DENSIFY op(s) expand them to dense tensors when the "
            "interpreter prepares the model: the file is smaller, but "
            "inference runs on dense weights (no speed-up; the dense copy "
            "is held in memory)")
    else:
        report["notes"].append(
            f"sparse=True: {len(stored)} weight(s) stored sparse and read "
            "by sparse kernels")


def _layer_names(model):
    try:
        from tfcompress.utils.layer_map import iter_layers
        return [l.name for l in iter_layers(model)]
    except Exception:
        return [l.name for l in getattr(model, "layers", [])]


def _check_float_layers(float_layers, model, mode, qat):
    if not float_layers:
        return []
    from tfcompress.convert.fallback import check_float_layers
    from tfcompress.utils.layer_map import is_container, iter_layers
    nested = {}
    if is_container(model):
        stack = list(model.layers)
        while stack:
            layer = stack.pop()
            if is_container(layer):
                nested[layer.name] = [l.name for l in iter_layers(layer)]
                stack += layer.layers
    return check_float_layers(float_layers, _layer_names(model), mode, qat,
                              nested)


def _check_arguments(mode, input_type, output_type, calibration, sparse,
                     float_layers, output_path):
    """Refuses a bad mode, I/O type, calibration, option combination or
    output folder before any work."""
    if mode not in MODES:
        raise InputError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    for name, t in (("input_type", input_type), ("output_type", output_type)):
        if t not in IO_TYPES:
            raise InputError(f"{name} {t!r} is not one of "
                             f"{', '.join(IO_TYPES)}")
        if t not in io_types_for(mode):
            needs = [m for m in INTEGER_MODES if t in io_types_for(m)]
            raise InputError(f"{name}={t} needs mode {' or '.join(needs)} "
                             f"(mode is {mode}); with {mode} use "
                             f"{' or '.join(io_types_for(mode))}")
    if calibration not in CALIBRATIONS:
        raise InputError(f"calibration {calibration!r} is not one of "
                         f"{', '.join(CALIBRATIONS)}")
    if mode == "int16x8" and calibration != "minmax":
        # TFLite quantizes int16x8 with its own calibrator, which takes no
        # recomputed ranges: the option would be ignored
        raise InputError(f"calibration={calibration!r} works with mode int8;"
                         " int16x8 calibrates with min/max only: use "
                         "calibration='minmax'")
    if mode not in INTEGER_MODES and calibration != "minmax":
        # float activations have no ranges: the option would be ignored
        raise InputError(f"calibration={calibration!r} chooses int8 "
                         f"activation ranges; mode {mode} keeps activations "
                         "float, so it has no effect: use mode int8, or "
                         "calibration='minmax'")
    if sparse and float_layers:
        # the converter's sparse pass over the debugger's partly float
        # model writes a flatbuffer without the model's ops
        raise InputError("sparse=True and float_layers cannot be combined; "
                         "convert with one of them (CLI: --sparse or "
                         "--float_layers)")
    if output_path is not None:
        check_path("convert", "output_path", output_path,
                   example="model.tflite")
        try:
            check_writable_folder(output_path)
        except OSError as e:
            raise InputError(str(e)) from None


def _check_qat_calibration(qat, calibration):
    """Refuses a calibration method for a QAT model: its activation ranges
    were learned in training and are converted as they are."""
    if qat and calibration != "minmax":
        raise InputError(f"calibration={calibration!r}: a QAT model's "
                         "activation ranges come from its fake-quant layers "
                         "(learned in training), so no calibration method "
                         "applies: use calibration='minmax', or convert the "
                         "model from before quantize_model to calibrate it "
                         "post-training")


def _check_output_only_layers(model):
    from tfcompress.quantize.float_layers import output_only_layers
    names = output_only_layers(model)
    if names:
        raise InputError(
            f"QAT model: {', '.join(names)} (annotated OutputQuantizeConfig) "
            "has a trained range for its output only, and the converter "
            "must calibrate the tensors inside it: pass representative_data "
            "(about 100-500 typical inputs)")


def _qat_float_layers(model):
    """The float layers of QAT ``model`` and the names of those among them
    that have no int8 kernel (LayerNormalization, LayerScale)."""
    from tfcompress.quantize.float_layers import float_layers, no_int8_kernel
    from tfcompress.utils.layer_map import iter_layers
    names = float_layers(model)
    no_kernel = {l.name for l in iter_layers(model)
                 if l.name in names and no_int8_kernel(l)}
    return names, no_kernel


def _float_nodes_of(float_layers, model, every_layer_has_ops=True):
    """None, or a function giving ``{layer: [node, ...]}`` of
    ``float_layers`` in a calibrated flatbuffer (a layer with no op is an
    InputError if ``every_layer_has_ops``, else left out)."""
    if not float_layers:
        return None
    from tfcompress.convert.fallback import float_nodes
    names = _layer_names(model)
    outputs = _output_layers(model)
    return lambda calibrated: float_nodes(calibrated, float_layers, names,
                                          outputs, every_layer_has_ops)


def _output_layers(model):
    """The names of the layers making ``model``'s outputs, in order
    (empty for a subclassed model)."""
    outputs = []
    for tensor in getattr(model, "outputs", None) or []:
        try:
            outputs.append(compat.keras_history(tensor).operation.name)
        except compat.CompatError:
            pass
    return outputs


def _convert_recalibrated(converter, calib, method, percentile, input_type,
                          output_type, per_channel=True, float_nodes_of=None):
    """Calibrates with ``converter`` (set up for post-training int8),
    recomputes the ranges with ``method`` unless it is minmax, then
    quantizes every op but those ``float_nodes_of(calibrated)`` names.
    Returns ``(tflite_bytes, ranges or None, {layer: [node, ...]})``."""
    calibrated = compat.calibrate_only(converter)
    ranges = None
    if method != "minmax":
        from tfcompress.convert.calibration import recalibrate
        calibrated, ranges = recalibrate(calibrated, calib, method,
                                         percentile)
    nodes = float_nodes_of(calibrated) if float_nodes_of else {}
    # quantized apart from the converter: its per-tensor setting is not seen
    tflite_bytes = compat.mlir_quantize(
        calibrated, input_data_type=_tf_type(input_type),
        output_data_type=_tf_type(output_type),
        denylisted_nodes=[n for layer in nodes.values() for n in layer],
        disable_per_channel=not per_channel)
    return tflite_bytes, ranges, nodes
