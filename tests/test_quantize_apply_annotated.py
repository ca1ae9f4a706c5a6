"""quantize_apply quantizes the annotated layers only (tfmot's contract);
the layers QAT keeps float stay float in the int8 flatbuffer."""

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.errors import InputError
from tfcompress.quantize.float_layers import float_layers
from tfcompress.quantize.layers import QuantizeFused


def _conv_net(annotate=("conv1",)):
    """conv1 -> conv2 -> pool -> flatten -> fc, ``annotate`` marked."""
    keras.utils.set_random_seed(0)

    def maybe(layer):
        return quantize.quantize_annotate_layer(layer) \
            if layer.name in annotate else layer

    i = keras.Input((12, 12, 1))
    x = maybe(L.Conv2D(4, 3, activation="relu", name="conv1"))(i)
    x = maybe(L.Conv2D(4, 3, activation="relu", name="conv2"))(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(i, maybe(L.Dense(3, name="fc"))(x))


def _rows(qat):
    """Layer -> what QAT did to it (the ranges given to float tensors
    left out)."""
    return {r["layer"]: r["quantized"] for r in qat.quantize_report
            if r["type"] != "float tensor"}


def test_quantize_apply_keeps_layers_without_annotation_float():
    qat = quantize.quantize_apply(_conv_net())
    rows = _rows(qat)
    assert rows["conv1"].startswith("weights int8")
    assert rows["conv2"] == rows["fc"] == "FLOAT (not annotated)"
    assert [l.layer.name for l in qat.layers
            if isinstance(l, QuantizeFused)] == ["conv1"]
    floats = {r["layer"] for r in quantize.summary(qat, print_fn=None)
              if "float" in r}
    assert floats == {"conv2", "pool", "flat", "fc"}


def test_float_layers_stay_float_in_the_flatbuffer():
    qat = quantize.quantize_apply(_conv_net())
    x = np.random.default_rng(0).random((32, 12, 12, 1), "float32")
    result = convert(qat, "int8", strict=True, check_data=x)
    report = result.report
    assert not report["fully_integer"] and report["float_ops"] == []
    assert {(r["op"], r["layer"]) for r in report["float_by_request"]} >= {
        ("CONV_2D", "conv2"), ("FULLY_CONNECTED", "fc")}
    # conv2 and fc compute in float: the flatbuffer is the Keras QAT model
    assert report["numerical_check"]["max_abs_error"] < 1e-4


def test_every_layer_annotated_is_quantize_model():
    x = np.random.default_rng(0).random((8, 12, 12, 1), "float32")
    annotated = quantize.quantize_apply(
        quantize.quantize_annotate_model(_conv_net(annotate=())))
    whole = quantize.quantize_model(_conv_net(annotate=()))
    names = ("conv1", "conv2", "pool", "flat", "fc")
    assert [_rows(annotated)[n] for n in names] == \
        [_rows(whole)[n] for n in names]
    assert np.allclose(annotated(x), whole(x))
    assert float_layers(annotated) == []


def test_quantize_apply_without_annotation_says_what_to_do():
    with pytest.raises(InputError, match="no layer.*annotated.*"
                                         "quantize_model"):
        quantize.quantize_apply(_conv_net(annotate=()))


def test_noop_annotated_layer_reader_gets_a_trained_input_range():
    # The Dense after a NoOpQuantizeConfig layer reads a float tensor: it
    # gets a QAT range for it. Without one the converter calibrated that
    # tensor on random inputs (top-1 agreement with Keras 0.49).
    keras.utils.set_random_seed(0)
    i = keras.Input((8,))
    x = L.Dense(8, activation="relu", name="fc1")(i)
    x = quantize.quantize_annotate_layer(
        L.Dense(8, activation="relu", name="mid"),
        quantize.NoOpQuantizeConfig())(x)
    m = keras.Model(i, L.Dense(3, name="out")(x))
    qat = quantize.quantize_model(m)
    assert "quant_mid_output" in {l.name for l in qat.layers}
    x = np.random.default_rng(0).random((256, 8), "float32") * 3
    qat.compile("adam", "mse")
    qat.fit(x, np.random.default_rng(1).random((256, 3)), epochs=2,
            verbose=0)
    check = convert(qat, "int8", check_data=x).report["numerical_check"]
    assert check["mean_abs_error"] < 0.05
    assert check["top1_agreement"] >= 0.95


def test_hard_swish_rewritten_only_where_annotated():
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 3))
    a = quantize.quantize_annotate_layer(
        L.Conv2D(4, 1, activation="hard_swish", name="qconv"))(i)
    b = L.Conv2D(4, 1, activation="hard_swish", name="fconv")(a)
    qat = quantize.quantize_apply(keras.Model(i, b))
    rows = _rows(qat)
    # the annotated layer's hard-swish becomes quantized int8 ops
    assert rows["qconv_hard_swish"].startswith(("output", "activation"))
    assert rows["fconv"] == "FLOAT (not annotated)"
    assert "fconv_hard_swish" not in rows


