"""Arguments of the wrong kind (None, a string, a float where a count goes,
a number where layer names go) are one-line InputErrors naming the
argument, not TypeErrors from deep inside."""

import keras
import numpy as np
import pytest

from tfcompress import cluster, distill, prune, quantize
from tfcompress.analyze import sensitivity
from tfcompress.bench import benchmark_model
from tfcompress.convert import convert
from tfcompress.errors import InputError
from tfcompress.prune.lottery import find_winning_ticket


def _model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, name="c1"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="fc")])


def _seeded(seed):
    return _model()


def _train(model, callbacks):
    raise AssertionError("the arguments are checked before any training")


X = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
Y = np.arange(16) % 3
HALF = prune.ConstantSparsity(0.5, 0)

# (call, what the message names); cluster_weights checked exclude already;
# each other call raised a TypeError, ValueError or
# AttributeError before, or was taken silently (per_channel="no")
CASES = {
    "prune include=3": (lambda: prune.prune_low_magnitude(
        _model(), include=3), "include takes layer names"),
    "prune exclude=[1]": (lambda: prune.prune_low_magnitude(
        _model(), exclude=[1]), "exclude takes layer names"),
    "prune global_pruning='yes'": (lambda: prune.prune_low_magnitude(
        _model(), global_pruning="yes"), "global_pruning must be True or "
        "False"),
    "prune min_density=True": (lambda: prune.prune_low_magnitude(
        _model(), min_density=True), "min_density must be a fraction"),
    "PolynomialDecay power=nan": (lambda: prune.PolynomialDecay(
        0.0, 0.5, 0, 10, power=float("nan")), "power must be a number"),
    "ChannelPruning exclude=0": (lambda: prune.ChannelPruning(
        HALF, exclude=0), "exclude takes layer names"),
    "ChannelPruning initial_step='0'": (lambda: prune.ChannelPruning(
        HALF, initial_step="0"), "initial_step must be a whole number"),
    "ChannelPruning initial_step=2.5": (lambda: prune.ChannelPruning(
        HALF, initial_step=2.5), "initial_step must be a whole number"),
    "ChannelPruning max_space_sparsity=None": (lambda: prune.ChannelPruning(
        HALF, allocation="global", max_space_sparsity=None),
        "max_space_sparsity must be between 0 and 1"),
    "count_macs(None)": (lambda: prune.count_macs(None),
                         "count_macs takes a Keras model"),
    "strip_pruning(None)": (lambda: prune.strip_pruning(None),
                            "strip_pruning takes a Keras model or layer"),
    "strip_clustering(None)": (lambda: cluster.strip_clustering(None),
                               "strip_clustering takes a Keras model"),
    "cluster exclude=1.5": (lambda: cluster.cluster_weights(
        _model(), 4, exclude=1.5), "exclude takes layer names"),
    "cluster per_channel='no'": (lambda: cluster.cluster_weights(
        _model(), 4, per_channel="no"), "per_channel must be True or False"),
    "scheme per_channel=None": (lambda: quantize.Default8BitScheme(
        per_channel=None), "per_channel must be True or False"),
    "scheme fold_batchnorm='no'": (lambda: quantize.Default8BitScheme(
        fold_batchnorm="no"), "fold_batchnorm must be True or False"),
    "Distiller temperature=None": (lambda: distill.Distiller(
        _model(), _model(), temperature=None), "temperature must be > 0"),
    "Distiller alpha='x'": (lambda: distill.Distiller(
        _model(), _model(), alpha="x"), "alpha must be in"),
    "sensitivity sparsities=None": (lambda: sensitivity(
        _model(), (X, Y), sparsities=None, bits=8),
        "sparsities takes a number or a list"),
    "sensitivity sparsities=('x',)": (lambda: sensitivity(
        _model(), (X, Y), sparsities=("x",), bits=8),
        "sparsities must be in"),
    "sensitivity bits=None": (lambda: sensitivity(
        _model(), (X, Y), sparsities=0.5, bits=None),
        "bits takes a number or a list"),
    "sensitivity batch_size=0": (lambda: sensitivity(
        _model(), (X, Y), sparsities=0.5, bits=8, batch_size=0),
        "batch_size must be an integer of at least 1"),
    "sensitivity layers=3": (lambda: sensitivity(
        _model(), (X, Y), sparsities=0.5, bits=8, layers=3),
        "layers takes layer names"),
    "convert strict='no'": (lambda: convert(
        _model(), "int8", representative_data=X, strict="no"),
        "convert: strict must be True or False"),
    "convert per_channel=None": (lambda: convert(
        _model(), "int8", representative_data=X, per_channel=None),
        "convert: per_channel must be True or False"),
    "convert float_layers=3": (lambda: convert(
        _model(), "int8", representative_data=X, float_layers=3),
        "float_layers takes layer names"),
    "convert output_path=0": (lambda: convert(
        _model(), "float32", output_path=0),
        "output_path must be a file path"),
    "benchmark_model path=None": (lambda: benchmark_model(None),
                                  "model must be a file path"),
    "benchmark_model runs=None": (lambda: benchmark_model(
        "m.tflite", runs=None), "runs must be an integer of at least 1"),
    "benchmark_model runs=0": (lambda: benchmark_model(
        "m.tflite", runs=0), "runs must be an integer of at least 1"),
    "benchmark_model threads=0": (lambda: benchmark_model(
        "m.tflite", threads=0), "threads must be an integer of at least 1"),
    "benchmark_model warmup_runs=-1": (lambda: benchmark_model(
        "m.tflite", warmup_runs=-1), "warmup_runs must be an integer of at "
        "least 0"),
    "benchmark_model max_seconds='x'": (lambda: benchmark_model(
        "m.tflite", max_seconds="x"), "max_seconds must be a number"),
    "benchmark_model data=1.5": (lambda: benchmark_model(
        "m.tflite", data=1.5), "data must be a file path"),
    "quantize_annotate_layer(3)": (lambda: quantize.quantize_annotate_layer(
        3), "quantize_annotate_layer takes a Keras model or layer"),
    "quantize_annotate_model(None)": (
        lambda: quantize.quantize_annotate_model(None),
        "quantize_annotate_model takes a Keras model"),
    "quantize_model xnnpack_rewrites=None": (
        lambda: quantize.quantize_model(_model(), xnnpack_rewrites=None),
        "xnnpack_rewrites must be True or False"),
    "quantize.summary(None)": (lambda: quantize.summary(None),
                               "quantize.summary takes a Keras model"),
    "prune.summary('m.keras')": (lambda: prune.summary("m.keras"),
                                 "prune.summary takes a Keras model"),
    "cluster.summary(None)": (lambda: cluster.summary(None),
                              "cluster.summary takes a Keras model"),
    "PruningSummaries(log_dir=None)": (lambda: prune.PruningSummaries(None),
                                       "log_dir must be a folder path"),
    "find_winning_ticket model_fn=None": (lambda: find_winning_ticket(
        None, _train), "model_fn must be a function"),
    "find_winning_ticket model_fn returns None": (
        lambda: find_winning_ticket(lambda seed: None, _train),
        r"model_fn\(seed\) must return a compiled Keras model"),
    "find_winning_ticket rounds=2.5": (lambda: find_winning_ticket(
        _seeded, _train, rounds=2.5), "rounds must be an integer of at "
        "least 0"),
    "find_winning_ticket seed=None": (lambda: find_winning_ticket(
        _seeded, _train, seed=None), "seed must be an integer"),
    "find_winning_ticket prune_fraction_per_round='x'": (
        lambda: find_winning_ticket(_seeded, _train,
                                    prune_fraction_per_round="x"),
        "prune_fraction_per_round must be in"),
    "find_winning_ticket random_control='yes'": (
        lambda: find_winning_ticket(_seeded, _train, random_control="yes"),
        "random_control must be True or False"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_argument_of_the_wrong_kind_is_an_input_error(case):
    call, message = CASES[case]
    with pytest.raises(InputError, match=message):
        call()


def test_one_layer_name_is_taken_as_a_list_of_one():
    # ChannelPruning refused exclude="c1"; pruning and clustering take it
    cb = prune.ChannelPruning(HALF, exclude="c1")
    assert cb.exclude == {"c1"}
    pruned = prune.prune_low_magnitude(_model(), exclude="c1")
    assert type(pruned.get_layer("c1")).__name__ == "Conv2D"
