"""tfcompress.ptq: batch-norm folding, cross-layer equalization, bias
correction and per-tensor conversion on a tiny Conv-BN-ReLU-Conv-Dense net
whose channels have deliberately unbalanced ranges."""

import keras
import numpy as np
import pytest

from tfcompress import ptq
from tfcompress.convert import convert
from tfcompress.convert.result import litert_interpreter
from tfcompress.errors import InputError
from tfcompress.inspect import inspect

RNG = np.random.default_rng(0)
X = RNG.random((96, 8, 8, 3), dtype=np.float32)


def _batch_stats(model, bn_name, x):
    """Mean and variance of the input of batch norm ``bn_name`` on ``x``."""
    bn = model.get_layer(bn_name)
    y = np.asarray(keras.Model(model.inputs[0], bn.input)(x), np.float64)
    y = y.reshape(-1, y.shape[-1])
    return y.mean(0), y.var(0)


def unbalanced_net(shift=0.5):
    """Conv-BN-ReLU-Conv-Dense; BN gammas span 1000x, conv2 undoes them,
    so the float function is tame but the folded conv1 kernel's channels
    differ by 1000x (per-tensor int8 flattens the small ones). The moving
    statistics are the batch statistics of ``X``, so BN output channel i
    has mean ``shift * gamma_i`` and deviation ``gamma_i``."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False,
                            name="conv1")(i)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.Conv2D(6, 3, name="conv2")(h)
    h = keras.layers.ReLU(name="relu2")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    out = keras.layers.Dense(4, name="fc")(h)
    model = keras.Model(i, out)
    gamma = (10.0 ** np.linspace(-1.5, 1.5, 8)).astype(np.float32)
    bn = model.get_layer("bn1")
    mean, var = _batch_stats(model, "bn1", X)
    bn.set_weights([gamma, (shift * gamma).astype(np.float32),
                    mean.astype(np.float32), var.astype(np.float32)])
    conv2 = model.get_layer("conv2")
    k, b = conv2.get_weights()
    conv2.set_weights([k / gamma[None, None, :, None], b])
    return model


def nested_unbalanced_net():
    """unbalanced_net as the base of a transfer-learning model: nested
    inside a Sequential with a new head."""
    base = unbalanced_net()
    return keras.Sequential([keras.Input((8, 8, 3)), base,
                             keras.layers.Dense(3, name="head")])


def tflite_outputs(result, x):
    interp, _ = litert_interpreter(result.tflite_bytes)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    ys = []
    for sample in x:
        interp.set_tensor(inp["index"], sample[None])
        interp.invoke()
        ys.append(interp.get_tensor(out["index"])[0])
    return np.asarray(ys)


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


def assert_unchanged(model, before):
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- folding ------------------------------------------------------------
def test_fold_batchnorm_replaces_bn_by_identity_and_keeps_outputs():
    model = unbalanced_net()
    before = weights_of(model)
    folded = ptq.fold_batchnorm(model)
    assert type(folded.get_layer("bn1")).__name__ == "FoldedBatchNorm"
    assert folded.get_layer("conv1").use_bias
    np.testing.assert_allclose(folded(X), model(X), rtol=1e-4, atol=1e-4)
    assert_unchanged(model, before)


def test_fold_batchnorm_leaves_a_bn_after_relu_and_says_why():
    from tfcompress.ptq.fold import fold_batchnorm_with_stats
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.BatchNormalization(name="bn")])
    result = fold_batchnorm_with_stats(model)
    assert result.folded == []
    assert "activation" in result.not_folded["bn"]


# -- equalization -------------------------------------------------------
# nested: the base reached inside a transfer-learning model
@pytest.mark.parametrize("build, output", [(unbalanced_net, "fc"),
                                           (nested_unbalanced_net, "head")])
def test_equalize_preserves_float_outputs_and_balances_channel_ranges(
        build, output):
    model = build()
    before = weights_of(model)
    eq, report = ptq.equalize(model, return_report=True)
    assert ("conv1", "conv2") in report.pairs and ("conv2", "fc") in \
        report.pairs
    assert report.unpaired == {output: "model output"}
    assert report.folded_batchnorms == [("conv1", "bn1")]
    np.testing.assert_allclose(eq(X), model(X), rtol=1e-3, atol=1e-3)
    folded = ptq.fold_batchnorm(model).get_layer("conv1").kernel.numpy()
    ranges = lambda k: np.abs(k).reshape(-1, k.shape[-1]).max(0)
    spread_before = ranges(folded).max() / ranges(folded).min()
    k = eq.get_layer("conv1").kernel.numpy()
    assert ranges(k).max() / ranges(k).min() < spread_before / 20
    assert_unchanged(model, before)


def test_equalize_lowers_per_tensor_int8_error_of_the_flatbuffer():
    model = unbalanced_net()
    ref = np.asarray(model(X))
    plain = convert(model, "int8", representative_data=X, per_channel=False,
                    strict=True)
    equalized = convert(ptq.equalize(model), "int8", representative_data=X,
                        per_channel=False, strict=True)
    err_plain = np.abs(tflite_outputs(plain, X) - ref).mean()
    err_eq = np.abs(tflite_outputs(equalized, X) - ref).mean()
    assert err_eq < 0.5 * err_plain, (err_plain, err_eq)


def test_high_bias_absorption_moves_bias_and_keeps_outputs_close():
    model = unbalanced_net(shift=4.0)     # mean 4 sigma above zero
    ref = np.asarray(model(X))
    kept, r0 = ptq.equalize(model, return_report=True, absorb_bias=False)
    absorbed, r1 = ptq.equalize(model, return_report=True)
    assert r0.absorbed == {} and r1.absorbed["conv1->conv2"] > 0
    b0 = np.abs(kept.get_layer("conv1").bias.numpy())
    b1 = np.abs(absorbed.get_layer("conv1").bias.numpy())
    # c = mean - 3 std = gamma of each channel's mean of 4 gamma moved
    np.testing.assert_allclose(b0.sum() - b1.sum(),
                               r1.absorbed["conv1->conv2"], rtol=1e-3)
    assert b1.sum() < 0.8 * b0.sum()
    err = np.abs(np.asarray(absorbed(X)) - ref).mean()
    assert err < 1e-2 * np.abs(ref).mean()


def test_equalize_replaces_relu6_between_pairs_and_reports_it():
    model = keras.Sequential([
        keras.Input((6, 6, 3)),
        keras.layers.Conv2D(4, 3, name="a"), keras.layers.ReLU(6.0, name="r6"),
        keras.layers.DepthwiseConv2D(3, name="dw"),
        keras.layers.Activation("tanh", name="tanh"),
        keras.layers.Conv2D(2, 1, name="b")])
    eq, report = ptq.equalize(model, return_report=True)
    assert report.pairs == [("a", "dw")]
    assert report.relu6_replaced == ["r6"]
    assert eq.get_layer("r6").max_value is None
    assert "Activation 'tanh'" in report.unpaired["dw"]


def test_equalize_refuses_a_subclassed_model():
    class Net(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(InputError, match="Sequential or Functional"):
        ptq.equalize(Net())


# -- bias correction ----------------------------------------------------
def test_correct_bias_reduces_the_mean_output_shift_of_the_flatbuffer():
    model = unbalanced_net()
    ref = np.asarray(model(X))
    before = weights_of(model)
    plain = convert(model, "int8", representative_data=X, per_channel=False)
    corrected = ptq.correct_bias(model, X, per_channel=False)
    fixed = convert(corrected, "int8", representative_data=X,
                    per_channel=False, strict=True)
    shift_plain = np.abs((tflite_outputs(plain, X) - ref).mean(0)).mean()
    shift_fixed = np.abs((tflite_outputs(fixed, X) - ref).mean(0)).mean()
    # activation rounding of the crushed channels remains: what is left
    assert shift_fixed < 0.85 * shift_plain, (shift_plain, shift_fixed)
    assert_unchanged(model, before)


def test_correct_bias_removes_the_mean_shift_of_4bit_nearest_weights():
    from tfcompress.ptq.bias_correction import quantized_kernel
    model = ptq.fold_batchnorm(unbalanced_net())
    ref = np.asarray(model(X))

    def rounded(m):
        new = ptq.fold_batchnorm(m)
        for layer in new.layers:
            if hasattr(layer, "kernel"):
                layer.kernel.assign(quantized_kernel(
                    layer, layer.kernel.numpy(), 4, True))
        return np.asarray(new(X))

    shift_plain = np.abs((rounded(model) - ref).mean(0)).mean()
    corrected = ptq.correct_bias(model, X, bits=4)
    shift_fixed = np.abs((rounded(corrected) - ref).mean(0)).mean()
    assert shift_fixed < 0.2 * shift_plain, (shift_plain, shift_fixed)


def test_correct_bias_without_data_is_an_input_error():
    with pytest.raises(InputError, match="representative data"):
        ptq.correct_bias(unbalanced_net(), None)


# -- per-tensor conversion ----------------------------------------------
def test_convert_per_channel_false_writes_one_scale_per_weight_tensor():
    model = unbalanced_net()
    result = convert(model, "int8", representative_data=X, per_channel=False)
    kernels = [w for w in inspect(result.tflite_bytes)["weights"]
               if w["dtype"] == "INT8" and len(w["shape"]) >= 2]
    assert len(kernels) == 3
    assert all(w["quantization"]["scales"] == 1 for w in kernels)
    default = convert(model, "int8", representative_data=X)
    assert any(w["quantization"]["scales"] > 1 for w in
               inspect(default.tflite_bytes)["weights"]
               if w["dtype"] == "INT8" and len(w["shape"]) >= 2)


# -- synthetic channel spread (stress test of per-tensor int8) -----------
def depthwise_net():
    """Conv-BN-ReLU-Depthwise-BN-ReLU-Conv-ReLU-Dense with moving
    statistics equal to the batch statistics of ``X`` (balanced ranges)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", use_bias=False,
                            name="conv1")(i)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False,
                                     name="dw")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.ReLU(name="relu2")(h)
    h = keras.layers.Conv2D(8, 1, name="conv2")(h)
    h = keras.layers.ReLU(name="relu3")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    model = keras.Model(i, keras.layers.Dense(4, name="fc")(h))
    for name in ("bn1", "bn2"):
        bn = model.get_layer(name)
        mean, var = _batch_stats(model, name, X)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(var.astype(np.float32))
    return model


