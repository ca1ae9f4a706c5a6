import collections

import keras
import numpy as np
import pytest

from tfcompress import cluster, prune
from tfcompress.distill import Distiller
from tfcompress.errors import InputError


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3, size=(4, 12))
    y = rng.integers(0, 4, n)
    return (centers[y] + rng.normal(size=(n, 12))).astype("float32"), y


def _mlp(width=32, seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([keras.Input((12,)),
                          keras.layers.Dense(width, activation="relu"),
                          keras.layers.Dense(4)])
    return m


def _compile(m, lr=1e-2):
    m.compile(keras.optimizers.Adam(lr),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    return m


@pytest.fixture(scope="module")
def trained_mlp():
    """The MLP trained 2 epochs on ``_data()``, once for the module
    (cluster_weights leaves its input model unchanged: test_no_mutation)."""
    x, y = _data()
    m = _compile(_mlp())
    m.fit(x, y, epochs=2, verbose=0)
    return m


@pytest.mark.parametrize("init", ["linear", "random", "density", "kmeans++"])
def test_clustered_kernel_has_k_values_and_centroids_train(init,
                                                           trained_mlp):
    x, y = _data()
    keras.utils.set_random_seed(0)
    c = _compile(cluster.cluster_weights(trained_mlp, 8, centroid_init=init),
                 1e-2)
    w = c.layers[0]
    idx_before = np.asarray(w.indices).copy()
    cent_before = np.asarray(w.centroids).copy()
    c.fit(x, y, epochs=1, verbose=0)
    assert not np.allclose(cent_before, np.asarray(w.centroids))
    np.testing.assert_array_equal(idx_before, np.asarray(w.indices))
    for row in cluster.summary(c, print_fn=None):
        assert row["distinct_values"] <= 8
    s = cluster.strip_clustering(c)
    assert len(np.unique(np.asarray(s.layers[0].kernel))) <= 8
    np.testing.assert_allclose(s.predict(x, verbose=0),
                               c.predict(x, verbose=0), atol=1e-5)


def test_gradient_of_shared_weights_sums_into_centroid():
    layer = cluster.ClusterWeights(keras.layers.Dense(3, use_bias=False), 2,
                                   centroid_init="linear")
    x = np.ones((1, 4), "float32")
    layer(x)
    import tensorflow as tf
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer(x))
    g = tape.gradient(out, layer.centroids).numpy()
    counts = np.bincount(np.asarray(layer.indices).ravel(), minlength=2)
    # d(sum of x @ W)/dW = 1 for every weight: each centroid gets its count
    np.testing.assert_allclose(g.ravel(), counts)


def test_preserve_sparsity_and_per_channel():
    m = _mlp()
    k = np.asarray(m.layers[0].kernel)
    k[np.abs(k) < np.quantile(np.abs(k), 0.6)] = 0
    m.layers[0].kernel.assign(k)
    c = cluster.cluster_weights(m, 4, preserve_sparsity=True,
                                per_channel=True)
    ck = np.asarray(c.layers[0].clustered_kernel())
    np.testing.assert_array_equal(ck == 0, k == 0)
    for ch in range(ck.shape[-1]):
        assert len(np.unique(ck[:, ch][ck[:, ch] != 0])) <= 4


def test_save_load_and_bad_input(tmp_path):
    c = cluster.cluster_weights(_mlp(), 6)
    x, _ = _data(8)
    c.save(tmp_path / "c.keras")
    r = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(r.predict(x, verbose=0),
                               c.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match=">= 2"):
        cluster.cluster_weights(_mlp(), 1)
    with pytest.raises(ValueError, match="larger than"):
        cluster.cluster_weights(keras.Sequential([
            keras.Input((2,)), keras.layers.Dense(2)]), 16)
    assert cluster.deep_compression_bits(1000, 16) == 1000 * 4 + 16 * 32


def test_frozen_base_stays_frozen_through_clustering_strip_and_save(
        tmp_path):
    # transfer learning: a base with trainable=False nested under a
    # trainable head; only the head trains, clustered or stripped
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((12,)),
                             keras.layers.Dense(16, name="frozen_fc")],
                            name="base")
    base.trainable = False
    model = keras.Sequential([keras.Input((12,)), base,
                              keras.layers.Dense(4, name="head")])
    def trainable(m):
        return sorted(w.path for w in m.trainable_weights)
    c = cluster.cluster_weights(model, 4)
    assert trainable(c) == ["cluster_head/centroids", "head/bias"]
    x, y = _data(32)
    frozen = c.get_layer("base").get_layer("cluster_frozen_fc")
    before = frozen.clustered_kernel().numpy()
    _compile(c, 0.1).fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(frozen.clustered_kernel().numpy(), before)
    c.save(tmp_path / "c.keras")
    for m in (c, keras.models.load_model(tmp_path / "c.keras")):
        plain = cluster.strip_clustering(m)
        assert trainable(plain) == ["head/bias", "head/kernel"]
    updating = cluster.cluster_weights(model, 4, update_assignments=True)
    assert trainable(updating) == ["cluster_head/centroids", "head/bias",
                                   "head/kernel"]


def test_layer_first_built_inside_fit_says_to_cluster_a_built_model():
    from tfcompress.errors import InputError
    model = keras.Sequential([cluster.cluster_weights(keras.layers.Dense(4),
                                                      3)])
    model.compile("adam", "mse")
    x = np.ones((4, 6), "float32")
    with pytest.raises(InputError, match="was not built.*keras.Input"):
        model.fit(x, np.ones((4, 4)), epochs=1, verbose=0)


