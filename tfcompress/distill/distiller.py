"""Knowledge distillation (Hinton et al. 2015) on ``keras.distillation``.

The loss is ``alpha * CE(labels, student) + (1 - alpha) * T^2 *
KL(softmax(teacher / T) || softmax(student / T))``; the teacher is frozen.
The soft term is computed by ``keras.distillation.LogitsDistillation``
(with a ``KLDivergence`` instance), so for a live teacher the loss equals
``keras.distillation.Distiller``'s with ``student_loss_weight=alpha``.

What this class adds to ``keras.distillation.Distiller``:

- **precomputed teacher logits**: ``teacher=None`` and
  ``fit(x, (labels, teacher_logits))``; the teacher is never run while
  the student trains.
- **feature matching across widths**: ``feature_pairs`` match a student
  layer to a teacher layer with more channels through a learned 1x1
  projection (``keras.distillation.FeatureDistillation`` needs equal
  shapes), and the student runs once per step.
- ``save`` writes the student, the model you deploy.

With ``feature_pairs``, ``feature_weight * MSE(projection(student layer),
teacher layer)`` is added for each pair (the projections are owned by the
distiller, not part of the student). ``evaluate``/``predict`` use the
student.

>>> import keras, numpy as np
>>> from tfcompress.distill import Distiller
>>> x = np.random.rand(64, 8).astype("float32"); y = np.arange(64) % 3
>>> teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
>>> student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
>>> distiller = Distiller(student, teacher, temperature=4.0, alpha=0.1)
>>> distiller.compile(optimizer="adam", metrics=["accuracy"])
>>> _ = distiller.fit(x, y, epochs=1, verbose=0)
>>> cached = Distiller(student, None, temperature=4.0, alpha=0.1)
>>> cached.compile(optimizer="adam")
>>> _ = cached.fit(x, (y, teacher.predict(x, verbose=0)), epochs=1, verbose=0)
"""

from __future__ import annotations

import keras
from keras import ops

from tfcompress.errors import InputError
from tfcompress.utils.arguments import is_number


def logits_distillation(temperature):
    """``keras.distillation.LogitsDistillation`` computing
    ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``.

    Keras 3.15's default ``loss="kl_divergence"`` resolves to the
    ``kl_divergence`` function, not a ``KLDivergence`` instance, so
    ``LogitsDistillation(T)`` skips the softmax and the ``T^2`` factor and
    compares clipped raw logits; passing the instance gives the textbook
    loss.

    >>> import numpy as np
    >>> loss = logits_distillation(2.0)
    >>> float(loss.compute_loss(np.zeros((1, 3)), np.zeros((1, 3))))
    0.0
    """
    return keras.distillation.LogitsDistillation(
        temperature=temperature, loss=keras.losses.KLDivergence())


def _logits(probabilities):
    """Logits of softmax ``probabilities`` (up to a per-row constant)."""
    return ops.log(ops.maximum(probabilities, 1e-30))


