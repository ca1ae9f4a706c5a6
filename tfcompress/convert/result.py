"""``ConversionResult``: the flatbuffer, where it went, and the truth
about what it contains."""

from __future__ import annotations

import json

import numpy as np

from tfcompress.bench.runner import dequantize_output
from tfcompress.convert.fallback import (layer_components, output_layer,
                                        output_twin)
from tfcompress.inspect import format_report, inspect
from tfcompress.inspect.bias_scales import BIAS_SCALE_NOTE
from tfcompress.utils import atomic_write_bytes


class FloatFallbackError(RuntimeError):
    """Raised in strict mode when ops of an integer model compute in float.

    ``.result`` holds the :class:`ConversionResult` (nothing was written).
    """

    def __init__(self, result):
        self.result = result
        ops = "; ".join(f"#{f['index']} {f['op']} (layer {f['layer']})"
                        for f in result.fallback_ops[:10])
        more = len(result.fallback_ops) - 10
        no_kernel = sorted({f["op"] for f in result.fallback_ops} &
                           NO_INT8_KERNEL)
        super().__init__(
            f"{len(result.fallback_ops)} op(s) stayed float in the "
            f"{result.report['mode']} model: {ops}"
            + (f" and {more} more" if more > 0 else "")
            + ". Fix: replace those layers with ones TFLite has integer "
            "kernels for, quantize-annotate them for QAT, or pass "
            "strict=False to accept the float ops (they are listed in the "
            "report)."
            + (f" TFLite has no int8 kernel for {', '.join(no_kernel)} "
               "(LayerNormalization computes one): annotating does not "
               "help; pass strict=False or replace the layer."
               if no_kernel else ""))


class UnrunnableModelError(RuntimeError):
    """Raised when LiteRT cannot prepare or run the converted flatbuffer
    (its int16 kernels refuse some calibrated ranges, or have no kernel for
    an op); the message names the op, its Keras layer and the mode to use
    instead. Nothing was written.

    >>> issubclass(UnrunnableModelError, RuntimeError)
    True
    """


#: TFLite built-in ops without an int8 kernel that Keras layers produce
NO_INT8_KERNEL = {"NEG"}