def test_float_layers_found_in_a_loaded_qat_model(tmp_path):
    qat = quantize.quantize_apply(_conv_net())
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = keras.models.load_model(path)
    assert float_layers(loaded) == float_layers(qat) == [
        "conv2", "pool", "flat", "fc"]


def test_model_still_wrapped_for_pruning_or_clustering_says_strip():
    from tfcompress import cluster, prune
    keras.utils.set_random_seed(0)
    pruned = prune.prune_low_magnitude(_conv_net(annotate=()))
    with pytest.raises(InputError, match="pruning wrapper.*strip_pruning"):
        quantize.quantize_model(pruned)
    clustered = cluster.cluster_weights(_conv_net(annotate=()),
                                        number_of_clusters=4)
    with pytest.raises(InputError,
                       match="clustering wrapper.*strip_clustering"):
        quantize.quantize_apply(quantize.quantize_annotate_model(clustered))


def test_keras_ops_follow_the_layers_around_them():
    # hard_sigmoid as keras.ops calls (keras.applications MobileNetV3):
    # no annotation possible; quantize_annotate_model + quantize_apply
    # must still quantize them, and the ops reading a float layer stay float
    def net(annotate_b=False):
        keras.utils.set_random_seed(0)
        i = keras.Input((6, 6, 3))
        a = L.Conv2D(4, 1, name="a")(i)
        gate = L.ReLU(6.0, name="gate_relu")(a + 3.0) * (1.0 / 6.0)
        b = L.Conv2D(4, 1, name="b")
        if annotate_b:
            b = quantize.quantize_annotate_layer(b)
        return keras.Model(i, b(L.Multiply(name="gated")([a, gate])))

    whole = _rows(quantize.quantize_model(net()))
    annotated = _rows(quantize.quantize_apply(
        quantize.quantize_annotate_model(net())))
    model = quantize.quantize_model(net())
    # x + 3.0 and x * (1 / 6) (auto-named: add, multiply, or add_<n>)
    assert [r["type"] for r in model.quantize_report].count(
        "ConstantArithmetic") == 2
    assert [annotated[n] for n in whole if n in annotated] == \
        [whole[n] for n in whole if n in annotated]
    assert not [n for n, r in annotated.items() if "FLOAT" in r]
    partly = quantize.quantize_apply(net(annotate_b=True))
    rows = _rows(partly)
    assert rows.pop("b").startswith("weights int8")
    # a, its two ops, the ReLU and the Multiply
    assert list(rows.values()) == ["FLOAT (not annotated)"] * 5


def _trained_range(qat, x):
    qat.compile("adam", "mse")
    qat.fit(x, np.zeros((len(x),) + tuple(qat.output.shape[1:])), epochs=1,
            batch_size=len(x), verbose=0)


def test_weightless_layer_without_annotation_stays_float():
    # an unannotated ReLU after quantized Dense layers was written int8
    # with ranges from random inputs (top-1 agreement 0.625)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((16,)),
                          quantize.quantize_annotate_layer(L.Dense(16)),
                          quantize.quantize_annotate_layer(L.Dense(8)),
                          L.ReLU(name="act")])
    qat = quantize.quantize_apply(m)
    assert float_layers(qat) == ["act"]
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32") * 2
    _trained_range(qat, x)
    report = convert(qat, "int8", strict=True, check_data=x).report
    assert report["float_layers"] == ["act"]
    assert report["numerical_check"]["top1_agreement"] >= 0.95


