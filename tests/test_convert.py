import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from tfcompress import quantize
from tfcompress.convert import FloatFallbackError, convert
from tfcompress.errors import InputError
from tfcompress.models import lenet_300_100, mobilenet_small


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((48, 28, 28, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)
    return mobilenet_small()


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic", "int8",
                                  "int16x8"])
def test_mobilenet_converts_in_every_mode(mobilenet, x, mode, tmp_path):
    out = tmp_path / f"m_{mode}.tflite"
    r = convert(mobilenet, mode, representative_data=x, output_path=out,
                strict=False)
    assert r.report["size_bytes"] == os.path.getsize(out)
    assert r.report["mode"] == mode
    chk = r.report["numerical_check"]
    assert chk["top1_agreement"] >= 0.9
    if mode in ("int8", "int16x8"):
        assert r.report["fully_integer"], r.fallback_ops
    if mode == "float32":
        assert chk["max_abs_error"] < 1e-4
    json.loads(r.to_json())
    assert "TFLite vs Keras" in r.to_table()


def test_int8_integer_io_and_scales(mobilenet, x):
    r = convert(mobilenet, "int8", representative_data=x, input_type="int8",
                output_type="int8")
    assert r.report["inputs"][0]["dtype"] == "INT8"
    assert r.report["outputs"][0]["dtype"] == "INT8"
    assert "QUANTIZE" not in r.report["op_counts"]
    conv = [w for w in r.report["weights"] if w["dtype"] == "INT8"
            and len(w["shape"]) == 4]
    assert conv and all(w["quantization"]["per_channel"] for w in conv)
    assert r.report["numerical_check"]["top1_agreement"] >= 0.9


