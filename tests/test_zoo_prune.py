"""Pruning, clustering and channel pruning on every keras.applications
family, at its smallest configuration (tfcompress.utils.zoo).

Each test builds its family once, then: magnitude pruning to 50% (every
pruned kernel reaches it), clustering to 8 values (every clustered kernel
keeps at most 8), channel pruning + shrink (same outputs as the masked
model, same output shape, fewer parameters). Training is one eager step on
random data: tracing a whole zoo model's train step costs more than it.
"""

import keras
import numpy as np
import pytest

from tfcompress import cluster, prune
from tfcompress.utils.layer_map import iter_layers
from tfcompress.prune.channels import zero_channels
from tfcompress.utils.zoo import build

SPARSITY = 0.5
CLUSTERS = 8
# families taking more than ~20 s here, and MobileNetV3Large with and
# without its input rescaling: keras.applications builds it from the same
# blocks as MobileNetV3Small (expansion-1 and squeeze-excitation blocks,
# hard-swish, 5x5 depthwise, residual adds), and MobileNetV2 has the
# inverted residuals without squeeze-excitation; a network without the
# rescaling is covered by MobileNetV3Small_nopre, MobileNet and MobileNetV2
HEAVY = {"ResNet50", "ResNet50V2", "DenseNet121", "InceptionResNetV2",
         "NASNetMobile", "VGG16", "ConvNeXtTiny", "EfficientNetV2B0",
         "InceptionV3", "Xception", "MobileNetV3Large",
         "MobileNetV3Large_nopre"}
FAMILIES = ["MobileNet", "MobileNetV2", "MobileNetV3Small",
            "MobileNetV3Small_nopre", "MobileNetV3Large",
            "MobileNetV3Large_nopre", "EfficientNetB0", "EfficientNetV2B0",
            "ResNet50", "ResNet50V2", "DenseNet121", "Xception",
            "InceptionV3", "InceptionResNetV2", "NASNetMobile", "VGG16",
            "ConvNeXtTiny"]


def _data(model, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((2,) + tuple(model.input_shape[1:]), dtype=np.float32)
    return x * 255.0, rng.integers(0, 10, 2)


def _one_step(model, callbacks=()):
    x, y = _data(model)
    model.compile(keras.optimizers.SGD(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True), run_eagerly=True)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0,
              callbacks=list(callbacks))


def _kernels(model, names):
    layers = {l.name: l for l in iter_layers(model)}
    return {n: np.asarray(prune.get_prunable_weights(layers[n])[0])
            for n in names}


def _check_prune(model):
    pruned = prune.prune_low_magnitude(
        model, prune.ConstantSparsity(SPARSITY, 0, frequency=1))
    wrapped = [l.layer for l in iter_layers(pruned)
               if isinstance(l, prune.PruneLowMagnitude)]
    assert wrapped
    assert not any(isinstance(l, keras.layers.DepthwiseConv2D)
                   for l in wrapped)
    _one_step(pruned, [prune.UpdatePruningStep()])
    plain = prune.strip_pruning(pruned)
    assert not prune.is_pruned(plain)
    for name, k in _kernels(plain, [l.name for l in wrapped]).items():
        assert np.mean(k == 0) >= SPARSITY - 1.0 / k.size, name


def _check_cluster(model):
    clustered = cluster.cluster_weights(model, CLUSTERS)
    names = [l.layer.name for l in iter_layers(clustered)
             if isinstance(l, cluster.ClusterWeights)]
    assert names
    _one_step(clustered)
    plain = cluster.strip_clustering(clustered)
    for name, k in _kernels(plain, names).items():
        assert np.unique(k).size <= CLUSTERS, name


def _check_channels(model):
    spaces = prune.channel_spaces(model)
    assert any(s.prunable for s in spaces)
    for s in spaces:
        assert s.prunable or s.frozen      # every frozen space says why
    before = model.count_params()
    _one_step(model, [prune.ChannelPruning(
        prune.ConstantSparsity(SPARSITY, 0))])
    small = prune.shrink(model)
    x, _ = _data(model, seed=1)
    # direct calls in inference mode: tracing predict() of a whole zoo
    # model costs more than the two-sample forward pass itself
    masked = np.asarray(model(x, training=False))
    shrunk = np.asarray(small(x, training=False))
    assert shrunk.shape == masked.shape
    np.testing.assert_allclose(shrunk, masked, rtol=1e-4,
                               atol=1e-4 * np.abs(masked).max())
    assert small.count_params() < before