def _relative_error(model, ref, per_channel):
    result = convert(model, "int8", representative_data=X,
                     per_channel=per_channel, strict=True)
    return np.abs(tflite_outputs(result, X) - ref).mean() / \
        np.abs(ref).mean()


def test_spread_channels_keeps_float_outputs_and_spreads_kernel_ranges():
    from tfcompress.ptq.spread import spread_channels
    model = depthwise_net()
    before = weights_of(model)
    spread, report = spread_channels(model, 0.01, 100.0, seed=0)
    assert report.pairs == [("conv1", "dw"), ("dw", "conv2"),
                            ("conv2", "fc")]
    ref = np.asarray(model(X))
    assert np.abs(np.asarray(spread(X)) - ref).max() < \
        1e-4 * np.abs(ref).max()
    ranges = lambda m: np.abs(ptq.fold_batchnorm(m).get_layer(
        "dw").kernel.numpy()).reshape(-1, 16).max(0)
    ratio = lambda r: r.max() / r.min()
    assert ratio(ranges(spread)) > 100 * ratio(ranges(model))
    # the batch norms carry the spread, the converter still folds them
    assert type(spread.get_layer("bn1")) is keras.layers.BatchNormalization
    np.testing.assert_allclose(
        spread.get_layer("bn1").gamma.numpy(),
        model.get_layer("bn1").gamma.numpy() * report.factors["conv1"],
        rtol=1e-6)
    assert_unchanged(model, before)