def test_clustered_int8_flatbuffer_keeps_at_most_k_values():
    from tfcompress.convert import convert
    x, y = _data()
    c = _compile(cluster.cluster_weights(_compile(_mlp()), 8))
    c.fit(x, y, epochs=1, verbose=0)
    r = convert(c, "int8", representative_data=x[:32])
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=r.tflite_bytes)
    names = {w["name"] for w in r.report["weights"]
             if w["dtype"] == "INT8" and len(w["shape"]) == 2}
    kernels = [d for d in it.get_tensor_details() if d["name"] in names]
    assert len(kernels) == 2
    for d in kernels:
        w = it.get_tensor(d["index"])            # (out, in), per channel
        # one float value maps to one int8 value per output channel
        assert max(len(np.unique(row)) for row in w) <= 8


@pytest.fixture(scope="module")
def teacher():
    """A 64-unit teacher (layers ``t_hidden``, ``t_logits``) trained 5
    epochs on ``_data(512)``, once for the module; the distillation tests
    check that they leave it unchanged."""
    x, y = _data(512)
    t = _compile(_named_mlp(64, 1, "t"))
    t.fit(x, y, epochs=5, verbose=0)
    return t


def test_distiller_trains_student_and_validates(teacher):
    x, y = _data(512)
    student = _mlp(4, seed=2)
    d = Distiller(student, teacher, temperature=4.0, alpha=0.2)
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    before = [w.copy() for w in teacher.get_weights()]
    d.fit(x, y, epochs=5, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)            # teacher frozen
    acc = float(np.mean(d.predict(x, verbose=0).argmax(1) == y))
    assert acc > 0.6
    # precomputed teacher logits train the student exactly as the live
    # teacher does (same start, same batches)
    logits = teacher.predict(x, verbose=0)
    cached = Distiller(_mlp(4, seed=3), None, temperature=4.0)
    live = Distiller(_mlp(4, seed=3), teacher, temperature=4.0)
    for d_, y_ in ((cached, (y, logits)), (live, y)):
        d_.compile(keras.optimizers.Adam(1e-2))
        d_.fit(x, y_, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(cached.predict(x, verbose=0),
                               live.predict(x, verbose=0), atol=1e-4)
    assert float(np.mean(cached.predict(x, verbose=0).argmax(1) == y)) > 0.6
    with pytest.raises(ValueError, match="temperature"):
        Distiller(student, teacher, temperature=0)
    other = keras.Sequential([keras.Input((12,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="output shape"):
        Distiller(other, teacher)


def _int8_kernels(tflite_bytes, report):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=tflite_bytes)
    names = {w["name"] for w in report["weights"]
             if w["dtype"] == "INT8" and len(w["shape"]) in (2, 4)}
    return [it.get_tensor(d["index"]) for d in it.get_tensor_details()
            if d["name"] in names]


def _conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(8, 3, use_bias=False, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(4, name="logits")])


def _conv_data():
    rng = np.random.default_rng(0)
    x = rng.random((128, 8, 8, 2), dtype=np.float32)
    return x, (x.mean(axis=(1, 2, 3)) * 8).astype("int32") % 4


@pytest.fixture(scope="module")
def conv_base_weights():
    """The weights of ``_conv_model()`` after one epoch on
    ``_conv_data()``, trained once for the module."""
    x, y = _conv_data()
    base = _compile(_conv_model())
    base.fit(x, y, epochs=1, verbose=0)
    return base.get_weights()


@pytest.mark.parametrize("prune_first", [False, True])
def test_cluster_preserving_qat_keeps_k_values_per_channel(
        prune_first, conv_base_weights, tmp_path):
    from tfcompress import quantize
    from tfcompress.convert import convert
    x, y = _conv_data()
    base = _conv_model()
    base.set_weights(conv_base_weights)
    if prune_first:
        for layer in base.layers:
            if hasattr(layer, "kernel"):
                k = layer.kernel.numpy()
                k[np.abs(k) < np.quantile(np.abs(k), 0.5)] = 0
                layer.kernel.assign(k)
    clustered = _compile(cluster.cluster_weights(
        base, 6, preserve_sparsity=prune_first), 1e-3)
    clustered.fit(x, y, epochs=1, verbose=0)
    plain = cluster.strip_clustering(clustered)
    # the zeros' cluster is one of the 6 (as in tfmot)
    k = 6
    results = {}
    schemes = [("cqat", quantize.ClusterPreservingScheme(
        preserve_sparsity=prune_first))]
    if not prune_first:
        # the control (QAT without the scheme spreads the shared values)
        # does not depend on the zeros: trained and converted once
        schemes.append(("default", quantize.Default8BitScheme()))
    for name, scheme in schemes:
        q = _compile(quantize.quantize_model(plain, scheme), 1e-3)
        q.fit(x, y, epochs=2, verbose=0)
        r = convert(q, "int8", representative_data=x[:32])
        assert r.report["fully_integer"]
        results[name] = (q, r, _int8_kernels(r.tflite_bytes, r.report))
    q, r, kernels = results["cqat"]
    assert len(kernels) == 2
    conv = [w for w in kernels if w.ndim == 4][0]         # (out, h, w, in)
    dense = [w for w in kernels if w.ndim == 2][0]        # per-tensor
    assert max(len(np.unique(ch)) for ch in conv) <= k
    assert len(np.unique(dense)) <= k
    if prune_first:
        assert (conv == 0).mean() >= 0.45 and (dense == 0).mean() >= 0.45
    # the centroids trained (BN folded into them per channel)
    fused = q.get_layer("quant_conv")
    rows = quantize.summary(q, print_fn=None)
    assert {r_["wraps"]: r_["preserve_clusters"] for r_ in rows
            if "wraps" in r_}["conv"] <= k
    shared = np.take_along_axis(fused.cluster_centroids.numpy(),
                                fused.cluster_indices.numpy(), 1)
    start = plain.get_layer("conv").kernel.numpy()
    start = start.reshape(-1, start.shape[-1]).T
    assert shared.shape == start.shape
    assert max(len(np.unique(ch)) for ch in shared) <= k
    assert not np.allclose(shared, start)
    # a saved CQAT model loads back with the same centroids and outputs
    q.save(tmp_path / "cqat.keras")
    back = keras.models.load_model(tmp_path / "cqat.keras")
    np.testing.assert_allclose(back.predict(x[:16], verbose=0),
                               q.predict(x[:16], verbose=0), atol=1e-5)
    if prune_first:
        return
    # without the scheme, QAT spreads the shared values apart
    _, _, plain_kernels = results["default"]
    conv_default = [w for w in plain_kernels if w.ndim == 4][0]
    assert max(len(np.unique(ch)) for ch in conv_default) > k


def test_cluster_preserving_qat_keeps_a_frozen_layer_frozen(tmp_path):
    from tfcompress import quantize
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)),
                              keras.layers.Dense(16, name="base_fc"),
                              keras.layers.Dense(4, name="head")])
    model.get_layer("base_fc").trainable = False     # a frozen base layer
    plain = cluster.strip_clustering(cluster.cluster_weights(model, 4))
    q = quantize.quantize_model(plain, quantize.ClusterPreservingScheme())

    def trainable(m):
        return sorted(w.path for w in m.trainable_weights
                      if "centroids" in w.path)
    assert trainable(q) == ["quant_head/cluster_centroids"]
    q.save(tmp_path / "cqat.keras")
    assert trainable(keras.models.load_model(tmp_path / "cqat.keras")) == [
        "quant_head/cluster_centroids"]


