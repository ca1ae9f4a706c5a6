"""Distillation: a quarter-width seed CNN trained from a full seed CNN
teacher vs the same student trained on hard labels alone, over 3 seeds,
same data and epochs. The teacher's logits are computed once and passed
as ``y=(labels, teacher_logits)`` (the Distiller's precomputed mode).

    .venv/bin/python benchmarks/distill.py                  # full Fashion-MNIST
    .venv/bin/python benchmarks/distill.py --train-samples 12000 --teacher-epochs 3
"""

import argparse

import common
import numpy as np


def quarter_cnn():
    import keras
    from keras import layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(8, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2), layers.BatchNormalization(momentum=0.9),
        layers.Conv2D(16, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2), layers.Flatten(),
        layers.Dense(256, activation="relu"), layers.Dropout(0.4),
        layers.Dense(10)], name="seed_cnn_quarter")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-samples", type=int, default=None)
    ap.add_argument("--test-samples", type=int, default=None)
    ap.add_argument("--teacher-epochs", type=int, default=6)
    ap.add_argument("--student-epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.1)
    args = ap.parse_args()
    import keras
    from tfcompress.distill import Distiller
    from tfcompress.models import seed_cnn
    data = common.fashion_mnist(args.train_samples, args.test_samples)
    (x, y), _ = data
    keras.utils.set_random_seed(0)
    teacher = common.train(seed_cnn(), data, args.teacher_epochs)
    teacher_acc = common.keras_accuracy(teacher, data)
    teacher_logits = teacher.predict(x, batch_size=500, verbose=0)
    hard, soft = [], []
    for seed in range(args.seeds):
        keras.utils.set_random_seed(100 + seed)
        s = common.train(quarter_cnn(), data, args.student_epochs)
        hard.append(common.keras_accuracy(s, data))
        keras.utils.set_random_seed(100 + seed)
        d = Distiller(quarter_cnn(), None, args.temperature, args.alpha)
        d.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        d.fit(x, (y, teacher_logits), epochs=args.student_epochs,
              batch_size=128, verbose=0)
        soft.append(common.keras_accuracy(d.student, data))
        print(f"seed {seed}: hard {hard[-1]:.4f}, distilled {soft[-1]:.4f}",
              flush=True)
    common.save("distill", {
        "args": vars(args), "teacher_accuracy": teacher_acc,
        "teacher_params": int(teacher.count_params()),
        "student_params": int(quarter_cnn().count_params()),
        "hard_label_students": hard, "distilled_students": soft,
        "hard_mean": float(np.mean(hard)), "hard_std": float(np.std(hard)),
        "distilled_mean": float(np.mean(soft)),
        "distilled_std": float(np.std(soft))})


if __name__ == "__main__":
    main()
