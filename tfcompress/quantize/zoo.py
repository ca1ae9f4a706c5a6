"""QAT and int8 conversion of ``keras.applications`` models, one family at
a time, returning a status instead of raising (for coverage tables).

``build_zoo_model`` builds a family at its smallest configuration
(``weights=None``, 10 classes, logits); ``try_qat_convert`` runs
``quantize_model`` -> a few QAT steps -> strict int8 conversion and
compares the TFLite logits with the QAT model's; ``try_ptq_convert`` does
the post-training strict int8 conversion of the float model.

>>> sorted(FAMILIES)[:3]
['ConvNeXtTiny', 'DenseNet121', 'EfficientNetB0']
"""

from __future__ import annotations

import collections
import time

import numpy as np

from tfcompress import compat
from tfcompress.errors import InputError
from tfcompress.models.applications import rescales_input
from tfcompress.utils import zoo as zoo_table

FAMILIES = zoo_table.FAMILIES


def build_zoo_model(family, include_preprocessing=None, seed=0,
                    calibrate=True, **overrides):
    """``keras.applications.<family>`` at its smallest configuration
    (:func:`tfcompress.utils.zoo.build`): ``weights=None``, ``classes=10``,
    ``classifier_activation=None``, the smallest width multiplier and
    input side the family accepts.

    ``include_preprocessing``: for the families that take it (MobileNetV3,
    EfficientNetV2, ConvNeXt); None keeps the family's setting.
    ``overrides``: other builder arguments (``alpha=0.75``...).
    ``calibrate``: set the BatchNormalization statistics from 32 random
    inputs (:func:`calibrate_batchnorm`); random-init models otherwise
    give logits near 0, which say little about agreement.
    """
    import keras
    if include_preprocessing is not None:
        if not zoo_table.accepts(family, "include_preprocessing"):
            raise InputError(f"{family} has no include_preprocessing "
                             "argument; leave it None")
        overrides["include_preprocessing"] = include_preprocessing
    keras.utils.set_random_seed(seed)
    model = zoo_table.build(family, **overrides)
    if calibrate:
        calibrate_batchnorm(model, zoo_inputs(
            model, 32, seed + 1, rescales_input(model)))
    return model


def calibrate_batchnorm(model, x):
    """Sets every BatchNormalization's moving statistics to those of ``x``
    (one forward pass with momentum 0), so an untrained model's activations
    stay normalized and its logits are not vanishingly small."""
    import keras
    from tfcompress.utils.layer_map import iter_layers
    bns = [l for l in iter_layers(model)
           if isinstance(l, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        model(x, training=True)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m


def zoo_inputs(model, n, seed=0, raw_pixels=True):
    """``n`` random images for ``model``: pixels in [0, 255] when the model
    rescales them itself (``raw_pixels``), else preprocessed ([-1, 1])."""
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, *shape)).astype("float32")
    return x if raw_pixels else x / 127.5 - 1.0


def random_targets(model, n, rng):
    """``(targets, labels)`` to train ``model`` on ``n`` inputs for a few
    steps: class labels below the number of outputs (``labels`` True: a
    sparse categorical cross-entropy) for a classifier's ``(n, classes)``
    output, else random values of the output's shape (``labels`` False:
    mean squared error), e.g. the feature maps of ``include_top=False``.

    >>> import keras, numpy as np
    >>> m = keras.Sequential([keras.Input((4, 4, 3)),
    ...                       keras.layers.Conv2D(2, 1)])
    >>> y, labels = random_targets(m, 5, np.random.default_rng(0))
    >>> y.shape, labels
    ((5, 4, 4, 2), False)
    """
    shape = tuple(model.output_shape[1:])
    if len(shape) == 1 and shape[0] > 1:
        return rng.integers(0, shape[0], n), True
    return rng.standard_normal((n, *shape)).astype("float32"), False


def _histogram(report):
    return dict(collections.Counter(op["op"] for op in report["ops"]))


def _conversion_status(result, error, start):
    status = {"seconds": round(time.time() - start, 1)}
    if error is not None and result is None:
        status.update({"status": "error",
                       "error": f"{type(error).__name__}: "
                                f"{str(error).splitlines()[0][:300]}"})
        return status
    report = result.report
    status.update({
        "status": "ok" if report["fully_integer"] else "float_ops",
        "fully_integer": bool(report["fully_integer"]),
        "float_ops": sorted({f"{f['op']} ({f['layer']})"
                             for f in report["float_ops"]}),
        # float_ops names each op and layer once; this counts every op
        "float_op_count": len(report["float_ops"]),
        "ops": _histogram(report),
        "size_bytes": len(result.tflite_bytes),
    })
    check = report.get("numerical_check") or {}
    status["samples"] = check.get("samples")
    status["top1_agreement"] = check.get("top1_agreement")
    status["max_abs_error"] = check.get("max_abs_error")
    status["mean_abs_error"] = check.get("mean_abs_error")
    return status


def _convert(model, x, calibration, check_samples, strict):
    from tfcompress.convert import convert
    from tfcompress.convert.result import FloatFallbackError
    try:
        return convert(model, "int8", representative_data=calibration,
                       check_data=x, check_samples=check_samples,
                       strict=strict), None
    except FloatFallbackError as e:
        return e.result, e


