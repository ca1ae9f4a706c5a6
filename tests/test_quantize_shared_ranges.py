"""QAT gives the tensors TFLite must give one int8 scale one range, so the
converter adds no requantizing ops (DenseNet's concatenation chains), and
rounds a batch-norm output once when TFLite fuses the next ReLU into it."""

import collections

import keras
import numpy as np
from keras import layers as L

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.quantize.zoo import output_step


def _dense_blocks(blocks=2, layers_per_block=3):
    """DenseNet in small: BN-ReLU-Conv layers whose outputs are
    concatenated onto the block, average-pooling transitions."""
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(i)
    for b in range(blocks):
        for k in range(layers_per_block):
            h = L.Activation("relu")(L.BatchNormalization()(x))
            h = L.Conv2D(4, 3, padding="same", use_bias=False)(h)
            x = L.Concatenate(name=f"block{b}_concat{k}")([x, h])
        if b < blocks - 1:
            x = L.ReLU()(L.BatchNormalization()(x))
            x = L.AveragePooling2D(2)(L.Conv2D(8, 1, name=f"trans{b}")(x))
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.BatchNormalization()(x)))
    return keras.Model(i, L.Dense(10)(x))


def _images(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype(
        "float32")


def _qat(model, x, steps=2):
    q = quantize.quantize_model(model)
    q.compile(keras.optimizers.Adam(1e-4), "mse")
    q.fit(x[:16 * steps], np.zeros((16 * steps,) + q.output.shape[1:]),
          batch_size=16, verbose=0)
    return q


def _ops(result):
    return collections.Counter(op["op"] for op in result.report["ops"])


def test_concatenation_chains_add_no_requantizing_ops():
    keras.utils.set_random_seed(0)
    m, x = _dense_blocks(), _images()
    q = _qat(m, x)
    r = convert(q, "int8", representative_data=x, check_data=x,
                check_samples=len(x))
    ptq = convert(m, "int8", representative_data=x)
    # the input's QUANTIZE only, as post-training calibration gives it
    assert _ops(r)["QUANTIZE"] == _ops(ptq)["QUANTIZE"] == 1, _ops(r)
    assert r.report["fully_integer"]


def test_each_chain_shares_the_range_of_its_last_concatenation():
    keras.utils.set_random_seed(0)
    q = quantize.quantize_model(_dense_blocks())
    rows = {r["layer"]: r for r in q.quantize_report}
    for k in range(3):
        assert rows[f"block0_concat{k}"]["shared_range"] == \
            "quant_range_block0_concat2"
        assert rows[f"block1_concat{k}"]["shared_range"] == \
            "quant_range_block1_concat2"
    # the stem and the transition convolution reach a chain through
    # scale-keeping layers (none, average pooling): they take its range
    assert rows["stem"]["shared_range"] == "quant_range_block0_concat2"
    assert rows["trans0"]["shared_range"] == "quant_range_block1_concat2"
    summary = {r["layer"]: r for r in quantize.summary(q, print_fn=None)}
    assert summary["quant_block0_concat0"]["output_range"] is None
    assert summary["quant_range_block0_concat2"]["output_range"] is not None


def test_only_the_last_concatenation_moves_the_shared_range():
    keras.utils.set_random_seed(0)
    q = quantize.quantize_model(_dense_blocks(blocks=1))
    x = _images(16)
    shared = q.get_layer("quant_range_block0_concat2")
    before = [float(v.numpy()) for v in shared.range]
    # the chain up to the last concatenation, without its quantizer: the
    # other members read the range and leave it
    last = keras.Model(q.inputs[0], q.get_layer("quant_block0_concat2").output)(
        x, training=True)
    assert [float(v.numpy()) for v in shared.range] == before
    q(x, training=True)
    lo, hi, seen = (float(v.numpy()) for v in shared.range)
    # the first batch sets the range: the last concatenation's min and max
    assert seen == 1.0
    assert lo == min(0.0, float(np.min(last)))
    assert hi == max(0.0, float(np.max(last)))


def test_shared_range_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    x = _images(32)
    q = _qat(_dense_blocks(blocks=1), x, steps=1)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               q.predict(x, verbose=0), atol=1e-6)
    # the members still only read the range: a training call moves both
    # models' ranges alike
    q(x, training=True)
    loaded(x, training=True)
    name = "quant_range_block0_concat2"
    np.testing.assert_allclose(
        [v.numpy() for v in loaded.get_layer(name).range],
        [v.numpy() for v in q.get_layer(name).range], rtol=1e-6)


