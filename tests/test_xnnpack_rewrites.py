"""Hard-swish rewritten so int8 graphs stay inside XNNPACK: same function,
no HARD_SWISH op, one delegate partition, int8 agreeing with Keras."""

import numpy as np
import pytest

import keras
from keras import layers as L

from tfcompress.bench.delegation import delegation_report
from tfcompress.convert import convert
from tfcompress.convert.rewrites import count_hard_swish, rewrite_hard_swish
from tfcompress.quantize import quantize_annotate_layer, quantize_model
from tfcompress.quantize.api import NoOpQuantizeConfig


def conv_hard_swish_conv(style="activation_layer", seed=0):
    """Conv -> hard-swish -> Conv at 8x8, then 6 logits."""
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 3))
    if style == "activation_layer":
        x = L.Conv2D(8, 3, padding="same", name="conv_a")(i)
        x = L.Activation("hard_swish", name="act")(x)
    else:   # the conv's own activation
        x = L.Conv2D(8, 3, padding="same", activation="hard_silu",
                     name="conv_a")(i)
    x = L.Conv2D(6, 3, padding="same", name="conv_b")(x)
    return keras.Model(i, L.GlobalAveragePooling2D(name="pool")(x))


def inputs(n=64, seed=1):
    return np.random.default_rng(seed).normal(
        0, 1, (n, 8, 8, 3)).astype("float32")


def ops(result):
    return [op["op"] for op in result.report["ops"]]


def partitions(result, tmp_path, name):
    path = str(tmp_path / f"{name}.tflite")
    result.save(path)
    return delegation_report(path)["partitions"]


def output_step(result):
    """The int8 output's quantization step (convert with output int8)."""
    from tfcompress.convert.result import litert_interpreter
    interp, _ = litert_interpreter(result.tflite_bytes)
    return interp.get_output_details()[0]["quantization"][0]


def tflite_outputs(result, x):
    from tfcompress.convert.result import litert_interpreter
    interp, _ = litert_interpreter(result.tflite_bytes)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zp = out["quantization"]
    got = []
    for sample in x:
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        got.append((interp.get_tensor(out["index"])[0].astype("float32")
                    - zp) * scale)
    return np.asarray(got)


@pytest.mark.parametrize("style", ["activation_layer", "conv_activation"])
def test_rewrite_computes_the_same_function(style):
    model = conv_hard_swish_conv(style)
    rewritten = rewrite_hard_swish(model)
    x = inputs(8) * 4     # covers both bends at -3 and +3
    np.testing.assert_allclose(rewritten.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-5)
    assert count_hard_swish(model) == 1
    assert count_hard_swish(rewritten) == 0


def test_rewrite_leaves_the_original_and_models_without_hard_swish_alone():
    model = conv_hard_swish_conv()
    rewrite_hard_swish(model)
    assert [type(l).__name__ for l in model.layers][2] == "Activation"
    i = keras.Input((4,))
    plain = keras.Model(i, L.Dense(2, activation="relu")(i))
    assert rewrite_hard_swish(plain) is plain


def test_rewrite_keeps_a_user_annotated_hard_swish():
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 1, activation="hard_swish", name="conv")(i)
    kept = quantize_annotate_layer(L.Activation("hard_swish", name="act"),
                                   NoOpQuantizeConfig())
    rewritten = rewrite_hard_swish(keras.Model(i, kept(x)))
    assert count_hard_swish(rewritten) == 1
    assert rewritten.get_layer("act")._tfcompress_quantize_config \
        .quantize_output is False


def test_post_training_int8_has_no_hard_swish_and_one_partition(tmp_path):
    model, x = conv_hard_swish_conv(), inputs()
    plain = convert(model, "int8", representative_data=x,
                    xnnpack_rewrites=False)
    assert "HARD_SWISH" in ops(plain)
    assert partitions(plain, tmp_path, "plain") == 2
    rewritten = convert(model, "int8", representative_data=x)
    assert "HARD_SWISH" not in ops(rewritten)
    assert partitions(rewritten, tmp_path, "rewritten") == 1