def try_qat_convert(model, x=None, steps=3, batch_size=8, samples=200,
                    strict=True, seed=0):
    """``quantize_model`` -> ``steps`` QAT steps -> strict int8 conversion.

    Args:
      model: a float Keras model (a :func:`build_zoo_model` result).
      x: inputs (default: :func:`zoo_inputs`, ``samples`` of them) used for
        training, calibration and the TFLite-vs-Keras comparison.
      strict: as in :func:`tfcompress.convert.convert`; with True a model
        with float ops reports ``status="float_ops"`` and lists them.

    Returns a dict: ``status`` (``ok`` fully integer, ``float_ops``, or
    ``error`` with ``error``), ``stage`` where it stopped, ``kept_float``
    (layers QAT left float), ``ops`` (op histogram), ``float_ops``
    (each ``"OP (layer)"`` once), ``float_op_count`` (the flatbuffer's
    float ops, every one counted),
    ``top1_agreement``, ``max_error_steps``/``mean_error_steps`` (TFLite vs
    QAT Keras logits in output quantization steps), ``seconds``.
    """
    import keras
    from tfcompress import quantize
    start = time.time()
    if x is None:
        x = zoo_inputs(model, samples, seed, rescales_input(model))
    try:
        qat = quantize.quantize_model(model)
    except Exception as e:     # the status says why
        return {"status": "error", "stage": "quantize_model",
                "error": f"{type(e).__name__}: {str(e)[:300]}",
                "seconds": round(time.time() - start, 1)}
    kept_float = [r["layer"] for r in quantize.summary(qat, print_fn=None)
                  if r.get("float")]
    try:
        labels, classes = random_targets(model, len(x),
                                         np.random.default_rng(seed))
        qat.compile(keras.optimizers.Adam(1e-4),
                    keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True) if classes
                    else keras.losses.MeanSquaredError())
        n = min(len(x), steps * batch_size)
        compat.build_training_state(qat, x, labels)   # one trace, not two
        qat.fit(x[:n], labels[:n], batch_size=batch_size, epochs=1,
                verbose=0, shuffle=False)
    except Exception as e:
        return {"status": "error", "stage": "qat_training",
                "error": f"{type(e).__name__}: {str(e)[:300]}",
                "kept_float": kept_float,
                "seconds": round(time.time() - start, 1)}
    try:
        result, error = _convert(qat, x, x[:64], len(x), strict)
    except Exception as e:     # the status says why
        result, error = None, e
    status = _conversion_status(result, error, start)
    status.update({"stage": "convert", "kept_float": kept_float,
                   "qat_seconds": status["seconds"]})
    if result is not None and status.get("max_abs_error") is not None:
        step = output_step(qat)
        if step:
            status["output_step"] = step
            status["max_error_steps"] = round(
                status["max_abs_error"] / step, 2)
            status["mean_error_steps"] = round(
                status["mean_abs_error"] / step, 3)
    return status


def output_step(qat):
    """The quantization step of the QAT model's output (its last
    fake-quantized range / 255), or None."""
    from tfcompress.quantize import summary
    rows = [r for r in summary(qat, print_fn=None) if r["output_range"]]
    if not rows:
        return None
    lo, hi = rows[-1]["output_range"]
    return (hi - lo) / 255.0 or None


def try_ptq_convert(model, x=None, samples=200, strict=True, seed=0):
    """Post-training strict int8 conversion of the float ``model``,
    calibrated on ``x`` (default: :func:`zoo_inputs`).

    Returns a dict like :func:`try_qat_convert` (without the QAT keys);
    its ``top1_agreement`` and errors compare TFLite with the float model.
    """
    start = time.time()
    if x is None:
        x = zoo_inputs(model, samples, seed, rescales_input(model))
    try:
        result, error = _convert(model, x, x[:64], len(x), strict)
    except Exception as e:
        result, error = None, e
    status = _conversion_status(result, error, start)
    status["stage"] = "convert"
    return status


def main(argv=None):
    """``python -m tfcompress.quantize.zoo OUT.jsonl FAMILY[:nopre] ...``:
    QAT and PTQ status of each family, one JSON line per conversion."""
    import json
    import sys
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 1:
        print(main.__doc__)
        return 2
    out, specs = argv[0], argv[1:] or list(FAMILIES)
    suffixes = {"": None, "pre": True, "nopre": False}
    runs = []
    for spec in specs:      # every argument checked before anything runs
        family, _, pre = spec.partition(":")
        if family not in FAMILIES or pre not in suffixes:
            bad = (f"family {family!r}" if family not in FAMILIES
                   else f"suffix {pre!r} in {spec!r}")
            print(f"error: unknown {bad}; write FAMILY, FAMILY:pre or "
                  f"FAMILY:nopre with FAMILY one of {', '.join(FAMILIES)}",
                  file=sys.stderr)
            return 2
        runs.append((family, suffixes[pre]))
    for family, include in runs:
        for kind, fn in (("qat", try_qat_convert), ("ptq", try_ptq_convert)):
            status = fn(build_zoo_model(family, include), samples=200)
            status.update(family=family, include_preprocessing=include,
                          kind=kind)
            line = json.dumps(status)
            with open(out, "a") as f:
                f.write(line + "\n")
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