def test_equalize_undoes_a_channel_spread_that_ruins_per_tensor_int8():
    from tfcompress.ptq.spread import spread_channels
    model = depthwise_net()
    ref = np.asarray(model(X))
    spread, _ = spread_channels(model, 0.01, 100.0, seed=0)
    reference = _relative_error(model, ref, per_channel=True)
    plain = _relative_error(spread, ref, per_channel=False)
    equalized = _relative_error(ptq.equalize(spread), ref,
                                per_channel=False)
    # measured: per-channel before spreading 0.0155, plain per-tensor 1.0
    # (every output zero), equalized per-tensor 0.0149
    assert plain > 20 * reference, (plain, reference)
    assert equalized < 1.5 * reference, (equalized, reference)


def test_equalize_of_a_spread_model_matches_equalize_of_the_original():
    # equalization's balanced scales depend on each channel's product of
    # ranges, which the spread leaves unchanged: it is undone exactly
    from tfcompress.ptq.spread import spread_channels
    model = depthwise_net()
    spread, _ = spread_channels(model, 0.01, 100.0, seed=0)
    a, b = ptq.equalize(model), ptq.equalize(spread)
    for name in ("conv1", "dw", "conv2", "fc"):
        ka = a.get_layer(name).kernel.numpy()
        kb = b.get_layer(name).kernel.numpy()
        assert np.abs(ka - kb).max() < 1e-3 * np.abs(ka).max(), name