def test_cluster_preserving_scheme_needs_a_clustered_model():
    from tfcompress import quantize
    with pytest.raises(ValueError, match="clustered model"):
        quantize.quantize_model(_compile(_mlp(width=300)),
                                quantize.ClusterPreservingScheme())


def test_cluster_preserving_qat_of_a_dense_clustered_per_channel(tmp_path):
    # per_channel=True: 8 values per output unit, 512 in the kernel; TFLite
    # quantizes a Dense per tensor, each unit keeps its 8 values
    from tfcompress import quantize
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32,)),
                              keras.layers.Dense(64, name="fc")])
    plain = cluster.strip_clustering(
        cluster.cluster_weights(model, 8, per_channel=True))
    q = quantize.quantize_model(plain, quantize.ClusterPreservingScheme())
    x = np.random.default_rng(0).normal(size=(64, 32)).astype("float32")
    q.compile(keras.optimizers.Adam(1e-2), "mse")
    q.fit(x, np.ones((64, 64), "float32"), batch_size=16, verbose=0)
    r = convert(q, "int8", representative_data=x)
    (kernel,) = _int8_kernels(r.tflite_bytes, r.report)      # (out, in)
    assert max(len(np.unique(unit)) for unit in kernel) <= 8
    q.save(tmp_path / "cqat.keras")
    back = keras.models.load_model(tmp_path / "cqat.keras")
    np.testing.assert_allclose(back.predict(x[:8], verbose=0),
                               q.predict(x[:8], verbose=0), atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: keras.layers.DepthwiseConv2D(3, name="k"),
    lambda: keras.layers.Conv2DTranspose(48, 3, name="k"),
], ids=["depthwise", "conv_transpose"])
def test_cluster_preserving_qat_of_output_channels_clustered_apart(
        make, tmp_path):
    # 48 output channels x 8 values: 384 in the kernel, more than one
    # table holds; each output channel keeps its 8 through QAT, the
    # conversion and a save
    from tfcompress import quantize
    from tfcompress.convert import convert
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 48)), make(),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, name="head")])
    plain = cluster.strip_clustering(cluster.cluster_weights(
        model, 8, per_channel=True, exclude="head"))
    q = quantize.quantize_model(plain, quantize.ClusterPreservingScheme())
    x = np.random.default_rng(0).normal(size=(32, 6, 6, 48)).astype(
        "float32")
    q.compile(keras.optimizers.Adam(1e-2), "mse")
    q.fit(x, np.ones((32, 2), "float32"), batch_size=16, verbose=0)
    r = convert(q, "int8", representative_data=x)
    kernel = [k for k in _int8_kernels(r.tflite_bytes, r.report)
              if k.ndim == 4][0]
    # TFLite: depthwise (1, h, w, C * M), transposed (out, h, w, in)
    rows = (kernel.reshape(-1, kernel.shape[-1]).T if make().__class__
            is keras.layers.DepthwiseConv2D else kernel.reshape(
                kernel.shape[0], -1))
    assert len(rows) == 48 and max(len(np.unique(ch)) for ch in rows) <= 8
    q.save(tmp_path / "cqat.keras")
    back = keras.models.load_model(tmp_path / "cqat.keras")
    np.testing.assert_allclose(back.predict(x[:4], verbose=0),
                               q.predict(x[:4], verbose=0), atol=1e-5)


