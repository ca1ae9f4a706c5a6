"""Bad user input raises InputError: exit 2 and one line from the CLI."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress.errors import InputError

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tfcompress", *args],
                          capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=300)


def _assert_one_line_input_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "unexpected" not in result.stderr
    # TensorFlow's native start-up lines aside, tfcompress prints one line
    ours = [l for l in result.stderr.splitlines()
            if l.startswith("tfcompress")]
    assert len(ours) == 1 and ours[0].startswith("tfcompress: error: "), \
        result.stderr
    for w in words:
        assert w in result.stderr


def test_input_error_is_a_value_error():
    # callers written against ``except ValueError`` keep working
    assert issubclass(InputError, ValueError)


def test_cli_npz_missing_arrays_is_input_error(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((4, 28, 28), np.uint8))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: lenet_300_100\ndata: {data}\n")
    r = _cli("run", str(recipe), "--out", str(tmp_path / "out"))
    _assert_one_line_input_error(r, "missing arrays", "y_train")
    # nothing was written: the data is read before the run folder is made
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, words", [
    ("text", "is not an .npz file of numeric arrays"),
    ("strings", "array x_train holds <U1 values, not numbers"),
    ("objects", "cannot read its arrays"),
    ("one_array", "holds one array, not an .npz of named arrays"),
])
def test_npz_data_that_is_not_numeric_arrays_is_input_error(
        tmp_path, content, words):
    # numpy's ValueError came out of the CLI as an unexpected failure
    from tfcompress.data import load_npz
    path = tmp_path / "d.npz"
    if content == "text":
        path.write_text("x,y\n1,2\n")
    elif content == "one_array":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        bad = np.array(["a", "b"]) if content == "strings" else \
            np.array([1, None], dtype=object)
        np.savez(path, x_train=bad, y_train=np.arange(2), x_test=bad,
                 y_test=np.arange(2))
    with pytest.raises(InputError, match=words):
        load_npz(str(path))


def test_cli_convert_data_that_is_not_an_npz_is_input_error(tmp_path):
    model, data = tmp_path / "m.keras", tmp_path / "d.npz"
    keras.Sequential([keras.Input((4,)), L.Dense(2)]).save(model)
    data.write_text("x,y\n1,2\n")
    r = _cli("convert", str(model), "--data", str(data), "--output",
             str(tmp_path / "m.tflite"))
    _assert_one_line_input_error(r, "is not an .npz file of numeric arrays")
    assert not (tmp_path / "m.tflite").exists()


def test_cli_recipe_bad_list_value_is_input_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: lenet_300_100\nvariants:\n  - name: p\n"
                      "    stages:\n      - prune: {block_size: [0, 4]}\n")
    r = _cli("run", str(recipe), "--out", str(tmp_path / "out"))
    _assert_one_line_input_error(r, "block_size")


def test_cluster_wrapper_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="number_of_clusters must be >= 2"):
        from tfcompress.cluster import ClusterWeights
        ClusterWeights(L.Dense(4), 1)
    with pytest.raises(InputError, match="has no kernel"):
        ClusterWeights(L.ReLU(), 4)
    with pytest.raises(InputError, match="centroid_init must be one of"):
        from tfcompress.cluster.centroids import init_centroids
        init_centroids(np.arange(10.0), 3, "kmeans")


def test_cluster_more_clusters_than_weights_is_input_error():
    from tfcompress.cluster import ClusterWeights
    layer = ClusterWeights(L.Dense(1), 8)
    with pytest.raises(InputError, match="larger than the 2 weights"):
        layer(np.ones((1, 2), np.float32))


def test_quantize_api_bad_model_is_input_error():
    from tfcompress import quantize
    with pytest.raises(InputError, match="takes a Keras model"):
        quantize.quantize_apply(L.Dense(2))
    with pytest.raises(InputError, match="not built"):
        quantize.quantize_apply(keras.Sequential([L.Dense(2)]))


def test_quantize_subclassed_model_is_input_error():
    from tfcompress.quantize import transform, Default8BitScheme

    class Sub(keras.Model):
        def call(self, x):
            return x

    m = Sub()
    m(np.ones((1, 2), np.float32))
    with pytest.raises(InputError, match="subclassed model"):
        transform.quantize_graph(m, Default8BitScheme(), [])


def test_unsupported_layer_error_is_input_error():
    from tfcompress.quantize import UnsupportedLayerError
    assert issubclass(UnsupportedLayerError, InputError)


def test_unsupported_layer_error_is_the_runtime_error_tfmot_raises():
    # tfmot's quantize_model raises RuntimeError for a layer it has no
    # config for; code written for it catches that
    from tfcompress import quantize

    class Custom(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    i = keras.Input((4,))
    model = keras.Model(i, keras.layers.Dense(2)(Custom(name="custom")(i)))
    with pytest.raises(RuntimeError, match="custom"):
        quantize.quantize_model(model)


def test_scheme_bits_out_of_range_is_input_error():
    from tfcompress.quantize import Default8BitScheme
    with pytest.raises(InputError, match="between 2 and 8"):
        Default8BitScheme(weight_bits=9)


@pytest.mark.parametrize("bits", [4.5, "4", True])
def test_scheme_bits_not_an_integer_is_input_error(bits):
    from tfcompress.quantize import NBitScheme
    with pytest.raises(InputError, match="weight_bits must be an integer"):
        NBitScheme(weight_bits=bits)


def _small_dense():
    return keras.Sequential([keras.Input((4,)), L.Dense(3, name="fc")])


@pytest.mark.parametrize("scheme, words", [
    ("default_8bit", "scheme must be a tfcompress.quantize scheme"),
    ({"weight_bits": 4}, "scheme must be a tfcompress.quantize scheme"),
    ("class", "pass an instance, e.g. scheme=NBitScheme()"),
])
def test_quantize_scheme_that_is_not_a_scheme_is_input_error(scheme, words):
    from tfcompress import quantize
    if scheme == "class":
        scheme = quantize.NBitScheme
    for api in (quantize.quantize_model, lambda m, s: quantize.quantize_apply(
            quantize.quantize_annotate_model(m), s)):
        with pytest.raises(InputError, match=words) as info:
            api(_small_dense(), scheme)
        assert "\n" not in str(info.value)


def test_quantizing_a_quantized_model_is_input_error():
    from tfcompress import quantize
    qat = quantize.quantize_model(_small_dense())
    with pytest.raises(InputError, match="already quantized.*float model"):
        quantize.quantize_model(qat)
    with pytest.raises(InputError, match="already quantized"):
        quantize.quantize_apply(quantize.quantize_annotate_model(qat))


@pytest.mark.parametrize("first, then, words", [
    ("qat", "prune", "quantization-aware.*PrunePreservingScheme"),
    ("qat", "cluster", "quantization-aware.*ClusterPreservingScheme"),
    ("cluster", "prune", "wrapped for clustering.*strip_clustering"),
])
def test_pruning_or_clustering_a_qat_or_clustered_model_is_input_error(
        first, then, words):
    # none of its layers is prunable or clusterable: nothing was wrapped
    from tfcompress import cluster, prune, quantize
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3),
                              L.Flatten(), L.Dense(3)])
    done = {"qat": quantize.quantize_model,
            "cluster": lambda m: cluster.cluster_weights(m, 4)}[first](model)
    with pytest.raises(InputError, match=words):
        {"prune": prune.prune_low_magnitude,
         "cluster": lambda m: cluster.cluster_weights(m, 4)}[then](done)


def test_unknown_reference_model_is_input_error():
    from tfcompress.models import get_model
    with pytest.raises(InputError, match="unknown reference model"):
        get_model("resnet9000")


def test_cluster_number_of_clusters_must_be_an_integer():
    from tfcompress.cluster import ClusterWeights
    for bad in ("16", 2.5, True):
        with pytest.raises(InputError, match="must be an integer"):
            ClusterWeights(L.Dense(4), bad)


def test_cluster_exclude_unknown_layer_is_input_error():
    from tfcompress import cluster
    m = keras.Sequential([keras.Input((4,)), L.Dense(4, name="a"),
                          L.Dense(2, name="b")], name="m")
    with pytest.raises(InputError, match="exclude names no layer of m: c;"):
        cluster.cluster_weights(m, 2, exclude=["a", "c"])
    # one name as a string is one layer, not its letters
    clustered = cluster.cluster_weights(m, 2, exclude="a")
    kinds = [type(l).__name__ for l in clustered.layers]
    assert kinds == ["Dense", "ClusterWeights"]


def test_missing_output_folder_is_an_input_error(tmp_path):
    from tfcompress.utils import atomic_write_bytes
    with pytest.raises(InputError, match="does not exist; create it"):
        atomic_write_bytes(tmp_path / "no" / "model.tflite", b"x")
    # callers that catch OSError keep working
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "no" / "model.tflite", b"x")
    assert not (tmp_path / "no").exists()


def test_missing_files_the_user_named_are_input_errors(tmp_path):
    from tfcompress.data import load_idx_dataset, read_idx
    from tfcompress.inspect import inspect
    with pytest.raises(InputError, match="give the path of a .tflite"):
        inspect(tmp_path / "nope.tflite")
    with pytest.raises(InputError, match="missing train-images-idx3-ubyte"):
        load_idx_dataset(str(tmp_path))
    (tmp_path / "bad-idx1-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(InputError):
        read_idx(str(tmp_path / "bad-idx1-ubyte"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_calibration_data_that_is_not_finite_is_an_input_error(bad):
    from tfcompress.convert import convert
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    x = np.random.default_rng(0).random((6, 4)).astype("float32")
    x[2, 1] = bad
    with pytest.raises(InputError, match=r"representative_data holds 1 "
                       r"NaN or infinite value\(s\) \(in 1 of 6 samples\)"):
        convert(model, "int8", representative_data=x)


def _model_with_nan_outputs():
    """Finite weights whose activations overflow to inf, then inf - inf."""
    i = keras.Input((6, 6, 3))
    h = L.Conv2D(4, 3, name="huge")(i)
    o = L.Dense(3, name="mix")(L.Flatten()(h))
    model = keras.Model(i, o)
    model.get_layer("huge").kernel.assign(
        np.full(model.get_layer("huge").kernel.shape, 1e38, np.float32))
    signs = np.ones(model.get_layer("mix").kernel.shape, np.float32)
    signs[::2] = -1
    model.get_layer("mix").kernel.assign(signs)
    return model


@pytest.mark.parametrize("mode", ["int8", "int16x8"])
def test_model_with_nan_outputs_on_the_data_is_an_input_error(mode):
    # the converter's calibration segfaulted on such a model (EfficientNetB0
    # diverged by a few steps) or blamed a layer for falling back to float
    from tfcompress.convert import convert
    model = _model_with_nan_outputs()
    x = np.random.default_rng(0).random((8, 6, 6, 3)).astype("float32")
    with pytest.raises(InputError, match=r"the model's outputs hold NaN or "
                       r"infinite values on 8 of the 8 representative "
                       r"samples: .*weights"):
        convert(model, mode, representative_data=x)


@pytest.mark.parametrize("kwargs, message", [
    ({"calibration_samples": 0}, "convert: calibration_samples must be "
     "an integer of at least 1, got 0"),
    ({"calibration_samples": -3}, "convert: calibration_samples must be "
     "an integer of at least 1, got -3"),
    ({"calibration_samples": 2.5}, "convert: calibration_samples must be "
     "an integer of at least 1, got 2.5"),
    ({"calibration_samples": None}, "convert: calibration_samples must be "
     "an integer of at least 1, got None"),
    ({"check_samples": 0}, "convert: check_samples must be an integer of "
     "at least 1, got 0"),
    ({"calibration": "percentile", "percentile": 0}, "percentile=0: give "),
    ({"calibration": "percentile", "percentile": 150},
     "percentile=150: give "),
])
def test_sample_counts_and_percentile_out_of_range_are_input_errors(
        kwargs, message):
    # 0 calibration samples ended in FloatFallbackError, -3 silently
    # dropped three, 2.5 a TypeError, check_samples=0 Keras'
    # UnboundLocalError; percentile 0 inverted every range
    from tfcompress.convert import convert
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    x = np.random.default_rng(0).random((6, 4)).astype("float32")
    with pytest.raises(InputError, match=f"^{re.escape(message)}"):
        convert(model, "int8", representative_data=x, **kwargs)