def test_spread_channels_skips_relu6_pairs_unless_told_to_replace_them():
    from tfcompress.ptq.spread import spread_channels
    model = keras.Sequential([
        keras.Input((6, 6, 3)),
        keras.layers.Conv2D(4, 3, name="a"), keras.layers.ReLU(6.0, name="r6"),
        keras.layers.Conv2D(4, 1, activation="relu", name="b"),
        keras.layers.Conv2D(2, 1, name="c")])
    x = RNG.random((8, 6, 6, 3), dtype=np.float32) * 20
    kept, report = spread_channels(model)
    assert report.pairs == [("b", "c")]
    assert "ReLU6" in report.skipped["a"]
    np.testing.assert_allclose(kept(x), model(x), rtol=1e-4, atol=1e-4)
    replaced, report = spread_channels(model, replace_relu6=True)
    assert report.pairs == [("a", "b"), ("b", "c")]
    assert report.relu6_replaced == ["r6"]
    assert replaced.get_layer("r6").max_value is None


def test_bias_correction_and_batchnorm_statistics_reach_a_nested_base():
    model = nested_unbalanced_net()
    corrected = ptq.correct_bias(model, X, per_channel=False)
    base_bias = model.layers[0].get_layer("conv2").bias.numpy()
    assert not np.allclose(corrected.get_layer("conv2").bias.numpy(),
                           base_bias)
    shifted = X * 2.0 + 1.0
    fresh = ptq.reestimate_batchnorm(model, shifted)
    mean, _ = _batch_stats(model.layers[0], "bn1", shifted)
    np.testing.assert_allclose(
        fresh.get_layer("bn1").moving_mean.numpy(), mean, rtol=1e-3,
        atol=1e-3)


@pytest.mark.parametrize("wrap,fix", [
    ("prune", "strip_pruning"), ("cluster", "strip_clustering"),
    ("qat", "before quantize_model")])
def test_post_training_steps_refuse_wrapped_and_qat_models(wrap, fix):
    # each step would return such a model unchanged
    from tfcompress import cluster, prune, quantize
    model = unbalanced_net()
    wrapped = {"prune": prune.prune_low_magnitude,
               "cluster": lambda m: cluster.cluster_weights(m, 4),
               "qat": quantize.quantize_model}[wrap](model)
    for step in (lambda m: ptq.fold_batchnorm(m),
                 lambda m: ptq.equalize(m),
                 lambda m: ptq.correct_bias(m, X),
                 lambda m: ptq.adaround(m, X, iterations=1),
                 lambda m: ptq.reestimate_batchnorm(m, X)):
        with pytest.raises(InputError, match=fix):
            step(wrapped)


def test_representative_data_as_tensor_dataset_or_list_of_batches():
    import tensorflow as tf
    model = unbalanced_net()
    ref = ptq.reestimate_batchnorm(model, X).get_layer("bn1")
    y = np.zeros(len(X), "int64")
    for data in (tf.constant(X),                                # a tensor
                 tf.data.Dataset.from_tensor_slices(X),         # unbatched
                 tf.data.Dataset.from_tensor_slices((X, y)),
                 [X[:40], X[40:]]):                             # batches
        got = ptq.reestimate_batchnorm(model, data).get_layer("bn1")
        np.testing.assert_allclose(got.moving_mean.numpy(),
                                   ref.moving_mean.numpy(), atol=1e-5)
    # dicts as convert reads them: one array for the one input, keyed by
    # any name; more keys than inputs are refused
    got = ptq.reestimate_batchnorm(model, tf.data.Dataset.from_tensor_slices(
        {"image": X}).batch(8)).get_layer("bn1")
    np.testing.assert_allclose(got.moving_mean.numpy(),
                               ref.moving_mean.numpy(), atol=1e-5)
    with pytest.raises(InputError, match="yields dicts with keys"):
        ptq.correct_bias(model, tf.data.Dataset.from_tensor_slices(
            {"image": X, "mask": X}).batch(8))


