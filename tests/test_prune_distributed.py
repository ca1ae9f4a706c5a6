"""Pruning under tf.distribute.MirroredStrategy on two logical CPUs.

Logical devices must be configured before TensorFlow initialises, so the
training runs in a fresh interpreter.
"""

import json
import os
import subprocess
import sys

SCRIPT = r'''
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tfcompress import prune

keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
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
rng = np.random.default_rng(0)
x = rng.random((64, 8, 8, 4), dtype=np.float32)
y = rng.integers(0, 4, 64)
model.fit(x, y, batch_size=16, epochs=4, verbose=0,
          callbacks=[prune.UpdatePruningStep()])
report = {"replicas": strategy.num_replicas_in_sync, "layers": {}}
for w in prune.collect_wrappers(model):
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


def test_mirrored_strategy_keeps_masks_identical_across_replicas():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("REPORT")]
    report = json.loads(line[-1][len("REPORT"):])
    assert report["replicas"] == 2
    assert set(report["layers"]) == {"conv", "fc", "logits"}
    for name, layer in report["layers"].items():
        assert layer["copies"] == 2, name
        assert layer["masks_equal"] and layer["kernels_equal"], name
        assert layer["step"] == 16
        for sparsity in layer["mask_sparsity"] + layer["kernel_sparsity"]:
            assert abs(sparsity - 0.8) <= 0.01, (name, sparsity)
