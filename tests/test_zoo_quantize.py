"""QAT and int8 conversion of every keras.applications family at its
smallest configuration (tfcompress.quantize.zoo).

Fast tests: quantize_model accepts each family, the QAT model runs and
reports what it kept float. Slow tests (the smallest families only):
QAT -> strict int8 conversion (fully integer, TFLite logits within a
bound of the QAT model's) and op histograms of QAT and post-training
flatbuffers.
"""

import collections

import numpy as np
import pytest

from tfcompress import quantize
from tfcompress.models.applications import rescales_input
from tfcompress.quantize import zoo

# building and rewriting these takes more than ~20 s each
HEAVY = {"InceptionResNetV2", "NASNetMobile", "DenseNet121"}
# configurations repeating blocks the quick set already has (25-55 s
# each): MobileNetV3Large is built from MobileNetV3Small's blocks
# (expansion-1 and squeeze-excitation blocks, hard-swish, 5x5 depthwise,
# residual adds); the others are families without their input rescaling,
# covered by MobileNetV3Small_nopre, and the rescaling itself by
# test_input_scaling_folds_or_becomes_int8_mul_and_add
HEAVY_REPEATS = {("MobileNetV3Large", None), ("MobileNetV3Large_nopre", None),
                 ("EfficientNetV2B0", False), ("ConvNeXtTiny", False)}
# the shared family table (MobileNetV3 with and without preprocessing
# among them), plus EfficientNetV2 and ConvNeXt without it
CONFIGS = [(f, None) for f in zoo.FAMILIES] + [
    ("EfficientNetV2B0", False), ("ConvNeXtTiny", False)]
# layers QAT leaves without fake-quant and names (LayerNormalization: its NEG
# has no int8 TFLite kernel)
KEPT_FLOAT = {"ConvNeXtTiny": {"LayerNormalization", "LayerScale"}}


def _param(family, pre):
    marks = [pytest.mark.slow, pytest.mark.heavy] if (
        family in HEAVY or (family, pre) in HEAVY_REPEATS) else []
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
    x = zoo.zoo_inputs(model, 2, raw_pixels=rescales_input(model))
    y = np.asarray(qat(x, training=True))
    assert y.shape == (2, 10) and np.isfinite(y).all()
    rows = quantize.summary(qat, print_fn=None)
    floats = {r["type"] for r in rows if r.get("float")}
    assert floats == KEPT_FLOAT.get(family, set()), floats
    # every learned op is quantized: nothing was left as a plain layer
    # except what is reported float
    kinds = {r["type"] for r in qat.quantize_report}
    assert "Rescaling" not in kinds and "Normalization" not in kinds


def test_input_scaling_folds_or_becomes_int8_mul_and_add():
    # MobileNetV3: 1/127.5 and -1 before a 'same' padded conv: not exact
    # to fold (the border), so an int8 MUL and ADD by constants
    model, qat = _qat("MobileNetV3Small", None)
    rows = [r for r in qat.quantize_report if r["type"] == "input affine"]
    assert [r["layer"] for r in rows] == [_names(model, "Rescaling")[0]]
    assert rows[0]["quantized"] == "int8 MUL and ADD by constants", rows
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


# Conversions take minutes each on two cores: the slow tests convert the
# two smallest families only (other families: python -m
# tfcompress.quantize.zoo, figures in docs/zoo_quantize.md). ConvNeXt's
# float LayerNormalization/LayerScale under strict conversion is covered
# on a tiny model in tests/test_quantize.py.
#
# Agreement: these networks are untrained, their 10 logits are close, so
# top-1 agreement is low even for the float converter (PTQ of the float
# MobileNetV3Small agrees 68.5% with it). The QAT checks therefore bound
# the TFLite-vs-QAT logit error in output quantization steps, and top-1
# agreement only relative to PTQ's own agreement with the float model.
_CONVERTED = {}


# the configurations of the figures in docs/zoo_quantize.md
MEASURED = {"MobileNetV3Small": {"alpha": 0.75}}


def _converted(family):
    """(QAT status, PTQ status) with zoo's defaults: 200 inputs, 3 QAT
    steps, seed 0 (the settings of the figures in docs/zoo_quantize.md)."""
    if family not in _CONVERTED:
        model = zoo.build_zoo_model(family, **MEASURED.get(family, {}))
        _CONVERTED[family] = (zoo.try_qat_convert(model),
                              zoo.try_ptq_convert(model))
    return _CONVERTED[family]


def _histogram(status):
    return collections.Counter(status["ops"])


@pytest.mark.slow
@pytest.mark.heavy
def test_mobilenet_v3_small_qat_converts_fully_integer_and_agrees():
    qat, ptq = _converted("MobileNetV3Small")
    assert qat["status"] == "ok" and ptq["status"] == "ok", (qat, ptq)
    # measured: mean 1.85 steps, max 14 steps; top-1 61.5% (PTQ: 68.5%)
    assert qat["mean_error_steps"] <= 2.5, qat
    assert qat["max_error_steps"] <= 20, qat
    assert qat["top1_agreement"] >= ptq["top1_agreement"] - 0.15, (qat, ptq)