def test_float_layer_making_one_of_several_outputs_stays_float():
    keras.utils.set_random_seed(0)
    i = keras.Input((8,))
    a = L.Dense(8, name="fa")(i)
    b = L.Dense(8, name="fb")(i)
    out1 = quantize.quantize_annotate_layer(L.Dense(3, name="q"))(a)
    out2 = L.Multiply(name="mul")([a, b])
    qat = quantize.quantize_apply(keras.Model(i, [out1, out2]))
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    report = convert(qat, "int8", check_data=x).report
    assert set(report["float_layers"]) == {"fa", "fb", "mul"}
    assert report["numerical_check"]["max_abs_error"] < 0.2


def test_annotations_inside_nested_models_with_repeated_names_count():
    keras.utils.set_random_seed(0)

    def tower(name):
        j = keras.Input((8,))
        h = quantize.quantize_annotate_layer(L.Dense(8, name="t_d1"))(j)
        return keras.Model(j, L.Dense(4, name="t_d2")(h), name=name)

    i = keras.Input((8,))
    m = keras.Model(i, L.Concatenate()([tower("a")(i), tower("b")(i)]))
    rows = [r for r in quantize.quantize_apply(m).quantize_report
            if r["layer"] == "t_d1"]
    assert len(rows) == 2 and all(r["quantized"].startswith("weights int8")
                                  for r in rows)


def test_annotating_a_whole_model_or_bits_for_a_float_layer_is_refused():
    inner = keras.Sequential([keras.Input((4,)), L.Dense(4)], name="base")
    with pytest.raises(InputError, match="base is a model.*"
                                         "quantize_annotate_model"):
        quantize.quantize_annotate_layer(inner)
    with pytest.raises(InputError, match="layer_bits names conv2.*not "
                                         "annotated"):
        quantize.quantize_apply(_conv_net(), layer_bits={"conv2": 4})


def test_output_only_annotation_needs_calibration_data():
    # QAT ranges only the output of a LayerNormalization annotated
    # OutputQuantizeConfig; its inner tensors calibrated on random inputs
    # gave a mean error of 0.94 on outputs up to 3
    keras.utils.set_random_seed(0)
    i = keras.Input((16,))
    h = L.Dense(16, name="d1")(i)
    h = quantize.quantize_annotate_layer(
        L.LayerNormalization(name="ln"), quantize.OutputQuantizeConfig())(h)
    qat = quantize.quantize_model(keras.Model(i, L.Dense(4, name="d2")(h)))
    x = np.random.default_rng(0).normal(size=(256, 16)).astype(
        "float32") * 3
    _trained_range(qat, x)
    with pytest.raises(InputError, match="ln .*OutputQuantizeConfig.*"
                                         "representative_data"):
        convert(qat, "int8", strict=False)
    check = convert(qat, "int8", strict=False, representative_data=x,
                    check_data=x).report["numerical_check"]
    assert check["mean_abs_error"] < 0.05