def _minmax_of_activations(model, samples, names):
    """Min-max range (widened to hold 0) of the named activations of the
    float TFLite model over ``samples``."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=convert(model, "float32").tflite_bytes,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    index = {d["name"]: d["index"] for d in it.get_tensor_details()}
    ranges = {n: (0.0, 0.0) for n in names if n in index}
    for sample in samples:
        it.set_tensor(it.get_input_details()[0]["index"], sample[None])
        it.invoke()
        for n, (lo, hi) in ranges.items():
            v = it.get_tensor(index[n])
            ranges[n] = (min(lo, float(v.min())), max(hi, float(v.max())))
    return ranges


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_int16x8_refuses_a_calibration_it_would_ignore(x, method):
    # int16x8 went through TFLite's own min/max calibrator: the flatbuffer
    # was the min-max one and the report's calibration None
    with pytest.raises(InputError, match="int16x8 calibrates with min/max"):
        convert(lenet_300_100(), "int16x8", calibration=method,
                representative_data=x)


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic"])
def test_float_modes_refuse_a_calibration_they_would_ignore(x, mode):
    # float activations have no ranges: entropy converted silently to the
    # same flatbuffer as minmax, the report's calibration None
    with pytest.raises(InputError, match=f"^calibration='entropy' chooses "
                       f"int8 activation ranges; mode {mode} keeps "):
        convert(lenet_300_100(), mode, calibration="entropy",
                representative_data=x)
    # the default still converts
    r = convert(lenet_300_100(), mode, representative_data=x[:4])
    assert r.report["calibration"] is None


def test_a_percentile_without_percentile_calibration_is_refused(x):
    # percentile= was read by calibration='percentile' alone: with minmax
    # it converted silently with the full ranges
    with pytest.raises(InputError, match="^percentile=99.0 sets the share "
                       "kept by calibration='percentile', but calibration "
                       "is 'minmax'"):
        convert(lenet_300_100(), "int8", percentile=99.0,
                representative_data=x[:8])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = convert(lenet_300_100(), "int8", calibration="percentile",
                    percentile=99.0, representative_data=x[:8])
    assert r.report["calibration"] is not None
    # calibration keeps every tensor on purpose: LiteRT's warning that
    # doing so is for debugging is not the user's concern
    assert not [w for w in caught if "preserve_all_tensors" in str(
        w.message)]


def test_qat_model_refuses_a_calibration_it_would_ignore():
    # a QAT model's ranges come from training: percentile converted
    # silently with the fake-quant ranges, the report saying "qat"
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    qat = quantize.quantize_model(model)
    data = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    with pytest.raises(InputError, match="^calibration='percentile': a QAT "
                       "model's activation ranges come from its fake-quant"):
        convert(qat, "int8", representative_data=data,
                calibration="percentile")
    assert convert(qat, "int8").report["calibration"] == "qat"


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_calibration_methods_change_ranges(mobilenet, x, method):
    r = convert(mobilenet, "int8", representative_data=x, calibration=method,
                calibration_samples=8)
    ranges = r.report["calibration_ranges"]
    assert r.report["calibration"] == method and len(ranges) >= 5
    assert all(lo <= 0 <= hi and hi > lo for lo, hi in ranges.values())
    assert r.report["fully_integer"]
    # against min-max on the same 8 samples: never wider, and narrower
    # (clipped outliers) for some activations
    minmax = _minmax_of_activations(mobilenet, x[:8], ranges)
    assert len(minmax) >= 5
    tol = 1e-6
    narrower = 0
    for name, (lo, hi) in minmax.items():
        got_lo, got_hi = ranges[name]
        assert got_lo >= lo - tol - 1e-3 * abs(lo), (name, ranges[name], lo)
        assert got_hi <= hi + tol + 1e-3 * hi, (name, ranges[name], hi)
        narrower += (got_hi - got_lo) < 0.99 * (hi - lo)
    assert narrower >= 1, "every range equals min-max"


def test_calibration_keeps_activations_only_and_few_values_per_sample():
    """calibration='percentile'/'entropy' ran the float flatbuffer on each
    sample and kept a copy of every float tensor, constant weights
    included, before sampling: memory grew as samples x (weights +
    activations), about 5 GB over min-max for ResNet50 at 32x32 on 30
    samples, tens of GB at the default 200 or at 96x96 inputs."""
    import tracemalloc
    from tfcompress import compat
    from tfcompress.convert.calibration import collect_activations
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((256,)),
                              keras.layers.Dense(2048, name="wide"),
                              keras.layers.ReLU(),
                              keras.layers.Dense(4, name="head")])
    tflite = convert(model, "float32").tflite_bytes    # 2 MB of weights
    sub = compat.read_tflite_object(tflite).subgraphs[0]
    activations = {int(t) for op in sub.operators for t in op.outputs}
    data = np.random.default_rng(0).random((64, 256), dtype=np.float32)
    tracemalloc.start()
    try:
        values = collect_activations(tflite, data, max_values=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert values and set(values) <= activations, sorted(values)
    assert all(v.size <= 4096 for v in values.values())
    # weights x 64 samples held 128 MB; now one copy of the flatbuffer
    # (2 MB) and the activations sampled as they come
    assert peak < 8 * 2**20, peak


def _sin_model():
    i = keras.Input((8,))
    h = keras.layers.Dense(8, name="dense_in")(i)
    h = keras.layers.Lambda(lambda t: keras.ops.sin(t), name="sine")(h)
    return keras.Model(i, keras.layers.Dense(2, name="head")(h))


def test_strict_mode_names_float_ops_and_layer(tmp_path):
    m = _sin_model()
    data = np.random.default_rng(0).random((16, 8), dtype=np.float32)
    out = tmp_path / "sin.tflite"
    with pytest.raises(FloatFallbackError, match="SIN.*sine") as e:
        convert(m, "int8", representative_data=data, output_path=out)
    assert "strict=False" in str(e.value)
    assert not out.exists()
    r = convert(m, "int8", representative_data=data, strict=False)
    assert [f["op"] for f in r.fallback_ops] == ["SIN"]


def test_float_ops_of_a_layer_inside_a_nested_model_name_that_layer():
    """Keras 3 LayerNormalization's ``-mean`` is a NEG with no int8
    kernel; inside a Sequential block the op is named after the leaf
    layer, not the block."""
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 3))
    block = keras.Sequential([keras.layers.Conv2D(4, 2, name="conv"),
                              keras.layers.LayerNormalization(name="ln")],
                             name="block")
    h = keras.layers.LayerNormalization(name="top_ln")(block(i))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    m = keras.Model(i, keras.layers.Dense(2, name="head")(h))
    data = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32)
    r = convert(m, "int8", representative_data=data, strict=False)
    assert sorted((f["op"], f["layer"]) for f in r.fallback_ops) == [
        ("NEG", "ln"), ("NEG", "top_ln")]
    assert {o["layer"] for o in r.report["ops"]
            if o["op"] == "CONV_2D"} == {"conv"}


def test_float_ops_name_their_layer_among_layers_named_x_and_x_1():
    """Layers named ``ln``, ``ln_1``, ``ln_2`` (Keras's own naming): the
    converter's scopes are ``ln_1``, ``ln_1_2``, ``ln_2_1``; scope
    ``ln_1`` is the call of ``ln``, not layer ``ln_1``."""
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 3))
    h = keras.layers.Conv2D(4, 2, name="conv")(i)
    for name in ("ln", "ln_1", "ln_2"):
        h = keras.layers.LayerNormalization(name=name)(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    m = keras.Model(i, keras.layers.Dense(2, name="head")(h))
    data = np.random.default_rng(0).random((8, 6, 6, 3), dtype=np.float32)
    r = convert(m, "int8", representative_data=data, strict=False)
    assert [(f["op"], f["layer"]) for f in r.fallback_ops] == [
        ("NEG", "ln"), ("NEG", "ln_1"), ("NEG", "ln_2")]


def test_pruned_model_is_stripped_and_smaller_after_gzip(x):
    from tfcompress import prune
    keras.utils.set_random_seed(0)
    dense = lenet_300_100()
    p = prune.prune_low_magnitude(dense, prune.ConstantSparsity(0.8, 0))
    p.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    p.fit(x[:16], np.zeros(16, "int32"), batch_size=16, epochs=1, verbose=0,
          callbacks=[prune.UpdatePruningStep()])
    r_p = convert(p, "int8", representative_data=x)
    r_d = convert(dense, "int8", representative_data=x)
    assert r_p.report["sparsity"] > 0.75
    assert r_p.report["gzip_bytes"] <= 0.4 * r_d.report["gzip_bytes"]


@pytest.mark.parametrize("mode", ["float32", "int8"])
def test_sparse_storage_is_smaller_and_reported_truthfully(x, mode):
    from tfcompress import prune
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              keras.layers.Flatten(),
                              keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(10)])
    p = prune.prune_low_magnitude(model, prune.ConstantSparsity(0.9, 0))
    p.compile("sgd", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    p.fit(x[:16], np.zeros(16, "int32"), batch_size=16, epochs=1, verbose=0,
          callbacks=[prune.UpdatePruningStep()])
    plain = convert(p, mode, representative_data=x)
    sparse = convert(p, mode, representative_data=x, sparse=True)
    assert sparse.report["size_bytes"] < 0.7 * plain.report["size_bytes"]
    stored = [w["name"] for w in sparse.report["weights"]
              if w["sparse_format"]]
    # every pruned kernel is stored sparse, and only in the sparse model
    pruned_kernels = len(prune.collect_wrappers(p))
    assert stored and len(stored) == pruned_kernels and not any(
        w["sparse_format"] for w in plain.report["weights"])
    # one DENSIFY expands each sparse-stored weight at load
    ops = [o["op"] for o in sparse.report["ops"]]
    assert ops.count("DENSIFY") == len(stored)
    assert any("DENSIFY" in n and "no speed-up" in n
               for n in sparse.report["notes"])
    # the sparse model computes what the dense one does
    a, b = plain.report["numerical_check"], sparse.report["numerical_check"]
    assert b["top1_agreement"] == 1.0
    assert b["max_abs_error"] <= a["max_abs_error"] + 1e-6
    if not b["xnnpack"]:       # LiteRT 2.3's XNNPACK refuses int8 + DENSIFY
        assert any("XNNPACK" in n for n in sparse.report["notes"])


def test_bad_inputs_are_clear_errors(mobilenet, x, tmp_path):
    with pytest.raises(InputError, match="Keras model"):
        convert("not a model", "int8")
    with pytest.raises(InputError, match="mode"):
        convert(mobilenet, "int4")
    with pytest.raises(InputError, match="representative_data"):
        convert(mobilenet, "int8")
    with pytest.raises(InputError, match=r"shape \(4, 28, 28\).*28, 28, 1"):
        convert(mobilenet, "int8", representative_data=x[:4, ..., 0])
    with pytest.raises(InputError, match="dtype"):
        convert(mobilenet, "int8",
                representative_data=np.array([["a"] * 3] * 2))
    with pytest.raises(InputError, match="needs mode int8"):
        convert(mobilenet, "float16", input_type="int8")
    with pytest.raises(InputError, match="does not exist"):
        convert(mobilenet, "float32", output_path=tmp_path / "no" / "m.tflite")
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(InputError, match="not built"):
        convert(unbuilt, "float32")


def test_unwritable_output_path(mobilenet, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(InputError, match="not writable"):
            convert(mobilenet, "float32", output_path=ro / "m.tflite")
    finally:
        os.chmod(ro, 0o700)


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=env,
                          timeout=300)


def test_cli_convert_and_inspect(mobilenet, x, tmp_path):
    model = tmp_path / "m.keras"
    mobilenet.save(model)
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x)
    out = tmp_path / "m.tflite"
    r = _cli("convert", str(model), "--mode", "int8", "--data", str(npz),
             "--output", str(out))
    assert r.returncode == 0, r.stderr[-1500:]
    assert "fully integer" in r.stdout and out.exists()
    r = _cli("inspect", str(out), "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["fully_integer"] is True


@pytest.mark.parametrize("content", [b"", b"TFL3", b"\x00" * 64,
                                     b"garbage" * 100])
def test_cli_inspect_bad_file_is_one_line_exit_2(tmp_path, content):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    r = _cli("inspect", str(p))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_convert_missing_model(tmp_path):
    r = _cli("convert", str(tmp_path / "none.keras"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_flatten_converts_to_one_reshape_for_any_batch():
    from ai_edge_litert.interpreter import Interpreter
    model = lenet_300_100()
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    r = convert(model, "float32")
    ops = [o["op"] for o in r.report["ops"]]
    assert ops == ["RESHAPE"] + ["FULLY_CONNECTED"] * 3, ops
    it = Interpreter(model_content=r.tflite_bytes)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], [4, 28, 28, 1])
    it.allocate_tensors()
    it.set_tensor(inp["index"], x[:4])
    it.invoke()
    got = it.get_tensor(it.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model.predict(x[:4], verbose=0),
                               atol=1e-4)


def test_two_output_model_is_checked_output_by_output():
    # a model with two outputs used to fail conversion with numpy's
    # "inhomogeneous shape" error, then to skip the check
    keras.utils.set_random_seed(0)
    i = keras.Input((4,))
    h = keras.layers.Dense(3)(i)
    model = keras.Model(i, [h, keras.layers.Dense(2)(h)])
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    r = convert(model, "int8", representative_data=x)
    check = r.report["numerical_check"]
    assert sorted(check["outputs"]) == ["output_0", "output_1"]
    assert check["outputs"]["output_0"]["max_abs_error"] < 0.05
    assert check["outputs"]["output_1"]["max_abs_error"] < 0.05
    assert check["max_abs_error"] == max(
        o["max_abs_error"] for o in check["outputs"].values())


def test_subclassed_model_converts_with_its_numerical_check():
    class Affine(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Affine()
    x = np.random.default_rng(0).random((16, 4)).astype("float32")
    model(x)
    r = convert(model, "int8", representative_data=x)
    assert r.report["numerical_check"]["samples"] == 16
    # without data: random inputs of the flatbuffer's input shape
    r = convert(model, "float32")
    assert r.report["numerical_check_data"] == "random inputs in [0, 1]"
    assert r.report["numerical_check"]["max_abs_error"] < 1e-5


def test_tf_keras_models_made_by_tfmot_convert():
    # convert's docstring: tfmot's tf_keras models are stripped and
    # converted (their inputs carry tf.DType, not a numpy dtype). In a
    # fresh interpreter: this process has Keras 3 models and two logical
    # CPUs configured, which tf_keras's variable freezing trips over.
    pytest.importorskip("tensorflow_model_optimization")
    code = (
        "import tf_keras, tensorflow_model_optimization as tfmot\n"
        "from tfcompress.convert import convert\n"
        "def dense():\n"
        "    return tf_keras.Sequential([tf_keras.Input((4,)),\n"
        "                                tf_keras.layers.Dense(2)])\n"
        "c = tfmot.clustering.keras.cluster_weights(dense(),\n"
        "                                           number_of_clusters=2)\n"
        "for x in (dense(), c):\n"
        "    r = convert(x, 'float32')\n"
        "    print(r.report['numerical_check']['max_abs_error'] < 1e-5)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.stdout.split() == ["True", "True"], out.stderr[-1500:]


def test_sparse_with_float_layers_is_refused():
    # the combination wrote a flatbuffer without the model's ops
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D()(x)))
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    with pytest.raises(InputError, match="cannot be combined"):
        convert(model, "int8", representative_data=x, sparse=True,
                float_layers=["c1"])


@pytest.mark.parametrize("first, dtype, top", [
    (None, "float32", 1.0),                          # pixels in [0, 1]
    (keras.layers.Rescaling(1 / 255.0), "float32", 255.0),
    (keras.layers.Rescaling(1 / 255.0), "uint8", 255.0),
])
def test_cli_data_pixels_are_scaled_as_the_model_takes_them(
        tmp_path, first, dtype, top):
    # a model that rescales its own pixels (MobileNetV3, EfficientNet, a
    # base behind Rescaling) was calibrated on pixels in [0, 1], and a
    # uint8-input model on pixels cast from [0, 1] to 0 or 1
    from tfcompress.commands.convert import _load_samples
    inputs = keras.Input((4, 4, 1), dtype=dtype)
    h = first(inputs) if first is not None else inputs
    model = keras.Model(inputs, keras.layers.Dense(2)(
        keras.layers.Flatten()(h)))
    pixels = np.arange(32, dtype=np.uint8).reshape(2, 4, 4) * 8 + 7
    npz = tmp_path / "d.npz"
    np.savez(npz, x=pixels)
    x = _load_samples(str(npz), 10, model)
    assert x.shape == (2, 4, 4, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], pixels * (top / 255.0), rtol=1e-6)


def test_op_making_the_model_output_is_attributed_to_its_layer():
    # the output tensor is named Identity, and the report (and strict
    # mode's error) named a layer "Identity" the model does not have
    class Negate(keras.layers.Layer):
        def call(self, t):
            return -t

    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4, name="fc")(inputs)
    model = keras.Model(inputs, Negate(name="negate")(hidden))
    x = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    with pytest.raises(FloatFallbackError, match=r"NEG \(layer negate\)"):
        convert(model, "int8", representative_data=x)
    ops = convert(model, "float32").report["ops"]
    assert [(o["op"], o["layer"]) for o in ops] == [
        ("FULLY_CONNECTED", "fc"), ("NEG", "negate")]


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_op_feeding_the_output_dequantize_is_attributed_to_its_layer(mode):
    # in an integer model the last op writes the output's integer twin
    # (Identity1, Identity_int16): the report named a layer "Identity1"
    # the model does not have, and the DEQUANTIZE after it the Dense
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(4, name="fc")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(hidden))
    x = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    ops = convert(model, mode, representative_data=x).report["ops"]
    assert [(o["op"], o["layer"]) for o in ops
            if o["op"] == "FULLY_CONNECTED"] == [
        ("FULLY_CONNECTED", "fc"), ("FULLY_CONNECTED", "head")]


@pytest.mark.parametrize("mode", ["float32", "float16", "dynamic"])
def test_strict_with_a_float_mode_is_an_input_error(mode):
    # it raised FloatFallbackError for every op, advising integer kernels
    with pytest.raises(InputError, match=f"mode {mode} computes in float"):
        convert(lenet_300_100(), mode, strict=True)


def test_cli_spells_strict_true_as_its_flag():
    from tfcompress.commands.convert import cli_spelling
    assert cli_spelling("strict=True refuses") == "--strict refuses"


def test_flatbuffer_litert_cannot_prepare_is_a_clear_error(tmp_path):
    # LiteRT's int16 kernels refuse very narrow ranges (activations near
    # zero: a kernel scaled down 10^4); the interpreter's bare RuntimeError
    # came out of the numerical check with no op, layer or way out
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = L.Conv2D(8, 1, use_bias=False, name="expand")(inputs)
    h = L.ReLU(6.0, name="expand_relu")(L.BatchNormalization(name="bn1")(h))
    h = L.DepthwiseConv2D(3, use_bias=False, name="depthwise")(h)
    h = L.ReLU(6.0, name="dw_relu")(L.BatchNormalization(name="bn2")(h))
    model = keras.Model(inputs, L.Conv2D(4, 1, name="project")(h))
    kernel, = model.get_layer("expand").get_weights()
    model.get_layer("expand").set_weights([kernel * 1e-4])
    x = np.random.default_rng(0).random((8, 8, 8, 3), dtype=np.float32)
    out = tmp_path / "m.tflite"
    with pytest.raises(RuntimeError, match=r"LiteRT cannot run the "
                       r"converted int16x8 flatbuffer, so nothing was "
                       r"written: op #\d+ \w+ \(layer \w+\).*mode int8"):
        convert(model, "int16x8", representative_data=x, output_path=out)
    assert not out.exists()


def test_int16x8_op_litert_has_no_kernel_for_is_a_clear_error(tmp_path):
    # LayerNormalization's SQUARED_DIFFERENCE converts to int16, which
    # LiteRT cannot run: a bare "failed to invoke" from the numerical check
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    h = keras.layers.LayerNormalization(name="norm")(h)
    model = keras.Model(inputs, h)
    x = np.random.default_rng(0).random((8, 4, 4, 3), dtype=np.float32)
    out = tmp_path / "m.tflite"
    with pytest.raises(RuntimeError, match=r"cannot run the converted "
                       r"int16x8 flatbuffer, so nothing was written: op #\d+ "
                       r"SQUARED_DIFFERENCE \(layer norm\).*no 16-bit kernel"):
        convert(model, "int16x8", representative_data=x, output_path=out,
                strict=False)
    assert not out.exists()


def test_cli_int16x8_model_litert_cannot_run_is_an_input_error(tmp_path):
    # the documented refusal came out as "unexpected RuntimeError", exit 1
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(8, 1, name="conv")(inputs)
    h = keras.layers.LayerNormalization(name="norm")(h)
    path, data = tmp_path / "m.keras", tmp_path / "x.npz"
    keras.Model(inputs, h).save(path)
    np.savez(data, x=np.random.default_rng(0).random((8, 4, 4, 3),
                                                      dtype=np.float32))
    out = tmp_path / "m.tflite"
    r = _cli("convert", str(path), "--mode", "int16x8", "--nostrict",
             "--data", str(data), "--output", str(out))
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("tfcompress: error: LiteRT cannot run the "
                           "converted int16x8 flatbuffer"), r.stderr
    assert "SQUARED_DIFFERENCE" in last and not out.exists()


def test_cli_convert_refuses_to_write_over_the_model_file(tmp_path):
    # --output model.keras replaced the Keras model with the flatbuffer
    model = tmp_path / "m.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(model)
    saved = model.read_bytes()
    r = _cli("convert", str(model), "--mode", "float32", "--output",
             str(model))
    assert r.returncode == 2 and "is the model file itself" in r.stderr
    assert model.read_bytes() == saved


def test_cli_convert_refuses_to_write_over_another_keras_model(tmp_path):
    # --output other.keras replaced that Keras model with the flatbuffer
    model, other = tmp_path / "m.keras", tmp_path / "other.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(model)
    other.write_bytes(model.read_bytes())
    r = _cli("convert", str(model), "--mode", "float32", "--output",
             str(other))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"tfcompress: error: --output {other} names a Keras model file, "
        "which the flatbuffer would replace; give a .tflite path")
    assert other.read_bytes() == model.read_bytes()


def test_a_qat_model_without_data_is_checked_on_inputs_in_its_range():
    # a QAT model that scales its own pixels learned an input range of
    # [0, 255]: random [0, 1) inputs would all fall in its first int8 step
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    qat = quantize.quantize_model(model)
    x = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 3))
    qat(x.astype("float32"), training=True)         # learns the ranges
    result = convert(qat, "int8")
    assert result.report["numerical_check_data"] == \
        "random inputs in [0, 255]"
    assert result.report["numerical_check"]["samples"] == 32



def test_calibrating_from_few_samples_says_so_in_the_notes():
    """Ranges from 3 samples are from 3 samples: the report says how many
    calibrated it and how many were asked for; 200 say nothing."""
    import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    x = np.random.default_rng(0).random((200, 8), dtype=np.float32)
    few = convert(model, "int8", representative_data=x[:3]).report["notes"]
    assert [n for n in few if "3 samples" in n and "200" in n]
    full = convert(model, "int8", representative_data=x).report["notes"]
    assert not [n for n in full if "samples" in n and "calibrat" in n]