@pytest.mark.slow
@pytest.mark.heavy
def test_mobilenet_v3_small_qat_flatbuffer_adds_no_ops_to_the_ptq_one():
    qat, ptq = (_histogram(s) for s in _converted("MobileNetV3Small"))
    # the input Rescaling(1/127.5, -1) is int8 MUL + ADD in both
    assert qat == ptq
    assert qat["MUL"] >= 1 and qat["ADD"] >= 1


@pytest.mark.slow
@pytest.mark.heavy
def test_efficientnet_b0_qat_flatbuffer_equals_ptq_and_errs_like_it():
    qat, ptq = _converted("EfficientNetB0")
    assert qat["status"] == "ok" and ptq["status"] == "ok", (qat, ptq)
    # the sigmoid gate of each squeeze-and-excitation block has TFLite's
    # fixed LOGISTIC scale: no requantize op after it
    assert _histogram(qat) == _histogram(ptq)
    # logits span about +-225 on this untrained network: PTQ agrees 35%
    # with the float model (mean error 13.4), QAT int8 34% with the QAT
    # model (mean error 15.1, 8.6 output steps)
    assert qat["top1_agreement"] >= ptq["top1_agreement"] - 0.15, (qat, ptq)
    assert qat["mean_abs_error"] <= 1.5 * ptq["mean_abs_error"], (qat, ptq)


# configurations besides the smallest (tests/test_zoo_prune.py VARIANTS):
# pooled or feature-map outputs, softmax heads, minimalistic blocks
VARIANTS = [
    ("MobileNet", dict(alpha=0.5, include_top=False, pooling="max")),
    ("MobileNetV2", dict(alpha=0.5, include_top=False, pooling=None)),
    ("MobileNetV2", dict(classifier_activation="softmax")),
    ("MobileNetV3Small", dict(minimalistic=True)),
    ("MobileNetV3Small", dict(alpha=1.0, classifier_activation="softmax")),
    ("MobileNetV3Large", dict(minimalistic=True, include_top=False,
                              include_preprocessing=False)),
    ("EfficientNetB0", dict(include_top=False, pooling="avg")),
    ("EfficientNetV2B0", dict(include_top=False, pooling="max",
                              include_preprocessing=False)),
    ("ResNet50", dict(include_top=False, pooling="avg")),
    ("ConvNeXtTiny", dict(include_top=False, pooling="avg")),
]


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize(
    "family,kw", VARIANTS,
    ids=[f + "-" + "-".join(f"{k}={v}" for k, v in kw.items())
         for f, kw in VARIANTS])
def test_variant_quantizes_and_runs(family, kw):
    model = zoo.build_zoo_model(family, calibrate=False, **kw)
    qat = quantize.quantize_model(model)
    x = zoo.zoo_inputs(model, 2, raw_pixels=rescales_input(model))
    y = np.asarray(qat(x, training=True))
    assert y.shape == (2,) + tuple(model.output_shape[1:])
    assert np.isfinite(y).all()
    floats = {r["type"] for r in quantize.summary(qat, print_fn=None)
              if r.get("float")}
    assert floats <= KEPT_FLOAT.get(family, set()), floats


def test_qat_status_counts_every_float_op_of_the_flatbuffer():
    """A float LayerNormalization is several ops of one kind (MUL, ADD):
    float_ops names each op and layer once, float_op_count counts the
    flatbuffer's float ops."""
    import keras
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3)(i)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(i, keras.layers.Dense(10)(x))
    status = zoo.try_qat_convert(model, steps=1, samples=8, strict=False)
    assert status["status"] == "float_ops", status
    assert "MUL (ln)" in status["float_ops"]
    # the MULs and ADDs of the layer norm, each counted
    assert len(status["float_ops"]) < status["float_op_count"] <= sum(
        status["ops"].values())


@pytest.mark.parametrize("head", ["features", "3 classes"])
def test_qat_status_trains_models_without_ten_logits(head):
    """include_top=False (feature maps) or another number of classes:
    QAT trains on targets of the model's output and converts."""
    import keras
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(i)
    if head == "3 classes":
        x = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    status = zoo.try_qat_convert(keras.Model(i, x), steps=1, samples=8)
    assert status["status"] == "ok", status


@pytest.mark.parametrize("spec", ["MobileNetV2:nopreprocessing",
                                  "MobileNetV9"])
def test_zoo_main_refuses_an_unknown_family_or_suffix_first(
        spec, tmp_path, capsys):
    out = tmp_path / "status.jsonl"
    assert zoo.main([str(out), "VGG16", spec]) == 2
    message = capsys.readouterr().err.strip()
    assert spec.partition(":")[0 if ":" not in spec else 2] in message
    assert len(message.splitlines()) == 1
    assert not out.exists()       # nothing ran before the bad argument