def test_tfmot_style_quantize_configs_are_refused_not_ignored():
    # tfcompress quantizes by rule: a config picking its own quantizers
    # would be silently dropped
    class DenseConfig(quantize.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return []

    class NotOurs:
        def get_config(self):
            return {}

    for config, words in ((DenseConfig(), "get_weights_and_quantizers"),
                          (NotOurs(), "is not a tfcompress")):
        with pytest.raises(InputError, match=words):
            quantize.quantize_annotate_layer(keras.layers.Dense(2), config)
    # tfcompress's own configs, subclassed or not, are accepted
    class Four(quantize.QuantizeConfig):
        pass
    layer = quantize.quantize_annotate_layer(keras.layers.Dense(2),
                                             Four(weight_bits=4))
    assert layer.name.startswith("dense")


def test_tfmot_keyword_names_are_accepted():
    dense = quantize.quantize_annotate_layer(
        to_annotate=keras.layers.Dense(2, name="fc"),
        quantize_config=quantize.NoOpQuantizeConfig())
    model = keras.Sequential([keras.Input((3,)), dense,
                              keras.layers.Dense(2, name="out")])
    qat = quantize.quantize_model(to_quantize=model)
    assert quantize.has_fake_quant(qat)
    qat = quantize.quantize_apply(
        quantize.quantize_annotate_model(to_annotate=model))
    assert quantize.has_fake_quant(qat)
    with pytest.raises(InputError, match="not both"):
        quantize.quantize_annotate_model(model, to_annotate=model)
    with pytest.raises(InputError, match="not both"):
        quantize.quantize_annotate_layer(keras.layers.Dense(2),
                                         to_annotate=keras.layers.Dense(2))
    with pytest.raises(InputError, match="give the model"):
        quantize.quantize_model()


def test_quantized_layer_name_prefix_names_the_wrapped_layers():
    # tfmot's keyword: prefix + the wrapped layer's name, None for none
    annotated = ("conv1", "conv2", "fc")
    qat = quantize.quantize_apply(_conv_net(annotated),
                                  quantized_layer_name_prefix="q8_")
    wrappers = {l.layer.name: l.name for l in qat.layers
                if isinstance(l, QuantizeFused)}
    assert wrappers == {"conv1": "q8_conv1", "conv2": "q8_conv2",
                        "fc": "q8_fc"}
    # the quantizers of float tensors (the input's too) keep their names
    assert {r["wrapper"] for r in qat.quantize_report
            if "wrapper" in r and r["type"] != "float tensor"} == {
        "q8_conv1", "q8_conv2", "q8_fc"}
    qat = quantize.quantize_model(_conv_net(),
                                  quantized_layer_name_prefix=None)
    assert [l.name for l in qat.layers if isinstance(l, QuantizeFused)] \
        == ["conv1", "conv2", "fc"]
    default = quantize.quantize_apply(_conv_net(annotated))
    assert [l.name for l in default.layers
            if isinstance(l, QuantizeFused)] == [
        "quant_conv1", "quant_conv2", "quant_fc"]


@pytest.mark.parametrize("prefix", ["q8_", None])
def test_qat_model_with_a_name_prefix_summarizes_saves_and_converts(
        tmp_path, prefix):
    qat = quantize.quantize_model(_conv_net(),
                                  quantized_layer_name_prefix=prefix)
    rows = {r["layer"]: r.get("wraps")
            for r in quantize.summary(qat, print_fn=None)}
    own = prefix or ""
    assert {own + n: n for n in ("conv1", "conv2", "fc")}.items() <= \
        rows.items()
    path = str(tmp_path / "qat.keras")
    qat.save(path)
    loaded = keras.models.load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in qat.layers]
    x = np.random.default_rng(0).random((8, 12, 12, 1), "float32")
    report = convert(loaded, "int8", strict=True, check_data=x).report
    assert report["fully_integer"]
    assert report["numerical_check"]["max_abs_error"] < 1e-4


@pytest.mark.parametrize("prefix", [3, "q/"])
def test_a_name_prefix_that_is_no_layer_name_prefix_is_refused(prefix):
    with pytest.raises(InputError, match="quantized_layer_name_prefix must "
                                         "be a string without '/'"):
        quantize.quantize_model(_conv_net(),
                                quantized_layer_name_prefix=prefix)


def test_tfmot_n_bit_scheme_keywords_are_accepted():
    scheme = quantize.NBitScheme(num_bits_weight=4, num_bits_activation=8)
    assert (scheme.weight_bits, scheme.activation_bits) == (4, 8)
    assert quantize.NBitScheme(num_bits_weight=3).weight_bits == 3
    assert quantize.NBitScheme().weight_bits == 4
    with pytest.raises(InputError, match="not both"):
        quantize.NBitScheme(weight_bits=4, num_bits_weight=4)