def test_assignments_refresh_on_schedule():
    from tfcompress.errors import InputError
    x, y = _data()
    base = _compile(_mlp())
    base.fit(x, y, epochs=1, verbose=0)
    c = _compile(cluster.cluster_weights(base, 4, update_assignments=True))
    wrappers = [l for l in c.layers if isinstance(l, cluster.ClusterWeights)]
    before = [(w.kernel.numpy().copy(), w.indices.numpy().copy())
              for w in wrappers]
    cb = cluster.UpdateClusterAssignments(frequency=1)
    c.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    assert len(cb.changed) == 3 and sum(cb.changed) > 0
    for w, (kernel0, idx0) in zip(wrappers, before):
        # the latent weights trained; the layer still computes with k values
        assert not np.allclose(w.kernel.numpy(), kernel0)
        ck = w.clustered_kernel().numpy()
        assert len(np.unique(ck)) <= 4
        shared = np.take_along_axis(w.centroids.numpy(), w.indices.numpy(), 1)
        np.testing.assert_array_equal(ck.reshape(1, -1), shared)
    assert any((w.indices.numpy() != i0).any()
               for w, (_, i0) in zip(wrappers, before))
    plain = cluster.strip_clustering(c)
    assert all(len(np.unique(l.kernel.numpy())) <= 4
               for l in plain.layers if hasattr(l, "kernel"))
    # a model clustered without update_assignments is told what to do
    fixed = _compile(cluster.cluster_weights(_compile(_mlp()), 4))
    with pytest.raises(InputError, match="update_assignments=True"):
        fixed.fit(x, y, epochs=1, verbose=0,
                  callbacks=[cluster.UpdateClusterAssignments()])


def _named_mlp(width, seed, prefix):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((12,)),
        keras.layers.Dense(width, activation="relu", name=f"{prefix}_hidden"),
        keras.layers.Dense(4, name=f"{prefix}_logits")])


def test_feature_distillation_matches_intermediate_layers(teacher,
                                                         tmp_path):
    x, y = _data(512)
    before_teacher = [w.copy() for w in teacher.get_weights()]
    t_hidden = keras.Model(teacher.inputs,
                           teacher.get_layer("t_hidden").output)
    target = t_hidden.predict(x, verbose=0)

    def feature_error(d):
        s_hidden = keras.Model(d.student.inputs,
                               d.student.get_layer("s_hidden").output)
        proj = d.projections[0]
        return float(np.mean((np.asarray(proj(s_hidden.predict(
            x, verbose=0))) - target) ** 2))

    d = Distiller(_named_mlp(8, 2, "s"), teacher, temperature=4.0,
                  alpha=0.5, feature_pairs=[("s_hidden", "t_hidden")],
                  feature_weight=1.0)
    d.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    before = feature_error(d)
    proj_before = d.projections[0].kernel.numpy().copy()
    d.fit(x, y, epochs=8, verbose=0)
    # the projection learned and the student's hidden layer now predicts
    # the teacher's
    assert not np.allclose(d.projections[0].kernel.numpy(), proj_before)
    assert feature_error(d) < 0.5 * before
    assert float(np.mean(d.predict(x, verbose=0).argmax(1) == y)) > 0.6
    # the saved model is the student alone, without projections
    d.save(tmp_path / "student.keras")
    saved = keras.models.load_model(tmp_path / "student.keras")
    assert [l.name for l in saved.layers] == ["s_hidden", "s_logits"]
    for a, b in zip(before_teacher, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)            # teacher frozen
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        Distiller(_named_mlp(8, 2, "s"), teacher,
                  feature_pairs=[("nope", "t_hidden")])
    with pytest.raises(ValueError, match="need the teacher"):
        Distiller(_named_mlp(8, 2, "s"), None,
                  feature_pairs=[("s_hidden", "t_hidden")])


def test_tfmot_names_for_centroid_init_scopes_and_keywords(tmp_path):
    from tfcompress.errors import InputError
    from tfcompress import prune
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(8, name="fc")])
    init = cluster.CentroidInitialization
    for given, expected in ((init.LINEAR, "linear"),
                            ("KMEANS_PLUS_PLUS", "kmeans++"),
                            ("CentroidInitialization.DENSITY_BASED",
                             "density"), ("random", "random")):
        clustered = cluster.cluster_weights(
            model, 3, cluster_centroids_init=given, per_channel=True)
        wrapper = clustered.get_layer("cluster_fc")
        assert wrapper.centroid_init == expected and wrapper.per_channel
    with pytest.raises(InputError, match="KMEANS_PLUS_PLUS"):
        cluster.cluster_weights(model, 3, "kmeans")   # refused at once
    path = str(tmp_path / "c.keras")
    clustered.save(path)
    with cluster.cluster_scope(), prune.prune_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        loaded.get_layer("cluster_fc").clustered_kernel(),
        wrapper.clustered_kernel())


def _event_tags(folder):
    import tensorflow as tf
    tags = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for v in event.summary.value:
                tags.setdefault(v.tag, []).append(
                    tf.make_ndarray(v.tensor))
    return tags


