"""Knowledge distillation (Hinton et al. 2015) as a Keras 3 model.

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 *
KL(softmax(teacher / T) || softmax(student / T))``; the teacher is frozen.
With ``feature_pairs``, ``feature_weight * MSE(projection(student layer),
teacher layer)`` is added for each pair (the projections are learned 1x1
maps owned by the distiller, not part of the student).
``evaluate``/``predict`` use the student, and ``save`` writes the student.

>>> distiller = Distiller(student, teacher, temperature=4.0, alpha=0.1)  # doctest: +SKIP
>>> distiller.compile(optimizer="adam", metrics=["accuracy"])         # doctest: +SKIP
>>> distiller.fit(x, y, epochs=3)                                       # doctest: +SKIP
"""

from __future__ import annotations

import keras
from keras import ops

from tfcompress.errors import InputError


class Distiller(keras.Model):
    """Trains ``student`` to match ``teacher``'s softened outputs.

    Args:
      student, teacher: Keras models with the same output shape (logits).
        ``teacher`` may be None when the teacher's logits are precomputed:
        then pass ``y=(labels, teacher_logits)`` to ``fit``.
      temperature: softening temperature T > 0.
      alpha: weight of the hard-label loss, in [0, 1].
      feature_pairs: ``[(student_layer_name, teacher_layer_name), ...]``
        intermediate outputs to match (same shape except channels;
        Functional/Sequential models; needs ``teacher``).
      feature_weight: weight of each feature-matching term.
    """

    def __init__(self, student, teacher=None, temperature=3.0, alpha=0.1,
                 feature_pairs=(), feature_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {alpha}")
        if teacher is not None:
            s, t = tuple(student.output_shape), tuple(teacher.output_shape)
            if s != t:
                raise InputError(f"teacher output shape {t} differs from "
                                 f"student output shape {s}; both must "
                                 "output the same logits")
            teacher.trainable = False
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.feature_pairs = [tuple(p) for p in feature_pairs]
        self.feature_weight = float(feature_weight)
        self._features = None
        if self.feature_pairs:
            if teacher is None:
                raise InputError("feature_pairs need the teacher model; "
                                 "precomputed logits carry no features")
            from tfcompress.distill.features import feature_models
            (self._student_features, self._teacher_features,
             self.projections) = feature_models(student, teacher,
                                                self.feature_pairs)

    def compile(self, optimizer="adam", metrics=None, **kwargs):
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.hard_loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)
        self.soft_loss = keras.losses.KLDivergence()

    def call(self, x, training=None):
        if not self.feature_pairs:
            return self.student(x, training=training)
        logits, *features = self._student_features(x, training=training)
        self._features = features     # read by compute_loss in this step
        return logits

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        if self.teacher is None:
            labels, teacher_logits = y
        elif self.feature_pairs:
            labels = y
            teacher_logits, *teacher_features = self._teacher_features(
                x, training=False)
        else:
            labels = y
            teacher_logits = self.teacher(x, training=False)
        t = self.temperature
        hard = self.hard_loss(labels, y_pred)
        soft = self.soft_loss(ops.softmax(teacher_logits / t, axis=-1),
                              ops.softmax(y_pred / t, axis=-1)) * t * t
        loss = self.alpha * hard + (1 - self.alpha) * soft
        if self.feature_pairs:
            for proj, s_f, t_f in zip(self.projections, self._features,
                                      teacher_features):
                diff = proj(s_f) - ops.stop_gradient(t_f)
                loss = loss + self.feature_weight * ops.mean(diff * diff)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = y[0] if self.teacher is None and isinstance(
            y, (tuple, list)) else y
        return super().compute_metrics(x, labels, y_pred, sample_weight)

    def save(self, filepath, *args, **kwargs):
        """Saves the student (the model you deploy)."""
        return self.student.save(filepath, *args, **kwargs)