def test_tfmot_scheme_names_from_the_collaborative_optimization_guides():
    # tfmot.experimental.combine's PQAT / CQAT / PCQAT schemes and
    # tfmot.quantization.keras' Default8Bit / DefaultNBit, with tfmot's
    # arguments and defaults
    from tfcompress import cluster
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, name="fc")])
    stripped = cluster.strip_clustering(
        cluster.cluster_weights(model, 4, preserve_sparsity=True))
    annotated = quantize.quantize_annotate_model(stripped)
    for scheme, sparsity, clusters in (
            (quantize.Default8BitPrunePreserveQuantizeScheme(), True, None),
            (quantize.Default8BitClusterPreserveQuantizeScheme(), True, 4),
            (quantize.Default8BitClusterPreserveQuantizeScheme(
                preserve_sparsity=False), False, 4),
            (quantize.Default8BitClusterPreserveQuantizeScheme(False),
             False, 4)):
        row = quantize.summary(quantize.quantize_apply(annotated, scheme),
                               print_fn=None)[-1]
        # preserve_clusters: the clusters kept per channel
        assert (row["preserve_sparsity"], row["preserve_clusters"]) == \
            (sparsity, clusters), scheme
    assert quantize.Default8BitQuantizeScheme().per_channel
    assert not quantize.Default8BitQuantizeScheme(True).per_channel
    n_bit = quantize.DefaultNBitQuantizeScheme()
    assert (n_bit.weight_bits, n_bit.activation_bits) == (8, 8)
    n_bit = quantize.DefaultNBitQuantizeScheme(num_bits_weight=4,
                                               num_bits_activation=4)
    assert (n_bit.weight_bits, n_bit.activation_bits) == (4, 4)
    with pytest.raises(InputError, match="disable_per_axis"):
        quantize.Default8BitQuantizeScheme(disable_per_axis="yes")


def test_tfmot_quantizer_names_say_what_to_use_instead():
    # the guide's custom QuantizeConfig starts with
    # LastValueQuantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer
    for name in ("quantizers", "LastValueQuantizer",
                 "MovingAverageQuantizer", "AllValuesQuantizer"):
        with pytest.raises(AttributeError,
                           match=r"QuantizeConfig\(weight_bits=N\)"):
            getattr(quantize, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        quantize.nothing
    assert not hasattr(quantize, "quantizers")


def _padded_net():
    """conv -> BN -> ReLU6 -> pad -> stride-2 depthwise -> BN -> ReLU6,
    twice (MobileNetV2's downsampling), then pooling and a Dense; batch
    statistics set from data so the activations carry information."""
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 3))
    h = i
    for n in range(2):
        h = L.Conv2D(8, 3, padding="same", name=f"c{n}")(h)
        h = L.ReLU(6.0, name=f"r{n}")(L.BatchNormalization(name=f"b{n}")(h))
        h = L.ZeroPadding2D(((0, 1), (0, 1)), name=f"pad{n}")(h)
        h = L.DepthwiseConv2D(3, strides=2, name=f"dw{n}")(h)
        h = L.ReLU(6.0, name=f"dr{n}")(L.BatchNormalization(
            name=f"db{n}")(h))
        h = L.Dropout(0.1, name=f"drop{n}")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(i, L.Dense(4, name="fc")(h))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 16, 16, 3)).astype(
        "float32")
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    return model, x


def test_unannotated_padding_and_dropout_follow_the_tensor_they_read():
    """Every layer annotated but the paddings and dropouts: they pass the
    int8 values they read on (TFLite's PAD keeps its input's scale), so
    QAT gives them no range of their own and the flatbuffer computes
    what the QAT model computes, as with every layer annotated. With a
    range of their own the converter wrote no requantization for them:
    top-1 agreement 0.984 and 80x the error on this model."""
    model, x = _padded_net()

    def annotate(skip):
        return quantize.quantize_apply(keras.models.clone_model(
            model, clone_function=lambda l: l if isinstance(l, skip)
            else quantize.quantize_annotate_layer(l)))

    full = annotate(())
    partial = annotate((L.ZeroPadding2D, L.Dropout))
    rows = _rows(partial)
    for n in range(2):
        assert rows[f"pad{n}"] == rows[f"drop{n}"] == \
            "pass-through (keeps scale)"
    assert not [r for r in quantize.summary(partial, print_fn=None)
                if r["layer"].endswith("_output")]
    checks = []
    for qat in (full, partial):
        qat.compile(keras.optimizers.Adam(1e-4), "mse")
        qat.fit(x, np.zeros((64, 4)), batch_size=16, epochs=1, verbose=0)
        report = convert(qat, "int8", strict=True, check_data=x).report
        assert report["fully_integer"]
        checks.append(report["numerical_check"])
    assert checks[1]["top1_agreement"] == 1.0
    assert checks[1]["mean_abs_error"] <= 2 * checks[0]["mean_abs_error"] \
        + 1e-6
