"""Feature-based distillation: match intermediate layers of the student to
the teacher's through learned 1x1 projections (Romero et al. 2015,
"FitNets"; the seed article's "transferring intermediate
representations")."""

from __future__ import annotations

import keras

from tfcompress import compat
from tfcompress.errors import InputError
from tfcompress.utils.layer_map import is_container


def _find(model, name):
    """The layer called ``name`` in ``model``, else in the models it nests
    (a keras.applications base used as a layer); None when there is none."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if is_container(layer):
            found = _find(layer, name)
            if found is not None:
                return found
    return None


def _layer(model, name, role):
    layer = _find(model, name)
    if layer is None:
        raise InputError(f"{role} has no layer named {name!r}, nested "
                         f"models included; feature_pairs take (student "
                         f"layer, teacher layer) names")
    return layer


def _outputs(model, layers):
    """``model``'s first output and the outputs of ``layers``, symbolic
    tensors connected to ``model.inputs``.

    A layer the model calls directly gives its output in the model's
    graph. A layer inside a nested model, or a nested model itself, has
    its outputs in that model's own graph, so the graph is run again on
    ``model.inputs`` with the same layers (shared, not copied) and their
    outputs there are taken."""
    top = {id(layer) for layer in model.layers if not is_container(layer)}
    if all(id(layer) in top for layer in layers):
        return model.outputs[0], [layer.output for layer in layers]
    wanted, found = {id(layer) for layer in layers}, {}

    def call(layer, *args, **kwargs):
        out = run(layer, *args) if is_container(layer) else \
            layer(*args, **kwargs)
        if id(layer) in wanted:
            found.setdefault(id(layer), out)
        return out

    def run(container, *args):
        inputs = args[0] if len(args) == 1 else list(args)
        if isinstance(container, keras.Sequential):
            for inner in container.layers:
                inputs = call(inner, inputs)
            return inputs
        if isinstance(inputs, list) and \
                not isinstance(container.input, (list, tuple)):
            inputs = inputs[0]
        return compat.run_functional_graph(container, inputs,
                                           lambda layer: layer, call)
    outputs = run(model, *model.inputs)
    return keras.tree.flatten(outputs)[0], [found[id(layer)]
                                            for layer in layers]


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
    s_logits, s_outs = _outputs(student, [
        _layer(student, s_name, "the student") for s_name, _ in pairs])
    t_logits, t_outs = _outputs(teacher, [
        _layer(teacher, t_name, "the teacher") for _, t_name in pairs])
    projections = []
    for (s_name, t_name), s_out, t_out in zip(pairs, s_outs, t_outs):
        s_shape, t_shape = tuple(s_out.shape), tuple(t_out.shape)
        if len(s_shape) != len(t_shape) or s_shape[1:-1] != t_shape[1:-1]:
            raise InputError(
                f"student layer {s_name!r} outputs {s_shape} and teacher "
                f"layer {t_name!r} outputs {t_shape}: the shapes must match "
                "except in channels; pair layers of the same resolution")
        proj = _projection(s_shape, t_shape, f"project_{s_name}")
        proj.build(s_shape)
        projections.append(proj)
    student_f = keras.Model(student.inputs, [s_logits, *s_outs])
    teacher_f = keras.Model(teacher.inputs, [t_logits, *t_outs])
    return student_f, teacher_f, projections