def _check_family(family):
    keras.utils.set_random_seed(0)
    model = build(family)           # built once; prune/cluster copy it
    _check_prune(model)
    _check_cluster(model)
    _check_channels(model)          # last: it zeroes the model's channels


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in HEAVY])
def test_family_prunes_clusters_and_shrinks(family):
    _check_family(family)


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("family", [f for f in FAMILIES if f in HEAVY])
def test_heavy_family_prunes_clusters_and_shrinks(family):
    _check_family(family)


def test_squeeze_excitation_gates_ride_along():
    """MobileNetV3's SE gates (conv -> x + 3 -> relu6 -> x / 6) lose the
    channels of the tensor they multiply instead of freezing it."""
    spaces = prune.channel_spaces(build("MobileNetV3Small"))
    gated = [s for s in spaces if s.passengers]
    assert len(gated) == 9 and all(s.prunable for s in gated)
    assert all(p.name.endswith("squeeze_excite_conv_1")
               for s in gated for p in s.passengers)


@pytest.mark.slow
@pytest.mark.heavy
def test_densenet_dense_blocks_shrink():
    """DenseNet121: every block's BatchNorm reads the concatenation of all
    earlier blocks (concatenations of concatenations); channel pruning
    drops each block's channels at their offset in every one of them."""
    keras.utils.set_random_seed(0)
    _check_channels(build("DenseNet121"))


# configurations besides the smallest: width, input size, top or pooled
# features, softmax head, minimalistic, no preprocessing
VARIANTS = [
    ("MobileNet", dict(alpha=0.5, include_top=False, pooling="max")),
    ("MobileNet", dict(classifier_activation="softmax",
                       input_shape=(40, 48, 3))),
    ("MobileNetV2", dict(alpha=0.5, include_top=False, pooling=None)),
    ("MobileNetV2", dict(classifier_activation="softmax")),
    ("MobileNetV3Small", dict(minimalistic=True)),
    ("MobileNetV3Small", dict(alpha=0.75, include_top=False, pooling="avg",
                              include_preprocessing=False)),
    ("MobileNetV3Small", dict(alpha=1.0, classifier_activation="softmax")),
    ("MobileNetV3Large", dict(minimalistic=True, include_top=False,
                              include_preprocessing=False)),
    ("EfficientNetB0", dict(include_top=False, pooling="avg")),
    ("EfficientNetB0", dict(classifier_activation="softmax")),
    ("EfficientNetV2B0", dict(include_top=False, pooling="max",
                              include_preprocessing=False)),
    ("ResNet50", dict(include_top=False, pooling="avg")),
    ("ResNet50V2", dict(classifier_activation="softmax")),
    ("DenseNet121", dict(include_top=False, pooling="avg")),
    ("ConvNeXtTiny", dict(include_top=False, pooling="avg")),
    ("NASNetMobile", dict(include_top=False, pooling="avg")),
]


def _variant_id(variant):
    family, kw = variant
    return family + "-" + "-".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.parametrize("family,kw", VARIANTS,
                         ids=[_variant_id(v) for v in VARIANTS])
def test_variant_shrinks_to_the_masked_outputs(family, kw):
    """Half of every prunable space zeroed, then shrink: the same outputs
    (feature maps, pooled features or softmax) with fewer parameters."""
    keras.utils.set_random_seed(0)
    model = build(family, **kw)
    spaces = [s for s in prune.channel_spaces(model) if s.prunable]
    assert spaces
    for space in spaces:
        keep = np.ones(space.channels, np.float32)
        keep[:space.channels // 2] = 0
        zero_channels(space, keep)
    small = prune.shrink(model)
    x, _ = _data(model)
    masked, shrunk = np.asarray(model(x)), np.asarray(small(x))
    assert shrunk.shape == masked.shape
    np.testing.assert_allclose(shrunk, masked, rtol=1e-4,
                               atol=1e-4 * np.abs(masked).max())
    assert small.count_params() < model.count_params()
