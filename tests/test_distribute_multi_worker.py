"""MultiWorkerMirroredStrategy for real: two worker processes on 127.0.0.1
with TF_CONFIG, each on CPU, train a pruned model, then prune-preserving
QAT, then a clustered model. Both workers must end with identical masks,
step counters, activation ranges and centroids; the chief saves the
checkpoint and converts the result to int8. Bounded: both processes are
killed after TIMEOUT seconds."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

TIMEOUT = 240

WORKER = r'''
import hashlib, json, os, sys
import numpy as np
import keras
from tfcompress import cluster, distribute, prune, quantize

out_dir = sys.argv[1]
strategy = distribute.get_strategy("multi_worker")
keras.utils.set_random_seed(0)


def digest(v):
    return hashlib.sha256(np.ascontiguousarray(
        np.asarray(v)).tobytes()).hexdigest()[:16]


def build():
    return keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="fc"),
        keras.layers.Dense(4, name="logits")])


def compile_(m):
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return m


rng = np.random.default_rng(0)
x = rng.random((128, 8, 8, 2), dtype=np.float32)
y = (x.mean(axis=(1, 2, 3)) * 8).astype("int32") % 4
with strategy.scope():
    pruned = compile_(prune.prune_low_magnitude(
        build(), prune.PolynomialDecay(0.0, 0.75, 0, 12, frequency=4)))
pruned.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
           callbacks=[prune.UpdatePruningStep()])
report = {"task": list(distribute.task(strategy)),
          "chief": distribute.is_chief(strategy),
          "replicas": strategy.num_replicas_in_sync,
          "masks": {}, "steps": {}}
for w in prune.collect_wrappers(pruned):
    report["masks"][w.layer.name] = digest(w.masks[0])
    report["steps"][w.layer.name] = int(w.step)
    report.setdefault("sparsity", {})[w.layer.name] = float(
        1 - np.asarray(w.masks[0]).mean())
ckpt = distribute.worker_path(os.path.join(out_dir, "pruned.keras"),
                              strategy)
os.makedirs(os.path.dirname(ckpt), exist_ok=True)
pruned.save(ckpt)
report["checkpoint"] = ckpt

with strategy.scope():
    qat = compile_(quantize.quantize_model(prune.strip_pruning(pruned),
                                           quantize.PrunePreservingScheme()))
qat.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
report["ranges"] = {
    l.name: [float(np.asarray(l.range[0])), float(np.asarray(l.range[1]))]
    for l in qat.layers if isinstance(l, quantize.QuantizeFused)}
report["qat_kernels"] = {l.name: digest(l.layer.kernel)
                         for l in qat.layers
                         if isinstance(l, quantize.QuantizeFused)}

with strategy.scope():
    clustered = compile_(cluster.cluster_weights(build(), 4))
clustered.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
report["clustered"] = {
    l.layer.name: digest(cluster.strip_clustering(clustered).get_layer(
        l.layer.name).kernel)
    for l in clustered.layers if isinstance(l, cluster.ClusterWeights)}

if report["chief"]:
    from tfcompress.convert import convert
    result = convert(qat, "int8", representative_data=x[:32])
    result.save(os.path.join(out_dir, "model_int8.tflite"))
    report["fully_integer"] = result.report["fully_integer"]
    report["int8_sparsity"] = {
        w["name"]: w["sparsity"] for w in result.report["weights"]
        if w["dtype"] == "INT8" and w["params"] >= 100}
print("REPORT" + json.dumps(report), flush=True)
'''


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(tmp_path, n=2):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(n)]}
    procs = []
    for i in range(n):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker",
                                                  "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + TIMEOUT
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(
                timeout=max(1, deadline - time.monotonic()))
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outputs


@pytest.mark.slow
def test_two_workers_on_localhost_train_identically(tmp_path):
    outputs = _run_workers(tmp_path)
    reports = []
    for code, out, err in outputs:
        assert code == 0, err[-3000:]
        line = [l for l in out.splitlines() if l.startswith("REPORT")][-1]
        reports.append(json.loads(line[len("REPORT"):]))
    chief, other = reports
    assert chief["task"] == ["worker", 0] and chief["chief"]
    assert other["task"] == ["worker", 1] and not other["chief"]
    assert chief["replicas"] == other["replicas"] == 2
    # identical masks, step counters, QAT ranges/kernels and centroids
    for key in ("masks", "steps", "ranges", "qat_kernels", "clustered"):
        assert chief[key] == other[key], key
    assert set(chief["masks"]) == {"conv", "fc", "logits"}
    # 128 samples / global batch 16 = 8 steps per epoch, 2 epochs
    assert set(chief["steps"].values()) == {16}
    for sparsity in chief["sparsity"].values():
        assert abs(sparsity - 0.75) < 0.02
    # the chief's checkpoint is the real one; the other wrote aside
    assert chief["checkpoint"] == str(tmp_path / "pruned.keras")
    assert os.path.exists(chief["checkpoint"])
    assert ".workers" in other["checkpoint"]
    # the result converts to a fully integer int8 model keeping the zeros
    assert chief["fully_integer"]
    assert chief["int8_sparsity"]
    assert all(s >= 0.74 for s in chief["int8_sparsity"].values())
    assert (tmp_path / "model_int8.tflite").stat().st_size > 0


RECIPE = """
name: mw
model: lenet_300_100
data: {name: fashion_mnist, train_samples: 512, test_samples: 256}
train: {epochs: 1, batch_size: 64, strategy: multi_worker}
variants:
  - name: pruned_qat_int8
    stages:
      - prune: {final_sparsity: 0.5, epochs: 1, frequency: 2}
      - qat: {scheme: prune_preserving, epochs: 1}
      - convert: {mode: int8}
"""


@pytest.mark.slow
def test_recipe_runs_on_two_workers(tmp_path):
    from tfcompress.data import DatasetNotFoundError
    from tfcompress.recipes import load_data
    try:
        load_data("fashion_mnist", 8, 8)
    except DatasetNotFoundError as e:       # no offline copy of the data
        pytest.skip(str(e))
    recipe = tmp_path / "mw.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker",
                                                  "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tfcompress", "run", str(recipe),
             "--out", str(out)], env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + TIMEOUT
    try:
        results = [p.communicate(timeout=max(1, deadline - time.monotonic()))
                   + (p.returncode,) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for stdout, stderr, code in results:
        assert code == 0, (stdout[-2000:], stderr[-2000:])
    assert "2 replicas" in results[0][0]
    chief = json.loads((out / "report.json").read_text())
    worker = out / ".workers" / "worker-1"
    assert (worker / "report.json").exists()
    other = json.loads((worker / "report.json").read_text())
    # both workers trained the same model: same accuracies everywhere
    assert chief["baseline"]["keras_accuracy"] == \
        other["baseline"]["keras_accuracy"]
    (a,), (b,) = chief["variants"], other["variants"]
    assert a["keras_accuracy"] == b["keras_accuracy"]
    assert a["tflite_accuracy"] is None or a["float_ops"] == 0
    assert a["float_ops"] == 0 and 0.45 <= a["sparsity"] <= 0.55