def test_representative_data_with_nan_or_ragged_batches_is_refused():
    # as convert refuses them: NaN statistics, a numpy ValueError before
    model = unbalanced_net()
    bad = X.copy()
    bad[3, 0] = np.nan
    for step in (ptq.correct_bias, ptq.reestimate_batchnorm):
        with pytest.raises(InputError, match=r"NaN or infinite value.*in 1 of "
                           r"\d+ samples.*drop or repair"):
            step(model, bad)
        with pytest.raises(InputError, match="not one array of inputs"):
            step(model, [X[:40], X[40:, :4]])


def test_steps_with_data_refuse_a_model_with_two_inputs():
    # Keras' "Output with path `` is not connected to `inputs`" before
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(4)(a),
                                    keras.layers.Dense(4)(b)])
    model = keras.Model([a, b], keras.layers.Dense(2)(h))
    x = RNG.random((16, 8), dtype=np.float32)
    for step in (ptq.correct_bias, ptq.adaround, ptq.reestimate_batchnorm):
        with pytest.raises(InputError, match=r"takes a model with one "
                           r"input; .* has 2 \('a', 'b'\)"):
            step(model, [x, x])


def test_steps_take_a_model_whose_input_size_is_open():
    # keras.applications bases without input_shape take (None, None, 3);
    # "expected (n, None, None, 3)" refused inputs of any size before
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((None, None, 3)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2, name="fc")])
    fresh = ptq.reestimate_batchnorm(model, X)
    mean, _ = _batch_stats(model, "bn", X)
    np.testing.assert_allclose(fresh.get_layer("bn").moving_mean.numpy(),
                               mean, atol=1e-4)
    corrected = ptq.correct_bias(model, X, per_channel=False)
    assert corrected.get_layer("conv").use_bias
    with pytest.raises(InputError, match=r"expected \(n, None, None, 3\)"):
        ptq.correct_bias(model, X[..., :2])


@pytest.mark.parametrize("count", [{"samples": 0}, {"samples": -1},
                                   {"batch_size": 0}, {"batch_size": None},
                                   {"batch_size": 2.5}])
def test_sample_and_batch_counts_below_one_are_input_errors(count):
    # samples=0 divided by zero (NaN statistics or ZeroDivisionError),
    # samples=-1 left the last input out, batch_size=0 failed in range(),
    # batch_size=None or 2.5 raised TypeError
    model = unbalanced_net()
    name = next(iter(count))
    for step in (ptq.correct_bias, ptq.reestimate_batchnorm):
        with pytest.raises(InputError, match=rf"{name} must be an integer "
                           "of at least 1"):
            step(model, X, **count)
    with pytest.raises(InputError, match=rf"{name} must be an integer "
                       "of at least 1"):
        ptq.adaround(model, X, iterations=1, **count)


@pytest.mark.parametrize("step", ["correct_bias", "reestimate_batchnorm",
                                  "adaround"])
def test_empty_data_names_the_step_and_its_data(step):
    # read "correct_bias is empty", as if the step were empty
    with pytest.raises(InputError, match=rf"^{step}: data is empty; give "
                       "at least one sample"):
        getattr(ptq, step)(unbalanced_net(), X[:0])


@pytest.mark.parametrize("iterations", [0, None, 2.5, "10"])
def test_adaround_iterations_that_are_not_a_count_are_input_errors(
        iterations):
    # None, 2.5 and "10" raised TypeError from a comparison or range()
    with pytest.raises(InputError, match=r"^adaround: iterations must be "
                       "an integer of at least 1"):
        ptq.adaround(unbalanced_net(), X, iterations=iterations)


@pytest.mark.parametrize("step", ["correct_bias", "adaround",
                                  "for_conversion"])
@pytest.mark.parametrize("bits", [None, "4", 9])
def test_bits_that_are_not_a_bit_width_are_input_errors(step, bits):
    # None and "4" raised TypeError or ValueError from int()
    with pytest.raises(InputError, match=rf"^{step}: bits must be an "
                       "integer between 2 and 8"):
        getattr(ptq, step)(unbalanced_net(), X, bits=bits)


CALLS = {}


