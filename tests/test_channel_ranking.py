import keras
import numpy as np
import pytest

from tfcompress import prune
from tfcompress.prune.channels import channel_scores
from tfcompress.distill import Distiller
from tfcompress.models import compile_classifier, mobilenet_small


def _conv_bn(with_bn=True):
    inp = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 1, use_bias=not with_bn, name="conv")(inp)
    if with_bn:
        x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(x))


def _space(model, name):
    return [s for s in prune.channel_spaces(model) if name in s.names()][0]


def _big_kernel_small_gamma():
    """Channel 0: the largest kernel but gamma ~ 0, so its output is ~ beta
    whatever the kernel; channel 3: a small kernel, the largest gamma."""
    model = _conv_bn()
    model.get_layer("conv").kernel.assign(
        np.array([[[[9.0, 1.0, 1.0, 0.1]] * 2]], np.float32))
    model.get_layer("bn").gamma.assign(
        np.array([1e-3, 1.0, 0.5, 2.0], np.float32))
    return model


def test_bn_gamma_ranks_by_batchnorm_scale_not_kernel_size():
    model = _big_kernel_small_gamma()
    space = _space(model, "conv")
    assert np.argmin(channel_scores(space, "bn_gamma")) == 0
    assert np.argmax(channel_scores(space, "bn_gamma")) == 3
    assert np.argmax(channel_scores(space, "l1")) == 0


def test_bn_gamma_without_batchnorm_ranks_like_l2():
    model = _conv_bn(with_bn=False)
    space = _space(model, "conv")
    np.testing.assert_array_equal(channel_scores(space, "bn_gamma"),
                                  channel_scores(space, "l2"))


def test_bn_gamma_pruning_removes_the_small_gamma_channels():
    keras.utils.set_random_seed(0)
    model = _conv_bn()
    model.get_layer("bn").gamma.assign(
        np.array([2.0, 1e-3, 1.0, 1e-3], np.float32))
    rng = np.random.default_rng(0)
    x = rng.random((32, 6, 6, 2), dtype=np.float32)
    compile_classifier(model)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0),
                              norm="bn_gamma")
    model.fit(x, np.arange(32) % 3, batch_size=16, epochs=1, verbose=0,
              callbacks=[cb])
    np.testing.assert_array_equal(cb.keeps[0], [1, 0, 1, 0])


def test_prunes_the_student_inside_a_distiller():
    keras.utils.set_random_seed(0)
    teacher, student = mobilenet_small(), mobilenet_small()
    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    distiller = Distiller(student, None, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer="adam")
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0),
                              norm="bn_gamma", model=student)
    distiller.fit(x, (y, teacher.predict(x, verbose=0)), batch_size=16,
                  epochs=1, verbose=0, callbacks=[cb])
    small = prune.shrink(student)
    np.testing.assert_allclose(small.predict(x, verbose=0),
                               student.predict(x, verbose=0), atol=1e-5)
    assert prune.count_macs(small) < 0.4 * prune.count_macs(student)


def test_unknown_norm_names_the_choices():
    with pytest.raises(ValueError, match="bn_gamma"):
        prune.ChannelPruning(prune.ConstantSparsity(0.5, 0), norm="gamma")


def test_default_ranking_is_bn_gamma_for_callback_and_scores():
    # A convolution's kernel scale means nothing before a BatchNormalization
    # (which divides it out): by default the callback ranks by gamma.
    keras.utils.set_random_seed(0)
    model = _big_kernel_small_gamma()
    space = _space(model, "conv")
    np.testing.assert_array_equal(channel_scores(space),
                                  channel_scores(space, "bn_gamma"))
    x = np.random.default_rng(0).random((32, 6, 6, 2), dtype=np.float32)
    compile_classifier(model, 0.0)
    cb = prune.ChannelPruning(prune.ConstantSparsity(0.5, 0))
    model.fit(x, np.arange(32) % 3, batch_size=16, epochs=1, verbose=0,
              callbacks=[cb])
    np.testing.assert_array_equal(cb.keeps[0], [0, 1, 0, 1])