def test_batchnorm_followed_by_relu_is_rounded_once():
    # TFLite fuses the ReLU into the batch norm's 1x1 depthwise op and
    # rounds once, to the ReLU's scale; QAT used to round first to the
    # batch norm's own range, which put many outputs a step off
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    bn = L.BatchNormalization(name="bn")
    m = keras.Model(i, L.ReLU()(bn(i)))
    rng = np.random.default_rng(1)
    bn.set_weights([rng.uniform(0.5, 2, 3), rng.normal(size=3),
                    rng.normal(size=3), rng.uniform(0.2, 1, 3)])
    x = _images(200)
    q = _qat(m, x)
    r = convert(q, "int8", representative_data=x, check_data=x,
                check_samples=len(x))
    chk = r.report["numerical_check"]
    step = output_step(q)
    assert chk["mean_abs_error"] <= 0.01 * step, (chk, step)
    row = [r for r in q.quantize_report if r["layer"] == "bn"][0]
    assert "activation fused" in row["quantized"]


def test_share_concat_ranges_false_gives_each_concatenation_its_range():
    keras.utils.set_random_seed(0)
    m, x = _dense_blocks(blocks=1), _images()
    scheme = quantize.Default8BitScheme(share_concat_ranges=False)
    q = quantize.quantize_model(m, scheme)
    assert not any("shared_range" in r for r in q.quantize_report)
    q.compile(keras.optimizers.Adam(1e-4), "mse")
    q.fit(x[:32], np.zeros((32, 10)), batch_size=16, verbose=0)
    r = convert(q, "int8", representative_data=x)
    # the stem's and two concatenations' ranges meet a later one's
    assert _ops(r)["QUANTIZE"] > 1, _ops(r)


def test_recipe_key_share_concat_ranges():
    from tfcompress.recipes import stages
    from tfcompress.recipes.schema import load_recipe_text
    text = ("model: lenet_300_100\nvariants:\n  - name: v\n    stages:\n"
            "      - qat: {share_concat_ranges: false}\n")
    params = load_recipe_text(text, "r.yaml")["variants"][0]["stages"][0]
    assert params["qat"]["share_concat_ranges"] is False
    x = _images(16)
    data = ((x, np.zeros(16, "int64")),) * 2
    m = _dense_blocks(blocks=1)
    m.compile("adam", "mse")
    for share in (True, False):
        qat = stages.run_qat(m, dict(params["qat"],
                                     share_concat_ranges=share),
                             data, {"optimizer": "adam", "batch_size": 8})
        assert any("shared_range" in r for r in qat.quantize_report) \
            is share


def test_lone_batchnorm_feeding_a_concatenation_shares_its_range():
    # NASNet: a batch norm that follows no convolution ("adjust" path)
    # feeds a concatenation and other layers
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    a = L.BatchNormalization(name="adjust_bn")(L.ReLU()(i))
    b = L.Conv2D(4, 3, padding="same", name="branch")(a)
    x = L.Concatenate(name="cat")([a, b])
    m = keras.Model(i, L.Dense(10)(L.GlobalAveragePooling2D()(x)))
    x_ = _images()
    q = _qat(m, x_)
    rows = {r["layer"]: r for r in q.quantize_report}
    assert rows["adjust_bn"]["shared_range"] == "quant_range_cat"
    r = convert(q, "int8", representative_data=x_)
    assert _ops(r)["QUANTIZE"] == 1, _ops(r)
