"""Checkpoint/resume of pruning under tf.distribute.MirroredStrategy (two
logical CPUs): a run killed with SIGKILL in its third epoch and restarted
from keras.callbacks.BackupAndRestore ends with the same masks, step
counters and weights as an uninterrupted run."""

import os
import signal

import pytest

SCRIPT = r'''
import hashlib
import signal

from tfcompress import prune

backup_dir, kill_at = sys.argv[1], int(sys.argv[2])
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


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_masks(tmp_path, two_cpus):
    # 128 samples / batch 16 = 8 steps per epoch; 4 epochs = 32 steps
    uninterrupted = two_cpus.report(two_cpus.run(SCRIPT, tmp_path / "a", 0))
    killed = two_cpus.run(SCRIPT, tmp_path / "b", 20)   # in epoch 3
    assert killed.returncode == -signal.SIGKILL
    assert "REPORT" not in killed.stdout
    assert os.listdir(tmp_path / "b")            # the epoch-2 backup
    resumed = two_cpus.report(two_cpus.run(SCRIPT, tmp_path / "b", 0))
    # the restart really resumed: it trained epochs 3 and 4 only
    assert uninterrupted.pop("batches_this_process") == 32
    assert resumed.pop("batches_this_process") == 16
    assert set(resumed) == {"conv", "logits"}
    for name, layer in uninterrupted.items():
        assert layer["step"] == 32
        assert abs(layer["sparsity"] - 0.8) < 0.02
        assert resumed[name] == layer, name
