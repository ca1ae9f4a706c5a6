"""QAT and int8 conversion of every keras.applications family at its
smallest configuration (tfcompress.quantize.zoo).

Fast tests: quantize_model accepts each family, the QAT model runs and
reports what it kept float. Slow tests: QAT -> strict int8 conversion
(fully integer, TFLite logits agree with the QAT model's), and op
histograms of QAT and post-training flatbuffers.
"""

import collections

import numpy as np
import pytest

from tfcompress import quantize
from tfcompress.convert.result import FloatFallbackError
from tfcompress.quantize import zoo

# building and rewriting these takes more than ~20 s each
HEAVY = {"InceptionResNetV2", "NASNetMobile", "DenseNet121"}
CONFIGS = [(f, None) for f in zoo.FAMILIES] + [
    ("MobileNetV3Small", False), ("MobileNetV3Large", False),
    ("EfficientNetV2B0", False), ("ConvNeXtTiny", False)]
# layers with no int8 TFLite kernel, kept float and named by QAT
KEPT_FLOAT = {"ConvNeXtTiny": {"LayerNormalization", "LayerScale"}}


def _param(family, pre):
    marks = [pytest.mark.slow] if family in HEAVY else []
    name = family + {None: "", False: "-no_preprocessing"}[pre]
    return pytest.param(family, pre, marks=marks, id=name)


_BUILT = {}


def _qat(family, pre):
    """(float model, QAT model), built once per configuration."""
    if (family, pre) not in _BUILT:
        model = zoo.build_zoo_model(family, include_preprocessing=pre)
        _BUILT[(family, pre)] = (model, quantize.quantize_model(model))
    return _BUILT[(family, pre)]


@pytest.mark.parametrize("family,pre", [_param(*c) for c in CONFIGS])
def test_family_quantizes_and_runs(family, pre):
    model, qat = _qat(family, pre)
    x = zoo.zoo_inputs(model, 2, raw_pixels=zoo.has_input_scaling(model))
    y = np.asarray(qat(x, training=True))
    assert y.shape == (2, 10) and np.isfinite(y).all()
    rows = quantize.summary(qat, print_fn=None)
    floats = {r["type"] for r in rows if r.get("float")}
    assert floats == KEPT_FLOAT.get(family, set()), floats
    # every learned op is quantized: nothing was left as a plain layer
    # except what is reported float
    kinds = {r["type"] for r in qat.quantize_report}
    assert "Rescaling" not in kinds and "Normalization" not in kinds


def test_input_scaling_folds_or_becomes_one_affine_op():
    # MobileNetV3: 1/127.5 and -1 before a 'same' padded conv: not exact
    # to fold (the border), so one int8 affine op
    model, qat = _qat("MobileNetV3Small", None)
    rows = [r for r in qat.quantize_report if r["type"] == "input affine"]
    assert [r["layer"] for r in rows] == [_names(model, "Rescaling")[0]]
    # EfficientNetB0 (weights=None: mean 0, variance 1): a pure scale,
    # folded through the zero padding into the stem conv
    model, qat = _qat("EfficientNetB0", None)
    assert not [r for r in qat.quantize_report
                if r["type"] == "input affine"]
    stem = [r for r in qat.quantize_report if r["layer"] == "stem_conv"][0]
    assert stem["folded"][:2] == [_names(model, "Rescaling")[0],
                                  _names(model, "Normalization")[0]]


def _names(model, kind):
    return [l.name for l in model.layers if type(l).__name__ == kind]


CONVERTED = [f for f in zoo.FAMILIES if f not in KEPT_FLOAT]


@pytest.mark.slow
@pytest.mark.parametrize("family", CONVERTED)
def test_family_qat_converts_fully_integer_and_agrees(family):
    model = zoo.build_zoo_model(family)
    x = zoo.zoo_inputs(model, 24, raw_pixels=zoo.has_input_scaling(model))
    status = zoo.try_qat_convert(model, x, steps=2)
    assert status["status"] == "ok", status
    assert status["top1_agreement"] >= 0.9, status
    assert status["max_error_steps"] <= 4, status


@pytest.mark.slow
def test_convnext_strict_names_float_ops_and_lenient_converts():
    model = zoo.build_zoo_model("ConvNeXtTiny")
    x = zoo.zoo_inputs(model, 8)
    status = zoo.try_qat_convert(model, x, steps=1)
    assert status["status"] == "float_ops"
    assert any("layernorm" in f or "layer_scale" in f
               for f in status["float_ops"]), status["float_ops"]
    qat = quantize.quantize_model(model)
    qat(x, training=True)
    with pytest.raises(FloatFallbackError):
        from tfcompress.convert import convert
        convert(qat, "int8", strict=True)


def _histogram(status):
    return collections.Counter(status["ops"])


@pytest.mark.slow
@pytest.mark.parametrize("family", ["MobileNetV2", "MobileNetV3Small"])
def test_qat_flatbuffer_adds_no_ops_to_the_ptq_one(family):
    model = zoo.build_zoo_model(family)
    x = zoo.zoo_inputs(model, 16, raw_pixels=zoo.has_input_scaling(model))
    qat = _histogram(zoo.try_qat_convert(model, x, steps=1))
    ptq = _histogram(zoo.try_ptq_convert(model, x))
    if family == "MobileNetV2":
        assert qat == ptq
    else:
        # the input rescaling: MUL + ADD in the PTQ flatbuffer, one
        # DEPTHWISE_CONV_2D in the QAT one; nothing else differs
        assert ptq - qat == collections.Counter({"MUL": 1, "ADD": 1})
        assert qat - ptq == collections.Counter({"DEPTHWISE_CONV_2D": 1})