@pytest.mark.parametrize("freq, writes", [("epoch", 2), (1, 6), ("batch", 6)])
def test_clustering_summaries_log_centroids_and_distinct_values(
        tmp_path, freq, writes):
    keras.utils.set_random_seed(0)
    model = cluster.cluster_weights(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(6, name="fc")]), 3)
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).random((24, 8), dtype=np.float32)
    cb = cluster.ClusteringSummaries(str(tmp_path), cluster_update_freq=freq)
    model.fit(x, np.zeros((24, 6), np.float32), epochs=2, batch_size=8,
              callbacks=[cb], verbose=0)
    tags = _event_tags(tmp_path / "clustering")
    wrapper = model.layers[0].name
    assert len(tags[f"{wrapper}/centroids"]) == writes
    assert tags[f"{wrapper}/distinct_values"][-1] == 3
    assert (tmp_path / "train").is_dir()      # Keras's own TensorBoard logs


def test_clustering_summaries_refuse_a_bad_frequency(tmp_path):
    with pytest.raises(InputError, match="cluster_update_freq"):
        cluster.ClusteringSummaries(str(tmp_path), cluster_update_freq=0)


class _Scale(keras.layers.Layer):
    """A custom layer that opts in to clustering as tfmot's
    ClusterableLayer does."""

    def __init__(self, weights_to_cluster=("w",), **kwargs):
        super().__init__(**kwargs)
        self.weights_to_cluster = tuple(weights_to_cluster)

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],),
                                 initializer="random_normal", name="w")
        self.b = self.add_weight(shape=(input_shape[-1],),
                                 initializer="random_normal", name="b")

    def call(self, x):
        return x * self.w + self.b

    def get_clusterable_weights(self):
        return [(n, getattr(self, n)) for n in self.weights_to_cluster]


def test_a_clusterable_layer_has_its_named_weight_clustered():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), _Scale(name="scale"),
                              keras.layers.Dense(2, name="fc")])
    assert isinstance(model.layers[0], cluster.ClusterableLayer)
    clustered = cluster.cluster_weights(model, 3)
    assert [type(l).__name__ for l in clustered.layers] == [
        "ClusterWeights", "ClusterWeights"]
    clustered.compile("sgd", "mse")
    x = np.random.default_rng(0).random((8, 16), dtype=np.float32)
    clustered.fit(x, np.zeros((8, 2), np.float32), verbose=0)
    plain = cluster.strip_clustering(clustered)
    scale = plain.get_layer("scale")
    assert np.unique(scale.w.numpy()).size <= 3
    assert np.unique(scale.b.numpy()).size == 16     # not named: untouched
    np.testing.assert_allclose(plain.predict(x, verbose=0),
                               clustered.predict(x, verbose=0), atol=1e-5)


def test_a_clusterable_layer_naming_no_weight_stays_plain_and_two_cluster():
    model = keras.Sequential([keras.Input((4,)), _Scale(())])
    assert type(cluster.cluster_weights(model, 2).layers[0]) is _Scale
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), _Scale(("w", "b"),
                                                         name="scale")])
    plain = cluster.strip_clustering(cluster.cluster_weights(model, 2))
    scale = plain.get_layer("scale")
    assert np.unique(scale.w.numpy()).size == 2
    assert np.unique(scale.b.numpy()).size == 2


class _FirstHalfOnLargest:
    """A custom clustering algorithm, as tfmot's ClusteringAlgorithm
    subclasses give it: built with the centroids (a tf.Variable), it says
    which centroid each weight takes. This one puts the first half of the
    weights on the largest centroid and the rest on the smallest."""

    def __init__(self, clusters_centroids, *args):
        import tensorflow as tf
        assert isinstance(clusters_centroids, tf.Variable)
        self.cluster_centroids = clusters_centroids

    def get_pulling_indices(self, weight):
        import tensorflow as tf
        c = self.cluster_centroids
        flat = tf.reshape(weight, [-1])
        half = tf.size(flat) // 2
        position = tf.range(tf.size(flat))
        return tf.reshape(tf.where(position < half, tf.argmax(c),
                                   tf.argmin(c)), tf.shape(weight))


class _ScaleWithAlgorithm(_Scale):
    def get_clusterable_algorithm(self, weight_name):
        return _FirstHalfOnLargest if weight_name == "w" else None


def test_a_clusterable_layer_s_own_algorithm_assigns_its_weights():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), _ScaleWithAlgorithm(
        ("w", "b"), name="scale")])
    clustered = cluster.cluster_weights(model, 3)
    scale = cluster.strip_clustering(clustered).get_layer("scale")
    w = scale.w.numpy()
    assert np.all(w[:8] == w.max()) and np.all(w[8:] == w.min())
    assert w.max() > w.min()
    # "b" has no algorithm of its own: the nearest centroid
    assert np.unique(scale.b.numpy()).size == 3
    with pytest.raises(InputError, match="get_clusterable_algorithm"):
        cluster.cluster_weights(model, 3, per_channel=True)
    # refreshed assignments follow the layer's algorithm too
    moving = cluster.cluster_weights(model, 3, update_assignments=True)
    wrapper = moving.get_layer("cluster_scale")
    for v in (wrapper.layer.w, wrapper.layer.b):
        v.assign(-v)                  # the nearest centroids change
    assert wrapper.refresh_assignments() > 0     # b's: the nearest
    w = cluster.strip_clustering(moving).get_layer("scale").w.numpy()
    assert np.all(w[:8] == w.max()) and np.all(w[8:] == w.min())


def _recurrent_attention_model():
    inputs = keras.Input((5, 6))
    x = keras.layers.LSTM(8, return_sequences=True, name="lstm")(inputs)
    x = keras.layers.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))


