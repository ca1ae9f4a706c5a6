"""QAT train-step time / float train-step time, tfcompress vs tfmot, in
one run (tfmot in its own process: it needs TF_USE_LEGACY_KERAS=1).

Each side times ``--steps`` training steps on a fixed batch after a
warm-up, for the float model and its QAT version, alternating float/QAT
blocks so machine noise hits both; the ratio is of the medians.

    .venv/bin/python benchmarks/qat_overhead.py --model lenet_300_100
"""

import argparse
import json
import os
import subprocess
import sys

import common  # noqa: F401

SIDE = r'''
import json, os, sys, time
import numpy as np
legacy = os.environ.get("TF_USE_LEGACY_KERAS") == "1"
import tensorflow as tf
sys.path.insert(0, {root!r})
name, steps, blocks, batch = {name!r}, {steps}, {blocks}, {batch}
x = np.random.default_rng(0).random((batch, 28, 28, 1), dtype=np.float32)
y = np.random.default_rng(1).integers(0, 10, batch)
if legacy:
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot
    sys.path.insert(0, os.path.join({root!r}, "benchmarks"))
    from tfmot_side import build
    float_model = build(name)
    make_qat = tfmot.quantization.keras.quantize_model
else:
    import keras
    from tfcompress import quantize
    from tfcompress.models import get_model
    float_model = get_model(name)
    make_qat = quantize.quantize_model
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
float_model.compile(keras.optimizers.Adam(1e-3), loss)
qat_model = make_qat(float_model)
qat_model.compile(keras.optimizers.Adam(1e-4), loss)
def block(m):
    t = []
    for _ in range(steps):
        s = time.perf_counter(); m.train_on_batch(x, y); t.append(time.perf_counter() - s)
    return float(np.median(t))
for m in (float_model, qat_model):
    for _ in range(10): m.train_on_batch(x, y)
f, q = [], []
for _ in range(blocks):
    f.append(block(float_model)); q.append(block(qat_model))
print("RESULT" + json.dumps({{"float_step_ms": 1000 * float(np.median(f)),
      "qat_step_ms": 1000 * float(np.median(q)),
      "ratio": float(np.median(q) / np.median(f))}}))
'''


def side(legacy, args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = SIDE.format(root=root, name=args.model, steps=args.steps,
                       blocks=args.blocks, batch=args.batch)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True,
                       text=True, env=env, timeout=3600)
    lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT")]
    if not lines:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1][len("RESULT"):])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lenet_300_100")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    common.save(f"qat_overhead_{args.model}", {
        "args": vars(args), "tfcompress": side(False, args),
        "tfmot": side(True, args)})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
