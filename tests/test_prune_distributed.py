"""Pruning under tf.distribute.MirroredStrategy on two logical CPUs (in a
fresh interpreter: see ``two_cpus`` in conftest.py)."""

SCRIPT = r'''
from tfcompress import prune

with strategy.scope():
    model = prune.prune_low_magnitude(keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, name="fc"),
        keras.layers.Dense(4, name="logits"),
    ]), prune.PolynomialDecay(0.0, 0.8, 0, 12, frequency=3))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    global_model = prune.prune_low_magnitude(keras.Sequential([
        keras.Input((8, 8, 4)), keras.layers.Flatten(),
        keras.layers.Dense(16, name="g1"), keras.layers.Dense(4, name="g2"),
    ]), prune.PolynomialDecay(0.0, 0.8, 0, 12, frequency=3),
        global_pruning=True)
    global_model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
rng = np.random.default_rng(0)
x = rng.random((64, 8, 8, 4), dtype=np.float32)
y = rng.integers(0, 4, 64)
report = {"replicas": strategy.num_replicas_in_sync, "layers": {}}
for m in (model, global_model):
    m.fit(x, y, batch_size=16, epochs=4, verbose=0,
          callbacks=[prune.UpdatePruningStep()])
for w in (prune.collect_wrappers(model)
          + prune.collect_wrappers(global_model)):
    masks = [v.numpy() for v in w.masks[0]._value.values]
    kernels = [v.numpy() for v in w.pruned_weights[0]._value.values]
    report["layers"][w.layer.name] = {
        "copies": len(masks),
        "masks_equal": all((m == masks[0]).all() for m in masks),
        "kernels_equal": all((k == kernels[0]).all() for k in kernels),
        "mask_sparsity": [float(1 - m.mean()) for m in masks],
        "kernel_sparsity": [float((k == 0).mean()) for k in kernels],
        "step": w.step,
    }
print("REPORT" + json.dumps(report))
'''


def test_mirrored_strategy_keeps_masks_identical_across_replicas(two_cpus):
    report = two_cpus.report(two_cpus.run(SCRIPT))
    assert report["replicas"] == 2
    layers = report["layers"]
    assert set(layers) == {"conv", "fc", "logits", "g1", "g2"}
    for name, layer in layers.items():
        assert layer["copies"] == 2, name
        assert layer["masks_equal"] and layer["kernels_equal"], name
        assert layer["step"] == 16
    for name in ("conv", "fc", "logits"):
        for sparsity in (layers[name]["mask_sparsity"]
                         + layers[name]["kernel_sparsity"]):
            assert abs(sparsity - 0.8) <= 0.01, (name, sparsity)
    # global ranking: the two layers together hold 80 % zeros
    sizes = {"g1": 256 * 16, "g2": 16 * 4}
    zeros = sum(sizes[n] * layers[n]["kernel_sparsity"][0] for n in sizes)
    assert abs(zeros / sum(sizes.values()) - 0.8) <= 0.01