def test_every_kernel_of_recurrent_and_attention_layers_is_clustered(
        tmp_path):
    # as tfmot: the input and recurrent kernels of an LSTM, the four
    # projections of a MultiHeadAttention
    keras.utils.set_random_seed(0)
    clustered = cluster.cluster_weights(_recurrent_attention_model(), 4)
    clustered.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x = rng.random((16, 5, 6), dtype=np.float32)
    clustered.fit(x, rng.random((16, 2), dtype=np.float32), verbose=0)
    rows = cluster.summary(clustered, print_fn=None)
    per_layer = collections.Counter(r["layer"] for r in rows)
    assert per_layer == {"lstm": 2, "mha": 4, "fc": 1}
    assert max(r["distinct_values"] for r in rows) <= 4
    plain = cluster.strip_clustering(clustered)
    for name in ("lstm", "mha"):
        kernels = prune.get_prunable_weights(plain.get_layer(name))
        assert [np.unique(k.numpy()).size <= 4 for k in kernels] == [
            True] * per_layer[name]
    want = clustered.predict(x, verbose=0)
    np.testing.assert_allclose(plain.predict(x, verbose=0), want, atol=1e-5)
    clustered.save(tmp_path / "c.keras")
    loaded = keras.models.load_model(tmp_path / "c.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want,
                               atol=1e-6)


def test_a_wrapper_saved_clustering_only_the_first_kernel_still_loads():
    # files written when a layer's first kernel alone was clustered
    keras.utils.set_random_seed(0)
    model = _recurrent_attention_model()
    wrapper = cluster.ClusterWeights(model.get_layer("lstm"), 4)
    config = wrapper.get_config()
    config.pop("cluster_all_weights")
    old = cluster.ClusterWeights.from_config(config)
    old.build((None, 5, 6))
    assert len(old.clustered_weights()) == 1
    assert len(wrapper.clustered_weights()) == 2


def test_a_nested_base_named_in_exclude_stays_unclustered():
    # as prune_low_magnitude: a frozen base kept as it is by its name
    keras.utils.set_random_seed(0)
    inner_in = keras.Input((6,))
    base = keras.Model(inner_in, keras.layers.Dense(8, name="inner_fc")(
        inner_in), name="base")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(
        base(inputs)))
    clustered = cluster.cluster_weights(model, 3, exclude="base")
    assert [w.layer.name for w in cluster_wrappers(clustered)] == ["head"]
    with pytest.raises(InputError, match="exclude names no layer"):
        cluster.cluster_weights(model, 3, exclude=["bas"])


def cluster_wrappers(model):
    from tfcompress.utils.layer_map import iter_layers
    return [l for l in iter_layers(model)
            if isinstance(l, cluster.ClusterWeights)]


class _Returns(keras.layers.Layer):
    def __init__(self, what, **kwargs):
        super().__init__(**kwargs)
        self.what = what

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],))

    def call(self, x):
        return x * self.w

    def get_clusterable_weights(self):
        return {"bare list": [self.w], "bare variable": self.w,
                "array": [("w", np.ones(4, np.float32))], "none": None,
                "other variable": [("w", keras.Variable(np.ones(4)))]
                }[self.what]


@pytest.mark.parametrize("what", ["bare list", "bare variable", "array",
                                  "none", "other variable"])
def test_a_clusterable_layer_returning_no_name_variable_pairs_is_refused(
        what):
    model = keras.Sequential([keras.Input((4,)), _Returns(what, name="s")])
    with pytest.raises(InputError, match=r"'s'.*get_clusterable_weights\(\)"
                       r".*\(name, variable\) pairs") as err:
        cluster.cluster_weights(model, 2)
    assert "\n" not in str(err.value)


def test_an_unbuilt_model_is_refused_not_returned_unclustered():
    model = keras.Sequential([keras.layers.Dense(4, name="hidden"),
                              keras.layers.Dense(2)])
    with pytest.raises(InputError, match=r"'hidden'.*not built.*keras\."
                       r"Input"):
        cluster.cluster_weights(model, 2)
    # an unbuilt layer excluded is left as it is
    model = keras.Sequential([keras.layers.Dense(4, name="hidden")])
    kept = cluster.cluster_weights(model, 2, exclude="hidden")
    assert type(kept.layers[0]) is keras.layers.Dense


def test_a_pruned_model_not_stripped_is_refused_not_returned_unclustered():
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(16, name="hidden")])
    pruned = prune.prune_low_magnitude(model, prune.ConstantSparsity(0.5, 0))
    with pytest.raises(InputError, match=r"'hidden'.*wrapped for pruning.*"
                       r"strip_pruning"):
        cluster.cluster_weights(pruned, 4, preserve_sparsity=True)


def test_exclude_none_excludes_nothing_and_no_names_is_refused():
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, name="hidden")])
    clustered = cluster.cluster_weights(model, 2, exclude=None)  # as prune
    assert isinstance(clustered.layers[0], cluster.ClusterWeights)
    with pytest.raises(InputError, match=r"exclude takes layer names.*got "
                       r"3"):
        cluster.cluster_weights(model, 2, exclude=3)


