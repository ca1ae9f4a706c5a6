"""What QAT's activation percentile costs: a sort of the whole batch
against tfcompress's search of the rows holding the extremes.

Side by side in one process, alternating: per activation shape (those of
EfficientNetB0 and ResNet-20 at 32x32, batch 128), the milliseconds of
``fake_quant.batch_range`` at the 99.99th percentile and of the same
range from ``top_k`` over the whole flattened batch (what it did before),
each a ``tf.function``; and EfficientNetB0's QAT training step with and
without the percentile. Both ranges are checked equal.

    .venv/bin/python benchmarks/percentile_cost.py

Writes benchmarks/results/<name>.{json,md}.
"""

import argparse
import time

import common
import numpy as np

SHAPES = [(128, 16, 16, 96), (128, 8, 8, 240), (128, 32, 32, 16),
          (128, 1, 1, 1152)]
PERCENTILE = 99.99


def whole_batch_range(x, percentile):
    """The range from top-k over the whole flattened batch."""
    import tensorflow as tf
    flat = tf.reshape(x, [-1])
    k = tf.maximum(1, tf.cast(tf.cast(tf.size(flat), tf.float32) *
                              (1.0 - percentile / 100.0), tf.int32))
    return (-tf.reduce_min(tf.math.top_k(-flat, k, sorted=False).values),
            tf.reduce_min(tf.math.top_k(flat, k, sorted=False).values))


def median_ms(fn, arg, rounds, calls=10):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        times.append((time.perf_counter() - t) / calls * 1000)
    return float(np.median(times))


def range_rows(rounds):
    import tensorflow as tf
    from tfcompress.quantize.fake_quant import batch_range
    rows = []
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = tf.constant(rng.standard_normal(shape).astype("float32") ** 3)
        rows_fn = tf.function(lambda t: batch_range(t, PERCENTILE))
        whole_fn = tf.function(lambda t: whole_batch_range(t, PERCENTILE))
        same = [float(v) for v in rows_fn(x)] == [float(v)
                                                  for v in whole_fn(x)]
        t_rows, t_whole = [], []
        for _ in range(rounds):       # alternating: noise hits both
            t_whole.append(median_ms(whole_fn, x, 1))
            t_rows.append(median_ms(rows_fn, x, 1))
        rows.append({"shape": list(shape), "same_range": same,
                     "whole_batch_ms": float(np.median(t_whole)),
                     "rows_ms": float(np.median(t_rows))})
        print(rows[-1], flush=True)
    return rows


def step_rows(rounds):
    import keras
    import tensorflow as tf
    import zoo
    from tfcompress import quantize
    x = tf.constant(np.random.default_rng(1).random(
        (128, 32, 32, 3), dtype=np.float32) * 255.0)
    y = tf.constant(np.random.default_rng(2).integers(0, 10, 128))
    keras.utils.set_random_seed(0)
    base = zoo.build("efficientnet_b0", keras, 32)
    models = {}
    for label, pct in (("min and max", None), ("99.99th percentile",
                                                PERCENTILE)):
        m = quantize.quantize_model(zoo.clone(base), quantize.Default8BitScheme(
            freeze_bn_delay=zoo.freeze_delay(0), activation_percentile=pct))
        m.compile(keras.optimizers.Adam(1e-4),
                  keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
        m.train_on_batch(x, y)
        models[label] = m
    times = {k: [] for k in models}
    for _ in range(rounds):
        for label, m in models.items():
            t = time.perf_counter()
            for _ in range(3):
                m.train_on_batch(x, y)
            times[label].append((time.perf_counter() - t) / 3)
    return {k: float(np.median(v)) for k, v in times.items()}


def markdown(ranges, steps, args):
    lines = ["Command: `python benchmarks/percentile_cost.py`", "",
             f"Activation range at the {PERCENTILE}th percentile, "
             f"median of {args.rounds} alternating rounds of 10 calls "
             "(tf.function, this machine's cores):", "",
             "| activation shape | top-k over the whole batch, ms | rows "
             "holding the extremes, ms | ratio | same range |",
             "|---|---:|---:|---:|---|"]
    for r in ranges:
        lines.append(f"| {'x'.join(map(str, r['shape']))} | "
                     f"{r['whole_batch_ms']:.2f} | {r['rows_ms']:.2f} | "
                     f"{r['whole_batch_ms'] / r['rows_ms']:.1f}x | "
                     f"{'yes' if r['same_range'] else 'NO'} |")
    lines += ["", "EfficientNetB0 at 32x32, batch 128, QAT training step "
              f"(median of {args.rounds} rounds of 3 steps, alternating):",
              "", "| activation ranges | s per step |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in steps.items()]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--name", default="percentile_cost")
    args = ap.parse_args()
    ranges = range_rows(args.rounds)
    steps = step_rows(args.rounds)
    common.save(args.name, {"args": vars(args), "ranges": ranges,
                            "qat_step_seconds": steps})
    text = markdown(ranges, steps, args)
    common.save_markdown(args.name, text)
    print(text)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
