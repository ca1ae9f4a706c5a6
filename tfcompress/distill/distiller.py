"""Knowledge distillation (Hinton et al. 2015) as a Keras 3 model.

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 *
KL(softmax(teacher / T) || softmax(student / T))``; the teacher is frozen.
``evaluate``/``predict`` use the student, and ``save`` writes the student.

>>> distiller = Distiller(student, teacher, temperature=4.0, alpha=0.1)  # doctest: +SKIP
>>> distiller.compile(optimizer="adam", metrics=["accuracy"])         # doctest: +SKIP
>>> distiller.fit(x, y, epochs=3)                                       # doctest: +SKIP
"""

from __future__ import annotations

import keras
from keras import ops


class Distiller(keras.Model):
    """Trains ``student`` to match ``teacher``'s softened outputs.

    Args:
      student, teacher: Keras models with the same output shape (logits).
        ``teacher`` may be None when the teacher's logits are precomputed:
        then pass ``y=(labels, teacher_logits)`` to ``fit``.
      temperature: softening temperature T > 0.
      alpha: weight of the hard-label loss, in [0, 1].
    """

    def __init__(self, student, teacher=None, temperature=3.0, alpha=0.1,
                 **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if teacher is not None:
            s, t = tuple(student.output_shape), tuple(teacher.output_shape)
            if s != t:
                raise ValueError(f"teacher output shape {t} differs from "
                                 f"student output shape {s}; both must "
                                 "output the same logits")
            teacher.trainable = False
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = float(temperature), float(alpha)

    def compile(self, optimizer="adam", metrics=None, **kwargs):
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.hard_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)
        self.soft_loss = keras.losses.KLDivergence()

    def call(self, x, training=None):
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        if self.teacher is None:
            labels, teacher_logits = y
        else:
            labels = y
            teacher_logits = self.teacher(x, training=False)
        t = self.temperature
        hard = self.hard_loss(labels, y_pred)
        soft = self.soft_loss(ops.softmax(teacher_logits / t, axis=-1),
                              ops.softmax(y_pred / t, axis=-1)) * t * t
        return self.alpha * hard + (1 - self.alpha) * soft

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = y[0] if self.teacher is None and isinstance(
            y, (tuple, list)) else y
        return super().compute_metrics(x, labels, y_pred, sample_weight)

    def save(self, filepath, *args, **kwargs):
        """Saves the student (the model you deploy)."""
        return self.student.save(filepath, *args, **kwargs)