def test_int16x8_hard_swish_is_integer_not_float():
    """TFLite has no int16 HARD_SWISH kernel: the op stayed float in an
    int16x8 model (MobileNetV3: 19 float ops). The rewrite's MUL, ADD and
    MUL have int16 kernels."""
    model, x = conv_hard_swish_conv(), inputs()
    plain = convert(model, "int16x8", representative_data=x, strict=False,
                    xnnpack_rewrites=False)
    assert [op["op"] for op in plain.report["float_ops"]] == ["HARD_SWISH"]
    result = convert(model, "int16x8", representative_data=x, strict=True)
    assert result.report["float_ops"] == []
    assert "HARD_SWISH" not in ops(result)
    assert result.report["numerical_check"]["max_abs_error"] < 1e-2


def test_post_training_int8_agrees_with_the_float_model_within_steps():
    model, x = conv_hard_swish_conv(), inputs()
    result = convert(model, "int8", representative_data=x,
                     output_type="int8")
    step = output_step(result)
    got, ref = tflite_outputs(result, x), model.predict(x, verbose=0)
    assert np.abs(got - ref).max() <= 5 * step
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9


def test_qat_places_fake_quant_where_the_int8_graph_quantizes():
    qat = quantize_model(conv_hard_swish_conv())
    rows = {r["layer"]: r["quantized"] for r in qat.quantize_report}
    assert rows["act_sixth"] == "output int8"
    assert rows["act_relu6"] == "output int8"
    assert rows["act"] == "output int8"
    assert rows["act_plus3"].startswith("activation fused by TFLite")


def test_qat_int8_equals_the_qat_model_and_stays_in_one_partition(tmp_path):
    x = inputs()
    qat = quantize_model(conv_hard_swish_conv())
    for batch in np.split(x, 4):    # training-mode calls set the ranges
        qat(batch, training=True)
    result = convert(qat, "int8", output_type="int8")
    assert "HARD_SWISH" not in ops(result)
    assert partitions(result, tmp_path, "qat") == 1
    step = output_step(result)
    got, ref = tflite_outputs(result, x), qat.predict(x, verbose=0)
    assert np.abs(got - ref).max() <= 1.01 * step


def squeeze_excite(target_shape=(1, 1, 8)):
    """Conv -> squeeze-and-excitation as EfficientNet builds it
    (GlobalAveragePooling2D -> Reshape -> Conv -> Conv -> Multiply)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(i)
    se = L.GlobalAveragePooling2D(name="se_squeeze")(x)
    se = L.Reshape(target_shape, name="se_reshape")(se)
    se = L.Conv2D(4, 1, activation="relu", name="se_reduce")(se)
    se = L.Conv2D(8, 1, activation="sigmoid", name="se_expand")(se)
    x = L.Multiply(name="se_excite")([x, se])
    return keras.Model(i, L.GlobalAveragePooling2D(name="pool")(x))


@pytest.mark.parametrize("target_shape", [(1, 1, 8), (1, 1, -1)])
@pytest.mark.parametrize("mode", ["float32", "int8", "qat_int8"])
def test_reshape_converts_to_one_op_and_one_partition(tmp_path, mode,
                                                      target_shape):
    # Keras 3's Reshape reads the batch at run time: SHAPE, STRIDED_SLICE
    # and PACK before each RESHAPE, and XNNPACK cuts the graph around them
    model = squeeze_excite(target_shape)
    x = inputs()
    if mode == "qat_int8":
        qat = quantize_model(model)
        qat.predict(x, verbose=0)
        r = convert(qat, "int8", strict=True)
    else:
        r = convert(model, mode, representative_data=x)
    assert not {"SHAPE", "STRIDED_SLICE", "PACK"} & set(ops(r)), ops(r)
    assert ops(r).count("RESHAPE") == 1
    assert partitions(r, tmp_path, mode) == 1
    if mode == "float32":   # the same values, for any batch size
        from tfcompress.convert.result import litert_interpreter, \
            run_flatbuffer
        interp, _ = litert_interpreter(r.tflite_bytes)
        np.testing.assert_allclose(run_flatbuffer(interp, x[:8]),
                                   model.predict(x[:8], verbose=0),
                                   rtol=1e-5, atol=1e-5)
