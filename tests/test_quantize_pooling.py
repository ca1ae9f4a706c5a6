"""QAT rounds an average pooling of odd window to its input's int8 step,
as TFLite's AVERAGE_POOL_2D does, without an op of its own."""

import collections

import keras
import numpy as np
import pytest
from keras import layers as L

from tfcompress import quantize
from tfcompress.convert import convert
from tfcompress.quantize.pooling import QuantizeAveragePooling
from tfcompress.quantize.zoo import output_step


def _pooled(pool):
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 8))
    x = L.AveragePooling2D(pool, 1, "same", name="pool")(
        L.Conv2D(8, 1, name="before")(i))
    return keras.Model(i, L.Conv2D(4, 1, name="after")(x))


def _images(n=200):
    return np.random.default_rng(0).normal(size=(n, 16, 16, 8)).astype(
        "float32")


def _qat(model, x):
    q = quantize.quantize_model(model)
    q.compile(keras.optimizers.Adam(1e-4), "mse")
    q.fit(x[:64], np.zeros((64,) + q.output.shape[1:]), batch_size=16,
          verbose=0)
    return q


def _ops(result):
    return collections.Counter(op["op"] for op in result.report["ops"])


def test_3x3_average_pooling_agrees_with_the_flatbuffer():
    x = _images()
    m = _pooled(3)
    q = _qat(m, x)
    assert isinstance(q.get_layer("quant_pool"), QuantizeAveragePooling)
    r = convert(q, "int8", representative_data=x[:64], check_data=x,
                check_samples=len(x))
    # unrounded, the next op read values up to half a step off: 0.44
    # output steps on average
    step = output_step(q)
    assert r.report["numerical_check"]["mean_abs_error"] <= 0.1 * step
    # rounded with its input's range: no op of its own
    ptq = convert(m, "int8", representative_data=x[:64])
    assert _ops(r) == _ops(ptq), (_ops(r), _ops(ptq))


def test_even_window_is_left_unrounded_but_in_device_rounding():
    """A 2x2 average (DenseNet's transitions) reaches the next op unrounded;
    inside quantize.device_rounding it is rounded to its input's step as
    TFLite's kernel rounds it."""
    x = _images(64)
    q = _qat(_pooled(2), x)
    pool = q.get_layer("quant_pool")
    assert not pool.round_output
    grid = keras.Model(q.input, pool.input).predict(x[:8], verbose=0)
    lo, hi, _ = pool.range
    step = float(hi - lo) / 255

    def off_grid(y):        # zero is a grid point
        return np.abs(y / step - np.round(y / step)).max()

    np.testing.assert_allclose(np.asarray(pool(grid)),
                               np.asarray(pool.layer(grid)))
    assert off_grid(np.asarray(pool(grid))) > 0.2
    with quantize.device_rounding():
        assert off_grid(np.asarray(pool(grid))) < 1e-3


def test_rounded_pooling_survives_save_and_load(tmp_path):
    x = _images(64)
    q = _qat(_pooled(3), x)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    # the link to the input quantizer is found again when loading
    assert loaded.get_layer("quant_pool").range is not None
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               q.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_resizing_keeps_its_input_scale_and_agrees_with_the_flatbuffer(
        interpolation, tmp_path):
    # transfer learning resizes small images up to the base's input size
    # inside the model; TFLite's int8 RESIZE_* ops keep the input's scale
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 3))
    x = L.Resizing(16, 16, interpolation=interpolation, name="resize")(i)
    x = L.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = L.Resizing(20, 20, interpolation=interpolation, name="up")(x)
    m = keras.Model(i, L.Conv2D(4, 1, name="after")(x))
    x = np.random.default_rng(0).random((200, 12, 12, 3), dtype="float32")
    q = quantize.quantize_model(m)
    q.compile(keras.optimizers.Adam(1e-4), "mse")
    q.fit(x[:64], np.zeros((64, 20, 20, 4)), batch_size=16, verbose=0)
    r = convert(q, "int8", strict=True, check_data=x, check_samples=len(x))
    ptq = convert(m, "int8", representative_data=x[:64])
    assert _ops(r) == _ops(ptq), (_ops(r), _ops(ptq))   # no extra op
    assert r.report["numerical_check"]["mean_abs_error"] <= \
        0.1 * output_step(q)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               q.predict(x, verbose=0), atol=1e-6)