@keras.saving.register_keras_serializable("tfcompress_tests")
class CountedCalls(keras.layers.Layer):
    """Identity that counts the batches it runs on eagerly, by name."""

    def call(self, x):
        import tensorflow as tf
        if tf.executing_eagerly():
            CALLS[self.name] = CALLS.get(self.name, 0) + 1
        return x


def residual_se_net():
    """Conv-BN chains with a residual Add, a squeeze-and-excitation
    Multiply and a ``keras.ops`` call, behind a call-counting layer."""
    keras.utils.set_random_seed(1)
    i = keras.Input((8, 8, 3))
    x = CountedCalls(name="counted")(i)
    a = keras.layers.Conv2D(6, 3, padding="same", name="c1")(x)
    a = keras.layers.BatchNormalization(name="b1")(a)
    a = keras.layers.ReLU()(a)
    b = keras.layers.Conv2D(6, 3, padding="same", name="c2")(a)
    b = keras.layers.BatchNormalization(name="b2")(b) * 2.0
    s = keras.layers.GlobalAveragePooling2D(keepdims=True)(b)
    s = keras.layers.Conv2D(6, 1, activation="sigmoid", name="se")(s)
    h = keras.layers.Add()([a, keras.layers.Multiply()([b, s])])
    h = keras.layers.BatchNormalization(name="b3")(h)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(h))
    return keras.Model(i, out)


def test_reestimate_batchnorm_runs_each_layer_once_per_batch():
    CALLS.clear()
    ptq.reestimate_batchnorm(residual_se_net(), X, batch_size=32)
    assert CALLS == {"counted": 3}   # 96 samples, not once per batch norm


@pytest.mark.parametrize("memory_limit", [0, 96 * 8 * 8 * 6 * 4 * 3])
def test_reestimate_batchnorm_within_a_memory_limit_gives_the_same_stats(
        memory_limit):
    # 0 holds no activations: each batch norm's input is computed from the
    # model input again; the second stops the walk partway
    model = residual_se_net()
    stale = {n: model.get_layer(n) for n in ("b1", "b2", "b3")}
    for bn in stale.values():
        bn.moving_mean.assign(np.full(6, 5.0, np.float32))
    walked = ptq.reestimate_batchnorm(model, X * 3.0, batch_size=32)
    limited = ptq.reestimate_batchnorm(model, X * 3.0, batch_size=32,
                                       memory_limit=memory_limit)
    for name in stale:
        for attr in ("moving_mean", "moving_variance"):
            got = getattr(limited.get_layer(name), attr).numpy()
            np.testing.assert_allclose(
                got, getattr(walked.get_layer(name), attr).numpy(),
                rtol=1e-4, atol=1e-5)
    # and they are the input statistics after the batch norms before
    mean, var = _batch_stats(walked, "b3", X * 3.0)
    np.testing.assert_allclose(walked.get_layer("b3").moving_mean.numpy(),
                               mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        walked.get_layer("b3").moving_variance.numpy(), var, rtol=1e-4,
        atol=1e-5)


def test_reestimate_batchnorm_holds_a_layer_output_only_until_it_is_read():
    # all outputs of residual_se_net take about 4,240 floats a sample, the
    # most held at once under 1,600: the walk fits without a second pass
    CALLS.clear()
    ptq.reestimate_batchnorm(residual_se_net(), X, batch_size=32,
                             memory_limit=len(X) * 4 * 1600)
    assert CALLS == {"counted": 3}


def test_correct_bias_runs_each_model_once_per_batch():
    # the float model and the quantized one, each once over the 3 batches
    CALLS.clear()
    ptq.correct_bias(residual_se_net(), X, batch_size=32)
    assert CALLS == {"counted": 6}


@pytest.mark.parametrize("memory_limit", [0, 96 * 8 * 8 * 6 * 4 * 3])
def test_correct_bias_within_a_memory_limit_gives_the_same_biases(
        memory_limit):
    model = residual_se_net()
    walked = ptq.correct_bias(model, X, bits=4, batch_size=32)
    limited = ptq.correct_bias(model, X, bits=4, batch_size=32,
                               memory_limit=memory_limit)
    for layer in walked.layers:
        if getattr(layer, "bias", None) is not None:
            np.testing.assert_allclose(
                limited.get_layer(layer.name).bias.numpy(),
                layer.bias.numpy(), rtol=1e-4, atol=1e-6,
                err_msg=layer.name)