class Distiller(keras.Model):
    """Trains ``student`` to match ``teacher``'s softened outputs.

    Args:
      student, teacher: Keras models with the same output shape: logits,
        or probabilities from a final softmax (keras.applications' default
        ``classifier_activation``), whose log is used as the logits.
        ``teacher`` may be None when the teacher's logits are precomputed:
        then pass ``y=(labels, teacher_logits)`` to ``fit``.
      temperature: softening temperature T > 0.
      alpha: weight of the hard-label loss, in [0, 1] (Keras's
        ``student_loss_weight``).
      feature_pairs: ``[(student_layer_name, teacher_layer_name), ...]``
        intermediate outputs to match (same shape except channels;
        Functional/Sequential models, layers of nested models included;
        needs ``teacher``).
      feature_weight: weight of each feature-matching term.

    A student with a quarter of the teacher's hidden units, matched on
    logits and on the hidden layer through a learned projection:

    >>> import numpy as np
    >>> keras.utils.set_random_seed(0)
    >>> x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    >>> y = np.arange(64) % 3
    >>> teacher = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu", name="t_hidden"),
    ...     keras.layers.Dense(3)])
    >>> student = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(4, activation="relu", name="s_hidden"),
    ...     keras.layers.Dense(3)])
    >>> before = teacher.get_weights()
    >>> distiller = Distiller(student, teacher, temperature=4.0, alpha=0.1,
    ...                       feature_pairs=[("s_hidden", "t_hidden")])
    >>> distiller.compile(optimizer=keras.optimizers.Adam(0.05))
    >>> losses = distiller.fit(x, y, epochs=5, batch_size=32,
    ...                        verbose=0).history["loss"]
    >>> losses[-1] < losses[0]
    True
    >>> [p.name for p in distiller.projections]
    ['project_s_hidden']
    >>> all(np.array_equal(a, b)  # the teacher stays frozen
    ...     for a, b in zip(before, teacher.get_weights()))
    True
    >>> distiller.predict(x[:2], verbose=0).shape  # runs the student
    (2, 3)
    """

    def __init__(self, student, teacher=None, temperature=3.0, alpha=0.1,
                 feature_pairs=(), feature_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if not is_number(temperature) or not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}; "
                             "typical values are 2 to 5")
        if not is_number(alpha) or not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {alpha}; it is "
                             "the weight of the hard-label loss")
        if teacher is not None:
            s, t = tuple(student.output_shape), tuple(teacher.output_shape)
            if s != t:
                raise InputError(f"teacher output shape {t} differs from "
                                 f"student output shape {s}; both must "
                                 "output the same logits")
            teacher.trainable = False
        self.student, self.teacher = student, teacher
        # a model ending in a softmax (keras.applications' default) gives
        # probabilities; their log is its logits up to a constant, which
        # the softmax of the soft term ignores
        from tfcompress.utils.outputs import gives_probabilities
        self._student_probabilities = gives_probabilities(student)
        self._teacher_probabilities = (teacher is not None and
                                       gives_probabilities(teacher))
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.logits_distillation = logits_distillation(self.temperature)
        self.feature_pairs = [tuple(p) for p in feature_pairs]
        self.feature_weight = float(feature_weight)
        # a Loss instance, not "mse" (a plain function): like the other
        # terms it is divided by the number of replicas, so the replicas'
        # gradients sum to the single-device gradient
        self.feature_distillation = keras.distillation.FeatureDistillation(
            loss=keras.losses.MeanSquaredError())
        self._features = None
        if self.feature_pairs:
            if teacher is None:
                raise InputError("feature_pairs need the teacher model; "
                                 "precomputed logits carry no features, so "
                                 "pass the teacher or drop feature_pairs")
            from tfcompress.distill.features import feature_models
            (self._student_features, self._teacher_features,
             self.projections) = feature_models(student, teacher,
                                                self.feature_pairs)

    def compile(self, optimizer="adam", metrics=None, loss=None, **kwargs):
        """Like ``keras.Model.compile``; ``loss`` is the hard-label loss
        (default: sparse categorical cross-entropy on the student's logits,
        or on its probabilities when it ends in a softmax)."""
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.hard_loss = keras.losses.get(loss) if loss is not None else (
            keras.losses.SparseCategoricalCrossentropy(
                from_logits=not self._student_probabilities))

    def call(self, x, training=None):
        if not self.feature_pairs:
            return self.student(x, training=training)
        logits, *features = self._student_features(x, training=training)
        self._features = features     # read by compute_loss in this step
        return logits

    def _labels_and_teacher(self, x, y):
        if self.teacher is None:
            if not isinstance(y, (tuple, list)) or len(y) != 2:
                raise InputError("a Distiller without a teacher needs "
                                 "y=(labels, teacher_logits) in fit/evaluate")
            labels, teacher_logits = y
            return labels, teacher_logits, []
        if self.feature_pairs:
            teacher_logits, *features = self._teacher_features(
                x, training=False)
            return y, teacher_logits, features
        return y, self.teacher(x, training=False), []

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        labels, teacher_logits, teacher_features = self._labels_and_teacher(
            x, y)
        hard = self.hard_loss(labels, y_pred)
        if self._teacher_probabilities:
            teacher_logits = _logits(teacher_logits)
        soft = self.logits_distillation.compute_loss(
            ops.stop_gradient(teacher_logits),
            _logits(y_pred) if self._student_probabilities else y_pred)
        loss = self.alpha * hard + (1 - self.alpha) * soft
        for proj, s_f, t_f in zip(getattr(self, "projections", ()),
                                  self._features or (), teacher_features):
            loss = loss + self.feature_weight * (
                self.feature_distillation.compute_loss(
                    ops.stop_gradient(t_f), proj(s_f)))
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = y[0] if self.teacher is None and isinstance(
            y, (tuple, list)) else y
        return super().compute_metrics(x, labels, y_pred, sample_weight)

    def save(self, filepath, *args, **kwargs):
        """Saves the student (the model you deploy), atomically: an
        interrupted save leaves no partial file."""
        import os
        from tfcompress.utils import atomic_path
        filepath = os.fspath(filepath)
        with atomic_path(filepath,
                         suffix=os.path.splitext(filepath)[1]) as tmp:
            self.student.save(tmp, *args, **kwargs)
