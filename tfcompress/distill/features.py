"""Feature-based distillation: match intermediate layers of the student to
the teacher's through learned 1x1 projections (Romero et al. 2015,
"FitNets"; the seed article's "transferring intermediate
representations")."""

from __future__ import annotations

import keras

from tfcompress.errors import InputError


def _layer(model, name, role):
    try:
        return model.get_layer(name)
    except ValueError:
        raise InputError(f"{role} has no layer named {name!r}; "
                         f"feature_pairs take (student layer, teacher layer) "
                         f"names") from None


def _projection(student_shape, teacher_shape, name):
    """1x1 map from the student's channels to the teacher's."""
    units = int(teacher_shape[-1])
    rank = len(student_shape)
    if rank == 2:
        return keras.layers.Dense(units, use_bias=False, name=name)
    if rank == 3:
        return keras.layers.Conv1D(units, 1, use_bias=False, name=name)
    if rank == 4:
        return keras.layers.Conv2D(units, 1, use_bias=False, name=name)
    raise InputError(f"feature distillation supports rank 2-4 outputs, "
                     f"got rank {rank} for {name}; match a layer with a "
                     "2-D to 4-D output")


def feature_models(student, teacher, pairs):
    """Models returning ``[logits, *features]`` for student and teacher,
    and one projection layer per pair."""
    s_outs, t_outs, projections = [], [], []
    for s_name, t_name in pairs:
        s_layer = _layer(student, s_name, "the student")
        t_layer = _layer(teacher, t_name, "the teacher")
        s_shape = tuple(s_layer.output.shape)
        t_shape = tuple(t_layer.output.shape)
        if len(s_shape) != len(t_shape) or s_shape[1:-1] != t_shape[1:-1]:
            raise InputError(
                f"student layer {s_name!r} outputs {s_shape} and teacher "
                f"layer {t_name!r} outputs {t_shape}: the shapes must match "
                "except in channels; pair layers of the same resolution")
        s_outs.append(s_layer.output)
        t_outs.append(t_layer.output)
        proj = _projection(s_shape, t_shape, f"project_{s_name}")
        proj.build(s_shape)
        projections.append(proj)
    student_f = keras.Model(student.inputs, [student.outputs[0], *s_outs])
    teacher_f = keras.Model(teacher.inputs, [teacher.outputs[0], *t_outs])
    return student_f, teacher_f, projections