@pytest.mark.parametrize("update_assignments", [False, True])
def test_unfreezing_a_clustered_model_keeps_its_kernels_as_clustering_set(
        update_assignments):
    # base.trainable = False, train the head, base.trainable = True: the
    # kernels the centroids stand for train only as latent weights
    model = keras.Sequential([keras.Input((8,)),
                              keras.layers.Dense(4, name="hidden")])
    clustered = cluster.cluster_weights(
        model, 2, update_assignments=update_assignments)
    before = [v.path for v in clustered.trainable_variables]
    clustered.trainable = False
    assert clustered.trainable_variables == []
    clustered.trainable = True
    assert [v.path for v in clustered.trainable_variables] == before
    assert ("hidden/kernel" in before) == update_assignments


class _ClusteredSubclass(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fc = cluster.cluster_weights(keras.layers.Dense(4), 2)

    def call(self, x):
        return self.fc(x)


def test_strip_clustering_refuses_a_subclassed_model_holding_wrappers():
    model = _ClusteredSubclass(name="net")
    model(np.ones((1, 8), np.float32))
    with pytest.raises(InputError, match=r"net is a subclassed model.*"
                       r"strip_clustering\(wrapper\)"):
        cluster.strip_clustering(model)    # was returned with its wrappers
    plain = cluster.strip_clustering(model.fc)
    assert type(plain) is keras.layers.Dense
    assert np.unique(plain.kernel.numpy()).size <= 2


@pytest.mark.parametrize("frequency", [1.5, "x", 0, True])
def test_update_assignments_frequency_must_be_a_whole_number_of_epochs(
        frequency):
    with pytest.raises(InputError, match=r"frequency is a whole number of "
                       r"epochs >= 1"):
        cluster.UpdateClusterAssignments(frequency=frequency)


def test_wrapping_a_clusterable_layer_naming_no_weight_says_so():
    layer = _Scale((), name="scale")
    layer.build((None, 4))
    with pytest.raises(InputError, match=r"'scale'.*names no weight.*"
                       r"unwrapped"):
        cluster.cluster_weights(layer, 2)


def _centroid_gradient(wrapper, x):
    import tensorflow as tf
    with tf.GradientTape() as tape:
        loss = keras.ops.sum(wrapper(x))
    return tape.gradient(loss, wrapper.centroids).numpy()


@pytest.mark.parametrize("aggregation", [
    "avg", "GradientAggregation.AVG", cluster.GradientAggregation.AVG])
def test_avg_gradient_aggregation_divides_each_centroid_gradient_by_its_size(
        aggregation):
    """tfmot's cluster_gradient_aggregation=AVG: a centroid's gradient is
    the mean of its weights' gradients, not their sum."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(5, name="d")])
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    summed = cluster.cluster_weights(model, 4).layers[0]
    averaged = cluster.cluster_weights(
        model, 4, cluster_gradient_aggregation=aggregation).layers[0]
    np.testing.assert_array_equal(summed.indices.numpy(),
                                  averaged.indices.numpy())
    sizes = np.bincount(summed.indices.numpy().ravel(), minlength=4)
    np.testing.assert_allclose(
        _centroid_gradient(averaged, x),
        _centroid_gradient(summed, x) / np.maximum(sizes, 1), rtol=1e-5)
    # the forward pass is the same
    np.testing.assert_array_equal(summed(x).numpy(), averaged(x).numpy())
    assert averaged.get_config()["gradient_aggregation"] == "avg"


def test_avg_gradient_aggregation_survives_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(5, name="d")])
    clustered = cluster.cluster_weights(model, 4, gradient_aggregation="avg")
    path = str(tmp_path / "c.keras")
    clustered.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.layers[0].gradient_aggregation == "avg"


def test_an_unknown_gradient_aggregation_is_refused():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    with pytest.raises(InputError, match="gradient_aggregation.*'mean'"):
        cluster.cluster_weights(model, 4, cluster_gradient_aggregation="mean")


def test_clustering_a_clustered_model_with_other_settings_is_refused():
    """tfmot keeps the old wrapper, and so the old k, silently."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)),
                              keras.layers.Dense(5, name="d")])
    clustered = cluster.cluster_weights(model, 8)
    with pytest.raises(InputError, match="'d' is clustered already.*8 "
                                         "clusters.*strip_clustering"):
        cluster.cluster_weights(clustered, 4)
    # the same request again leaves the clustering as it is
    again = cluster.cluster_weights(clustered, 8)
    assert again.layers[0].number_of_clusters == 8


def _values_per_output_channel(kernel, layer):
    k = np.asarray(kernel)
    if isinstance(layer, keras.layers.Conv2DTranspose):
        k = np.moveaxis(k, -2, -1)               # (h, w, in, out)
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        k = k.reshape(k.shape[:-2] + (-1,))     # output channel c * M + m
    rows = k.reshape(-1, k.shape[-1]).T
    return [np.unique(r).size for r in rows]


