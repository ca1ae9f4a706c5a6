"""QAT under tf.distribute.MirroredStrategy on two logical CPUs: one set of
activation ranges (in a fresh interpreter: see ``two_cpus`` in
conftest.py)."""

SCRIPT = r'''
from tfcompress import quantize

with strategy.scope():
    base = keras.Sequential([keras.Input((8, 8, 3)),
                             keras.layers.Conv2D(4, 3, use_bias=False),
                             keras.layers.BatchNormalization(),
                             keras.layers.ReLU(),
                             keras.layers.Flatten(), keras.layers.Dense(4)])
    qat = quantize.quantize_model(base, SCHEME)
    qat.compile("adam", keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
rng = np.random.default_rng(0)
x = rng.random((64, 8, 8, 3), dtype=np.float32)
y = rng.integers(0, 4, 64)
qat.fit(x, y, batch_size=16, epochs=2, verbose=0)
report = {"replicas": strategy.num_replicas_in_sync, "ranges": [],
          "distributed": [], "batchnorm_steps": []}
for layer in qat.layers:
    if isinstance(layer, quantize.QuantizeFused):
        lo, hi, seen = layer.range
        mirrored = all(isinstance(v._value, tf.distribute.DistributedValues)
                       for v in (lo, hi))
        report["distributed"].append(mirrored)
        copies = [(float(a.numpy()), float(b.numpy())) for a, b in
                  zip(lo._value.values, hi._value.values)] if mirrored \
            else [(float(lo.numpy()), float(hi.numpy()))]
        report["ranges"].append(copies)
        if layer.batchnorm_steps is not None:
            report["batchnorm_steps"].append(
                int(layer.batchnorm_steps.numpy()))
print("REPORT" + json.dumps(report))
'''


def test_qat_mirrored_strategy_keeps_one_set_of_ranges(two_cpus):
    report = two_cpus.report(two_cpus.run(
        SCRIPT.replace("SCHEME", "None")))
    assert report["replicas"] == 2
    assert report["ranges"]
    # both range variables of every quantizer are distributed, one copy
    # per replica: otherwise "one set of ranges" would hold trivially
    assert all(report["distributed"]), report["distributed"]
    for copies in report["ranges"]:
        assert len(copies) == report["replicas"]
        assert all(c == copies[0] for c in copies)
        lo, hi = copies[0]
        assert lo <= 0 < hi and hi != 6.0      # trained, not the default


def test_freeze_bn_delay_counts_steps_under_mirrored_strategy(two_cpus):
    report = two_cpus.report(two_cpus.run(SCRIPT.replace(
        "SCHEME", "quantize.Default8BitScheme(freeze_bn_delay=3)")))
    assert report["replicas"] == 2
    # 64 samples, global batch 16, 2 epochs: 8 training steps
    assert report["batchnorm_steps"] == [8]
