"""Checkpoint/resume of pruning under tf.distribute.MirroredStrategy (two
logical CPUs): a run killed with SIGKILL in its third epoch and restarted
from keras.callbacks.BackupAndRestore ends with the same masks, step
counters and weights as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys

import pytest

SCRIPT = r'''
import hashlib, json, os, signal, sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from tfcompress import prune

backup_dir, kill_at = sys.argv[1], int(sys.argv[2])
keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = prune.prune_low_magnitude(keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(4, name="logits")]),
        prune.PolynomialDecay(0.0, 0.8, 0, 24, frequency=2))
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
rng = np.random.default_rng(0)
x = rng.random((128, 8, 8, 2), dtype=np.float32)
y = (x.mean(axis=(1, 2, 3)) * 8).astype("int32") % 4


class KillAt(keras.callbacks.Callback):
    seen = 0

    def on_train_batch_end(self, batch, logs=None):
        KillAt.seen += 1
        if KillAt.seen == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


# BackupAndRestore first: it restores weights, optimizer state, masks and
# step counters before UpdatePruningStep reads the step to continue from.
callbacks = [keras.callbacks.BackupAndRestore(backup_dir),
             prune.UpdatePruningStep(), KillAt()]
model.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0,
          callbacks=callbacks)


def digest(v):
    return hashlib.sha256(np.asarray(v).tobytes()).hexdigest()[:16]


report = {w.layer.name: {"mask": digest(w.masks[0]), "step": int(w.step),
                         "kernel": digest(w.pruned_weights[0]),
                         "sparsity": float(1 - np.asarray(w.masks[0]).mean())}
          for w in prune.collect_wrappers(model)}
report["batches_this_process"] = KillAt.seen
print("REPORT" + json.dumps(report), flush=True)
'''


def _run(tmp_path, backup, kill_at):
    script = tmp_path / "resume.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(script), str(backup),
                           str(kill_at)], capture_output=True, text=True,
                          env=env, timeout=300)


def _report(done):
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("REPORT")]
    return json.loads(line[-1][len("REPORT"):])


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_masks(tmp_path):
    # 128 samples / batch 16 = 8 steps per epoch; 4 epochs = 32 steps
    uninterrupted = _report(_run(tmp_path, tmp_path / "a", kill_at=0))
    killed = _run(tmp_path, tmp_path / "b", kill_at=20)   # in epoch 3
    assert killed.returncode == -signal.SIGKILL
    assert "REPORT" not in killed.stdout
    assert os.listdir(tmp_path / "b")            # the epoch-2 backup
    resumed = _report(_run(tmp_path, tmp_path / "b", kill_at=0))
    # the restart really resumed: it trained epochs 3 and 4 only
    assert uninterrupted.pop("batches_this_process") == 32
    assert resumed.pop("batches_this_process") == 16
    assert set(resumed) == {"conv", "logits"}
    for name, layer in uninterrupted.items():
        assert layer["step"] == 32
        assert abs(layer["sparsity"] - 0.8) < 0.02
        assert resumed[name] == layer, name