@pytest.mark.parametrize("make", [
    lambda: keras.layers.DepthwiseConv2D(3, name="dw"),
    lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw"),
    lambda: keras.layers.Conv2DTranspose(5, 3, name="dw"),
], ids=["depthwise", "depthwise_x2", "conv_transpose"])
def test_per_channel_clustering_groups_by_output_channel(make):
    """Each output channel (what int8 conversion scales on its own) has
    its own centroids: a depthwise kernel's channels are its input
    channels times the multiplier, a transposed convolution's axis -2."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 6)), make()])
    clustered = cluster.cluster_weights(model, 3, per_channel=True)
    wrapper = clustered.layers[0]
    layer = model.layers[0]
    channels = (layer.kernel.shape[-2] if isinstance(
        layer, keras.layers.Conv2DTranspose) else
        layer.kernel.shape[-2] * layer.kernel.shape[-1])
    assert wrapper.centroids.shape == (channels, 3)
    plain = cluster.strip_clustering(clustered)
    counts = _values_per_output_channel(plain.layers[0].kernel, layer)
    assert len(counts) == channels and max(counts) <= 3
    # more than three values over the whole kernel: channels differ
    assert np.unique(plain.layers[0].kernel.numpy()).size > 3
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 6)).astype("float32")
    np.testing.assert_allclose(clustered(x), plain(x), atol=1e-5)
    rows = cluster.summary(clustered, print_fn=None)
    # one 3-entry table per output channel
    assert rows[0]["deep_compression_bits"] == cluster.deep_compression_bits(
        int(np.prod(layer.kernel.shape)), 3) + (channels - 1) * 3 * 32


def test_a_file_clustered_per_last_axis_loads_with_its_groups():
    # written when per-channel groups followed the kernel's last axis
    keras.utils.set_random_seed(0)
    layer = keras.layers.DepthwiseConv2D(3, name="dw")
    layer.build((None, 8, 8, 6))
    config = cluster.ClusterWeights(layer, 3, per_channel=True).get_config()
    config.pop("channels_by_output")
    old = cluster.ClusterWeights.from_config(config)
    old.build((None, 8, 8, 6))
    assert old.centroids.shape == (1, 3)      # (h, w, 6, 1): one group


def test_tfmot_cluster_per_channel_clusters_only_conv2d_per_channel():
    # tfmot's cluster_per_channel=True gives Conv2D (and Conv2DTranspose)
    # centroids per output channel and every other kernel one set: with
    # tfmot 0.8.1 this model's kernels keep 12, 3 and 3 values
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.SeparableConv2D(4, 3, name="sep"),
        keras.layers.Flatten(), keras.layers.Dense(5, name="fc")])
    clustered = cluster.cluster_weights(
        model, number_of_clusters=3, cluster_per_channel=True,
        cluster_centroids_init=cluster.CentroidInitialization.LINEAR)
    plain = cluster.strip_clustering(clustered)
    distinct = {name: np.unique(plain.get_layer(name).weights[i]).size
                for name, i in (("conv", 0), ("sep", 1), ("fc", 0))}
    assert distinct == {"conv": 12, "sep": 3, "fc": 3}
    # the same layers one by one, and asked again on the clustered model
    assert not cluster.cluster_weights(keras.layers.Dense(2), 3,
                                       cluster_per_channel=True).per_channel
    assert [w.per_channel for w in cluster.cluster_weights(
        [model.get_layer("conv"), model.get_layer("fc")], 3,
        cluster_per_channel=True)] == [True, False]
    again = cluster.cluster_weights(
        clustered, 3, cluster_per_channel=True,
        cluster_centroids_init=cluster.CentroidInitialization.LINEAR)
    assert [again.get_layer(f"cluster_{name}").per_channel
            for name in ("conv", "fc")] == [True, False]
    # tfcompress's own per_channel=True groups every kernel by channel
    every = cluster.strip_clustering(cluster.cluster_weights(
        model, 3, "linear", per_channel=True))
    assert np.unique(every.get_layer("fc").kernel).size > 3


@pytest.mark.parametrize("per_channel", [False, True])
def test_preserve_sparsity_counts_the_zeros_among_the_clusters(per_channel):
    # tfmot: number_of_clusters=8 with preserve_sparsity=True leaves at
    # most 8 values in a pruned kernel (its zero is one of them; tfmot
    # 0.8.1 gives 8 on this kernel), not 8 values besides the zeros
    keras.utils.set_random_seed(0)
    k0 = np.random.default_rng(1).normal(size=(20, 30)).astype("float32")
    k0[np.abs(k0) < np.median(np.abs(k0))] = 0
    k0[:, 0] = np.arange(1, 21)          # a channel without zeros
    model = keras.Sequential([keras.Input((20,)),
                              keras.layers.Dense(30, name="fc")])
    model.get_layer("fc").kernel.assign(k0)
    for init in ("kmeans++", "linear", "density"):
        clustered = cluster.cluster_weights(
            model, 8, init, preserve_sparsity=True, per_channel=per_channel,
            update_assignments=True)
        wrapper = clustered.get_layer("cluster_fc")
        rows = [np.asarray(wrapper.clustered_kernel())]
        # re-assigning to moved centroids keeps the count
        wrapper.centroids.assign(wrapper.centroids.numpy() * 1.1 + 0.01)
        wrapper.refresh_assignments()
        rows.append(np.asarray(wrapper.clustered_kernel()))
        for kernel in rows:
            np.testing.assert_array_equal(kernel[:, 1:] == 0,
                                          k0[:, 1:] == 0)
            groups = kernel.T if per_channel else [kernel]
            assert max(np.unique(g).size for g in groups) <= 8, init
            if not per_channel:
                assert 0.0 in np.unique(kernel)
        if init == "kmeans++" and per_channel:
            # a channel without zeros has all 8 for itself
            assert np.unique(rows[0][:, 0]).size == 8
        elif init == "kmeans++":
            assert np.unique(rows[0]).size == 8
    row = cluster.summary(clustered, print_fn=None)[0]
    tables = 30 if per_channel else 1
    assert row["deep_compression_bits"] == cluster.deep_compression_bits(
        600, 8) + (tables - 1) * 8 * 32