class ConversionResult:
    """A converted model: ``tflite_bytes``, ``path`` and ``report``.

    :func:`tfcompress.convert.convert` returns one. ``report`` is the
    :func:`tfcompress.inspect.inspect` report of the flatbuffer plus the
    conversion settings and, when data was given, ``numerical_check``
    (TFLite against Keras); ``save`` writes the flatbuffer.

    >>> import os, tempfile
    >>> import keras
    >>> import numpy as np
    >>> from tfcompress.convert import convert
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((8, 8, 1)),
    ...                           keras.layers.Conv2D(4, 3),
    ...                           keras.layers.Flatten(),
    ...                           keras.layers.Dense(3)])
    >>> x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    >>> result = convert(model, "int8", representative_data=x)
    >>> result.report["mode"], result.report["fully_integer"]
    ('int8', True)
    >>> result.fallback_ops  # ops that stayed float
    []
    >>> result.report["numerical_check"]["samples"]
    8
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = result.save(os.path.join(d, "model_int8.tflite"))
    ...     os.path.getsize(path) == result.report["size_bytes"]
    True
    """

    def __init__(self, tflite_bytes, report):
        self.tflite_bytes = tflite_bytes
        self.report = report
        self.path = None

    @classmethod
    def build(cls, tflite_bytes, mode, keras_model, qat, calibration,
              calibration_ranges, notes, seconds, layer_names,
              output_layers=()):
        report = inspect(tflite_bytes)
        report.pop("path", None)
        names = sorted(layer_names, key=len, reverse=True)
        outputs = {o["index"]: o.get("output", "") for o in report["ops"]}
        # scope ``x_1`` is layer ``x`` called, or layer ``x_1``
        weights = [m["weights"] for m in report["bias_scale_mismatches"]]
        scopes = layer_components([*outputs.values(), *weights], names)
        # the model's output tensors carry no layer name (``Identity``)
        model_outputs = {o["name"] for o in report["outputs"]}
        for row in report["float_ops"] + report["ops"]:
            tensor = outputs.get(row["index"], "")
            # an output, or the integer tensor an output DEQUANTIZE reads
            out = tensor if tensor in model_outputs else output_twin(
                tensor, model_outputs)
            row["layer"] = (_innermost_layer(tensor, scopes)
                            or (out and next(iter(
                                output_layer(out, output_layers)), None))
                            or _match_layer(row.get("layer", ""), names))
        report.update({
            "mode": mode, "qat": qat, "calibration": calibration,
            "calibration_ranges": calibration_ranges, "notes": notes,
            "conversion_seconds": round(seconds, 2),
            "keras_params": int(keras_model.count_params()),
        })
        _note_bias_scales(report, scopes)
        return cls(tflite_bytes, report)

    @property
    def fallback_ops(self):
        return self.report["float_ops"]

    def add_numerical_check(self, keras_model, x):
        """Compares TFLite and Keras outputs on ``x`` (stored in report).

        ``x`` is an array, or a list of arrays for a model with several
        inputs. A model with several inputs or outputs is run through the
        flatbuffer's signature and each output compared with the Keras
        output of the same name (``output_0``, ... or the dict key); the
        report gives each output's errors under ``outputs``.

        A QAT model with one output whose top-1 predictions differ
        somewhere (or whose output is no class score) is also compared as
        it predicts inside :func:`tfcompress.quantize.device_rounding`,
        which rounds as the int8 kernels do: ``device_rounding`` holds
        those errors, which leave out the one-step differences of
        TensorFlow's fake-quant rounding that deep networks amplify."""
        interp, refused = litert_interpreter(self.tflite_bytes)
        if refused:
            self.report["notes"].append(
                "LiteRT's XNNPACK delegate refuses this flatbuffer ("
                f"{refused}); the numerical check ran on the built-in "
                "kernels. Run it with XNNPACK off: `tfcompress bench "
                "--noxnnpack` or benchmark(..., xnnpack=False).")
        # counted in the flatbuffer: subclassed models have no .outputs
        if isinstance(x, list) or len(interp.get_output_details()) > 1:
            return self._check_each_output(interp, keras_model, x, refused)
        got = run_flatbuffer(interp, x)
        ref = np.asarray(keras_model.predict(x, verbose=0, batch_size=256),
                         np.float32).reshape(got.shape)
        check = {"samples": int(len(x)), **_errors(got, ref),
                 "xnnpack": not refused}
        # where the top-1 predictions all agree there is nothing to explain
        device = None if check.get("top1_agreement", 0.0) == 1.0 else \
            _device_rounding_reference(keras_model, x)
        if device is not None:
            check["device_rounding"] = _errors(
                got, np.asarray(device, np.float32).reshape(got.shape))
        self.report["numerical_check"] = check
        return check

    def _check_each_output(self, interp, keras_model, x, refused):
        from tfcompress.convert.inputs import (model_feed,
                                               signature_input_names)
        signatures = interp.get_signature_list()
        xs = x if isinstance(x, list) else [x]
        if not signatures:
            return self._skip_check("the flatbuffer has no signature to "
                                    "name its inputs and outputs by")
        key = next(iter(signatures))
        runner = interp.get_signature_runner(key)
        names = signature_input_names(keras_model) if len(xs) > 1 else \
            signatures[key]["inputs"]
        if sorted(names) != sorted(signatures[key]["inputs"]):
            return self._skip_check(
                f"the signature's inputs {signatures[key]['inputs']} are "
                f"not the model's {names}")
        got = run_signature(runner, dict(zip(names, xs)))
        feed = model_feed(keras_model, xs) if len(xs) > 1 else xs[0]
        ref = keras_model.predict(feed, verbose=0, batch_size=256)
        if not isinstance(ref, dict):
            ref = {f"output_{i}": r for i, r in enumerate(
                ref if isinstance(ref, (list, tuple)) else [ref])}
        if sorted(ref) != sorted(got):
            return self._skip_check(
                f"the signature's outputs {sorted(got)} are not the "
                f"model's {sorted(ref)}")
        outputs = {name: _errors(got[name], np.asarray(
            ref[name], np.float32).reshape(got[name].shape))
            for name in sorted(got)}
        check = {"samples": int(len(xs[0])),
                 "max_abs_error": max(o["max_abs_error"]
                                      for o in outputs.values()),
                 "mean_abs_error": float(np.mean(
                     [o["mean_abs_error"] for o in outputs.values()])),
                 "xnnpack": not refused, "outputs": outputs}
        if len(outputs) == 1:
            check.update(next(iter(outputs.values())))
        self.report["numerical_check"] = check
        return check

    def _skip_check(self, why):
        self.report["notes"].append(
            f"The numerical check was skipped: {why}. Compare the outputs "
            "with LiteRT's signature runner.")
        return None

    def save(self, path):
        """Writes the flatbuffer to ``path`` atomically."""
        atomic_write_bytes(path, self.tflite_bytes)
        self.path = str(path)
        self.report["path"] = self.path
        return self.path

    def to_json(self, indent=2):
        report = dict(self.report)
        return json.dumps(report, indent=indent, default=_jsonable)

    def to_table(self):
        lines = [f"mode {self.report['mode']}"
                 f"{' (QAT ranges)' if self.report['qat'] else ''}, "
                 f"converted in {self.report['conversion_seconds']} s"]
        chk = self.report.get("numerical_check")
        if chk:
            lines.append(
                f"TFLite vs Keras on {chk['samples']} inputs: max |err| "
                f"{chk['max_abs_error']:.4g}, mean {chk['mean_abs_error']:.4g}"
                + (f", top-1 agreement {chk['top1_agreement']:.1%}"
                   if "top1_agreement" in chk else "")
                + _device_rounding_text(chk.get("device_rounding")))
        lines.append(format_report(self.report))
        return "\n".join(lines)

    def __repr__(self):
        r = self.report
        return (f"ConversionResult(mode={r['mode']}, size={r['size_bytes']}, "
                f"gzip={r['gzip_bytes']}, float_ops={len(r['float_ops'])})")


