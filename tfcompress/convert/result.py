"""``ConversionResult``: the flatbuffer, where it went, and the truth
about what it contains."""

from __future__ import annotations

import json
import re

import numpy as np

from tfcompress.inspect import format_report, inspect
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
        super().__init__(
            f"{len(result.fallback_ops)} op(s) stayed float in the "
            f"{result.report['mode']} model: {ops}"
            + (f" and {more} more" if more > 0 else "")
            + ". Fix: replace those layers with ones TFLite has integer "
            "kernels for, quantize-annotate them for QAT, or pass "
            "strict=False to accept the float ops (they are listed in the "
            "report).")


class ConversionResult:
    """A converted model: ``tflite_bytes``, ``path`` and ``report``."""

    def __init__(self, tflite_bytes, report):
        self.tflite_bytes = tflite_bytes
        self.report = report
        self.path = None

    @classmethod
    def build(cls, tflite_bytes, mode, keras_model, qat, calibration,
              calibration_ranges, notes, seconds, layer_names):
        report = inspect(tflite_bytes)
        report.pop("path", None)
        names = sorted(layer_names, key=len, reverse=True)
        outputs = {o["index"]: o.get("output", "") for o in report["ops"]}
        for row in report["float_ops"] + report["ops"]:
            row["layer"] = (_innermost_layer(outputs.get(row["index"], ""),
                                             set(names))
                            or _match_layer(row.get("layer", ""), names))
        report.update({
            "mode": mode, "qat": qat, "calibration": calibration,
            "calibration_ranges": calibration_ranges, "notes": notes,
            "conversion_seconds": round(seconds, 2),
            "keras_params": int(keras_model.count_params()),
        })
        return cls(tflite_bytes, report)

    @property
    def fallback_ops(self):
        return self.report["float_ops"]

    def add_numerical_check(self, keras_model, x):
        """Compares TFLite and Keras outputs on ``x`` (stored in report).
        A model with several outputs gets a note instead (returns None):
        the check compares one output."""
        interp, refused = litert_interpreter(self.tflite_bytes)
        # counted in the flatbuffer: subclassed models have no .outputs
        outputs = len(interp.get_output_details())
        if outputs > 1:
            self.report["notes"].append(
                f"The model has {outputs} outputs; the numerical check "
                "compares single-output models only and was skipped. "
                "Compare each output with LiteRT's signature runner.")
            return None
        if refused:
            self.report["notes"].append(
                "LiteRT's XNNPACK delegate refuses this flatbuffer ("
                f"{refused}); the numerical check ran on the built-in "
                "kernels. Run it with XNNPACK off: `tfcompress bench "
                "--noxnnpack` or benchmark(..., xnnpack=False).")
        got = run_flatbuffer(interp, x)
        ref = np.asarray(keras_model.predict(x, verbose=0, batch_size=256),
                         np.float32).reshape(got.shape)
        err = np.abs(got - ref)
        check = {"samples": int(len(x)),
                 "max_abs_error": float(err.max()),
                 "mean_abs_error": float(err.mean()),
                 "xnnpack": not refused}
        if got.ndim == 2 and got.shape[1] > 1:
            check["top1_agreement"] = float(
                np.mean(got.argmax(1) == ref.argmax(1)))
        self.report["numerical_check"] = check
        return check

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
                   if "top1_agreement" in chk else ""))
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
    time, as float32: integer inputs are quantized and integer outputs
    dequantized with the tensors' own scales.

    >>> interp, _ = litert_interpreter(result.tflite_bytes)  # doctest: +SKIP
    >>> run_flatbuffer(interp, x[:2]).shape                  # doctest: +SKIP
    (2, 10)
    """
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    got = []
    for i in range(len(x)):
        v = np.asarray(x[i:i + 1], np.float32)
        if inp["dtype"] != np.float32:
            scale, zp = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            v = np.clip(np.round(v / scale + zp), info.min, info.max)
        interp.set_tensor(inp["index"], v.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            scale, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        got.append(y)
    return np.asarray(got, np.float32)


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (bytes, memoryview)):
        return None
    return str(o)


def _innermost_layer(tensor_name, names):
    """The deepest scope of ``tensor_name`` that is one of the layer
    ``names`` (Keras suffixes a call's scope with ``_N``): a layer inside a
    nested model, not the block around it; None if no scope is one.

    >>> _innermost_layer("functional_1/block_1/ln_1/Neg", {"ln", "conv"})
    'ln'
    """
    scopes = [p for p in tensor_name.split(";")[0].split("/") if p][1:]
    for scope in reversed(scopes):
        for name in (scope, re.sub(r"_\d+$", "", scope)):
            if name in names:
                return name
    return None


def _match_layer(guess, names):
    for n in names:
        if guess == n or guess.startswith(n + "_") or guess.startswith(n):
            return n
    return guess
