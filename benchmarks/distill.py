"""Distillation: narrow seed CNNs (eighth and quarter width) trained from
the full seed CNN teacher vs the same students trained on hard labels
alone, over 3 seeds, same data, initial weights and epochs. The teacher
trains on all 60,000 images; by default the students see the first 6,000
(Hinton et al. 2015, sec. 3: soft targets carry most when the student has
little data). The teacher's logits are computed once and passed as
``y=(labels, teacher_logits)`` (the Distiller's precomputed mode).

    .venv/bin/python benchmarks/distill.py                       # 6k students
    .venv/bin/python benchmarks/distill.py --student-samples 0   # all 60k
    .venv/bin/python benchmarks/distill.py --teacher-cache /tmp/teachers
"""

import argparse

import common
import numpy as np


def narrow_cnn(width):
    """The seed CNN with ``width`` first-layer filters (32 = full width;
    8 = quarter, 4 = eighth)."""
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(width, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2), layers.BatchNormalization(momentum=0.9),
        layers.Conv2D(2 * width, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(32 * width, activation="relu"), layers.Dropout(0.4),
        layers.Dense(10)], name=f"seed_cnn_width{width}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-samples", type=int, default=None)
    ap.add_argument("--test-samples", type=int, default=None)
    ap.add_argument("--teacher-epochs", type=int, default=12)
    ap.add_argument("--student-epochs", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--student-samples", type=int, default=6000,
                    help="train the students (hard-label and distilled "
                         "alike) on the first N training images only (0: "
                         "all); the teacher uses all")
    ap.add_argument("--widths", default="4,8",
                    help="students' first-layer filters (teacher: 32)")
    # T=2, alpha=0.5 won the sweep --configs 2:0.5,4:0.1,4:0.5,8:0.5
    ap.add_argument("--configs", default="2:0.5",
                    help="distillation settings T:alpha, comma-separated")
    ap.add_argument("--name", default="distill",
                    help="results file benchmarks/results/<name>.json")
    ap.add_argument("--teacher-cache", default=None,
                    help="folder: reuse the trained teacher saved there by "
                         "an earlier run with the same data and epochs")
    args = ap.parse_args()
    import os

    import keras
    from tfcompress.distill import Distiller
    from tfcompress.models import seed_cnn
    data = common.fashion_mnist(args.train_samples, args.test_samples)
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    cached = args.teacher_cache and os.path.join(
        args.teacher_cache, f"teacher_{len(x)}x{args.teacher_epochs}.keras")
    if cached and os.path.exists(cached):
        teacher = keras.models.load_model(cached)
    else:
        teacher = common.train(seed_cnn(), data, args.teacher_epochs)
        if cached:
            os.makedirs(args.teacher_cache, exist_ok=True)
            teacher.save(cached + ".tmp.keras")
            os.replace(cached + ".tmp.keras", cached)
    teacher_acc = common.keras_accuracy(teacher, data)
    if args.student_samples:
        x, y = x[:args.student_samples], y[:args.student_samples]
        data = ((x, y), data[1])
    teacher_logits = teacher.predict(x, batch_size=500, verbose=0)
    configs = [tuple(float(v) for v in c.split(":"))
               for c in args.configs.split(",")]
    students = {}
    for width in [int(w) for w in args.widths.split(",")]:
        hard, soft = [], {c: [] for c in configs}
        for seed in range(args.seeds):
            keras.utils.set_random_seed(100 + seed)
            s = common.train(narrow_cnn(width), data, args.student_epochs)
            hard.append(common.keras_accuracy(s, data))
            for t, alpha in configs:
                keras.utils.set_random_seed(100 + seed)
                d = Distiller(narrow_cnn(width), None, t, alpha)
                d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
                d.fit(x, (y, teacher_logits), epochs=args.student_epochs,
                      batch_size=128, verbose=0)
                soft[(t, alpha)].append(common.keras_accuracy(d.student,
                                                              data))
                print(f"width {width} seed {seed}: hard {hard[-1]:.4f}, "
                      f"T={t:g} alpha={alpha:g} distilled "
                      f"{soft[(t, alpha)][-1]:.4f}", flush=True)
        row = {"params": int(narrow_cnn(width).count_params()),
               "hard_label_students": hard,
               "hard_mean": float(np.mean(hard)),
               "hard_std": float(np.std(hard)), "distilled": {}}
        for (t, alpha), accs in soft.items():
            row["distilled"][f"T={t:g},alpha={alpha:g}"] = {
                "students": accs, "mean": float(np.mean(accs)),
                "std": float(np.std(accs)),
                "wins_over_hard": int(sum(b > a for a, b in zip(hard,
                                                                accs)))}
        students[f"width{width}"] = row
    common.save(args.name, {
        "args": vars(args), "teacher_accuracy": teacher_acc,
        "teacher_params": int(teacher.count_params()),
        "students": students})

if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