def litert_interpreter(tflite_bytes):
    """A LiteRT interpreter with its default XNNPACK delegate, or with the
    built-in kernels alone when XNNPACK fails to prepare the model (it does
    on int8 FULLY_CONNECTED fed by DENSIFY). Returns ``(interpreter,
    reason_or_None)``, tensors allocated.

    >>> interp, refused = litert_interpreter(result.tflite_bytes)  # doctest: +SKIP
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    try:
        interp = Interpreter(model_content=tflite_bytes)
        interp.allocate_tensors()
        return interp, None
    except RuntimeError as e:
        reason = " ".join(str(e).split())[:200]
    interp = Interpreter(
        model_content=tflite_bytes, experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    return interp, reason


def run_flatbuffer(interp, x):
    """Outputs of a LiteRT interpreter on each sample of ``x``, one at a
    time (a model built with a fixed batch size: that many at a time), as
    float32: quantized inputs are quantized and quantized outputs
    dequantized with the tensors' own scales.

    >>> interp, _ = litert_interpreter(result.tflite_bytes)  # doctest: +SKIP
    >>> run_flatbuffer(interp, x[:2]).shape                  # doctest: +SKIP
    (2, 10)
    """
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    # a model built with a fixed batch size takes exactly that many
    batch = max(int(inp["shape"][0]), 1) if len(inp["shape"]) else 1
    got = []
    for i in range(0, len(x), batch):
        chunk = np.asarray(x[i:i + batch])
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n,
                                                     axis=0)])
        interp.set_tensor(inp["index"], _to_input(chunk, inp))
        interp.invoke()
        got.extend(dequantize_output(interp.get_tensor(out["index"])[:n],
                                     out))
    return np.asarray(got, np.float32)


def _device_rounding_text(errors):
    """The to_table words for the check's ``device_rounding`` errors."""
    if not errors:
        return ""
    return (f" (with the int8 kernels' rounding: max |err| "
            f"{errors['max_abs_error']:.4g}"
            + (f", top-1 agreement {errors['top1_agreement']:.1%}"
               if "top1_agreement" in errors else "") + ")")


