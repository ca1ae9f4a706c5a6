"""What the post-training steps that read each layer's input cost: one
walk over the data, layer by layer, against a model from the input to
each layer.

Side by side in one process, per model (keras.applications at 32x32 as
the zoo builds them, untrained): the seconds of
``ptq.reestimate_batchnorm`` and ``ptq.correct_bias`` on the same
samples, as they run by default (one walk) and with ``memory_limit=0``
(nothing held: a model from the input to each batch norm or weight layer,
what they did before). The two results are checked equal.

    .venv/bin/python benchmarks/ptq_passes.py

Writes benchmarks/results/<name>.{json,md}.
"""

import argparse
import time

import common
import numpy as np


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t, 1)


def largest_difference(a, b, attributes):
    """The largest absolute difference between the two models' values of
    ``attributes`` over their layers."""
    worst = 0.0
    for layer in a.layers:
        for attr in attributes:
            if getattr(layer, attr, None) is not None:
                other = getattr(b.get_layer(layer.name), attr).numpy()
                worst = max(worst, float(np.max(np.abs(
                    getattr(layer, attr).numpy() - other))))
    return worst


def model_row(name, samples):
    import keras
    import zoo
    from tfcompress import ptq
    keras.utils.set_random_seed(0)
    model = zoo.build(name, keras, 32)
    scale = 255.0 if zoo.MODELS[name][2] else 1.0
    x = np.random.default_rng(0).random((samples, 32, 32, 3),
                                        dtype=np.float32) * scale
    row = {"params": int(model.count_params()), "samples": samples}
    for step, attributes in (
            ("reestimate_batchnorm", ("moving_mean", "moving_variance")),
            ("correct_bias", ("bias",))):
        fn = getattr(ptq, step)
        walked, t_walk = timed(lambda: fn(model, x, samples=samples))
        each, t_each = timed(lambda: fn(model, x, samples=samples,
                                        memory_limit=0))
        row[step] = {"walk_s": t_walk, "per_layer_s": t_each,
                     "max_abs_difference": largest_difference(
                         walked, each, attributes)}
        print(name, step, row[step], flush=True)
    return row


def markdown(results, args):
    lines = [f"Command: `python benchmarks/ptq_passes.py --models "
             f"{args.models} --samples {args.samples}`", "",
             f"{args.samples} samples, 32x32, batch 64, this machine's "
             "cores; seconds:", "",
             "| model | step | one walk | a model per layer "
             "(`memory_limit=0`) | ratio | largest difference |",
             "|---|---|---:|---:|---:|---:|"]
    for name, row in results.items():
        for step in ("reestimate_batchnorm", "correct_bias"):
            r = row[step]
            lines.append(f"| {name} | {step} | {r['walk_s']:.1f} | "
                         f"{r['per_layer_s']:.1f} | "
                         f"{r['per_layer_s'] / r['walk_s']:.0f}x | "
                         f"{r['max_abs_difference']:.1e} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,resnet20",
                    help="comma-separated zoo models (efficientnet_b0's "
                         "model-per-layer runs take several minutes)")
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--name", default="ptq_passes")
    args = ap.parse_args()
    results = {name: model_row(name, args.samples)
               for name in args.models.split(",")}
    common.save_models(args, results, markdown)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