def _device_rounding_reference(keras_model, x):
    """``keras_model``'s outputs on ``x`` with the int8 kernels' rounding,
    or None for a model without QAT layers."""
    from tfcompress.quantize.api import has_fake_quant
    from tfcompress.quantize.int8_rounding import device_rounding
    if not has_fake_quant(keras_model):
        return None
    with device_rounding(keras_model):
        return keras_model.predict(x, verbose=0, batch_size=256)


def _errors(got, ref):
    """Absolute errors of ``got`` against ``ref`` (and top-1 agreement for
    ``(n, classes)`` outputs)."""
    err = np.abs(got - ref)
    errors = {"max_abs_error": float(err.max()),
              "mean_abs_error": float(err.mean())}
    if got.ndim == 2 and got.shape[1] > 1:
        errors["top1_agreement"] = float(np.mean(got.argmax(1) ==
                                                 ref.argmax(1)))
    return errors


def _to_input(value, details):
    """``value`` as the tensor wants it: quantized with the tensor's scale
    if it is a quantized integer tensor, else cast (an integer model input
    such as uint8 pixels takes the values as they are)."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return np.asarray(value, dtype)
    scale, zero = details["quantization"]
    value = np.asarray(value, np.float32)
    if scale:
        value = value / scale + zero
    info = np.iinfo(dtype)
    return np.clip(np.round(value), info.min, info.max).astype(dtype)


def run_signature(runner, inputs):
    """Outputs ``{name: (n, ...)}`` of a LiteRT signature runner fed
    ``inputs`` (``{input name: (n, ...)}``) one sample at a time, integer
    tensors quantized and dequantized with their own scales."""
    in_details = runner.get_input_details()
    out_details = runner.get_output_details()
    n = len(next(iter(inputs.values())))
    rows = {name: [] for name in out_details}
    for i in range(n):
        result = runner(**{name: _to_input(v[i:i + 1], in_details[name])
                           for name, v in inputs.items()})
        for name, value in result.items():
            rows[name].append(dequantize_output(value[0], out_details[name]))
    return {name: np.asarray(v, np.float32) for name, v in rows.items()}


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (bytes, memoryview)):
        return None
    return str(o)


def _scopes(tensor_name):
    """The name scopes of ``tensor_name`` below the model's."""
    return [p for p in tensor_name.split(";")[0].split("/") if p][1:]


def _innermost_layer(tensor_name, scopes):
    """The layer of the deepest scope of ``tensor_name`` that names one
    (``scopes``: :func:`tfcompress.convert.fallback.layer_components`): a
    layer inside a nested model, not the block around it; None if no
    scope names one.

    >>> name = "functional_1/block_1/ln_1/Neg"
    >>> _innermost_layer(name, layer_components([name], ["ln", "conv"]))
    'ln'
    """
    for scope in reversed(_scopes(tensor_name)):
        if scope in scopes:
            return scopes[scope]
    return None


def _match_layer(guess, names):
    for n in names:
        if guess == n or guess.startswith(n + "_") or guess.startswith(n):
            return n
    return guess


def _note_bias_scales(report, scopes):
    """A note for each weighted op whose bias the converter stored at a
    scale other than the one its kernel assumes (``inspect``'s
    ``bias_scale_mismatches``), naming the layer that owns the weights
    (``scopes``: :func:`tfcompress.convert.fallback.layer_components`),
    which ``float_layers`` takes, not a fused activation's."""
    for m in report.get("bias_scale_mismatches", []):
        m["layer"] = _innermost_layer(m["weights"], scopes) or m["layer"]
        report["notes"].append(
            f"op #{m['index']} {m['op']} (layer {m['layer']}): "
            + BIAS_SCALE_NOTE.format(ratio=m["ratio"]))
