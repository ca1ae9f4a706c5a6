"""``prune_low_magnitude``: add pruning wrappers to a layer or a model."""

from __future__ import annotations

from typing import Iterable, Optional

import keras

from tfcompress.errors import InputError
from tfcompress.prune import prunable, schedules
from tfcompress.prune.wrapper import PruneLowMagnitude, check_options
from tfcompress.utils.training_wrappers import training_wrapper
from tfcompress.utils.arguments import layer_names
from tfcompress.utils.layer_map import (is_container, iter_layers,
                                        keep_output_names, map_layers,
                                        nested_models, with_nested_layers)

DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def prune_low_magnitude(to_prune, pruning_schedule=None, block_size=(1, 1),
                        sparsity_m_by_n=None, global_pruning=False,
                        min_density=0.01,
                        include: Optional[Iterable[str]] = None,
                        exclude: Optional[Iterable[str]] = None,
                        pruning_policy=None, block_pooling_type="AVG",
                        **layer_kwargs):
    """Wraps a layer, a list of layers, or every prunable layer of a
    model, for pruning.

    Works on a single layer, Sequential and Functional models, and models
    nested inside them. Layers tfcompress cannot prune are left dense and
    listed by :func:`tfcompress.prune.summary`.

    Args:
      to_prune: a ``keras.layers.Layer``, a list of layers (a list of
        wrappers is returned) or a Sequential/Functional model.
      pruning_schedule: a :class:`PruningSchedule` (default: constant 50%).
      block_size: ``(rows, cols)`` block sparsity, e.g. ``(1, 4)``.
        Layers whose kernel one block would span (nothing to prune) are
        left dense (reported by ``summary``) unless named in ``include``,
        which raises an error for them.
      block_pooling_type: a block's score, ``"AVG"`` (mean ``|w|``, as
        tfmot's default) or ``"MAX"`` (largest ``|w|``).
      sparsity_m_by_n: ``(m, n)`` structured sparsity as tfmot's: m
        zeros in every n weights along the input channels, e.g. ``(2,
        4)``. Layers whose input channels are not a multiple of n are
        left dense (reported by ``summary``) unless
        named in ``include``, which raises an error for them.
      global_pruning: rank weights across all pruned layers together
        (single weights: not with ``block_size`` or ``sparsity_m_by_n``).
      min_density: with ``global_pruning``, the least fraction each layer
        keeps.
      include: names of the only layers to prune (each must be prunable:
        naming an unsupported layer raises an error). The name of a
        nested model, in ``include`` or ``exclude``, stands for its
        layers.
      exclude: names of layers to leave dense. Depthwise convolutions are
        left dense unless named in ``include`` (9 weights per channel, each
        critical; tfmot does the same).
      pruning_policy: optional object with tfmot's ``PruningPolicy``
        methods: ``ensure_model_supports_pruning(model)`` (raise if the
        model cannot be pruned under the policy) and ``allow_pruning(layer)``
        (False leaves the layer dense). Only for models.

    Returns:
      The wrapper (for a layer) or a new model with wrapped layers.
      Train it with ``callbacks=[UpdatePruningStep()]``.

    Example:

    >>> import keras
    >>> from tfcompress.prune import PolynomialDecay, prune_low_magnitude
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> pruned = prune_low_magnitude(
    ...     model, PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100))
    >>> type(pruned.layers[0]).__name__
    'PruneLowMagnitude'
    """
    # checked before any layer is wrapped: a model may have no layer the
    # options apply to, and N:M is looked at before wrapping
    block_size, sparsity_m_by_n, global_pruning, min_density = \
        check_options(block_size, sparsity_m_by_n, global_pruning,
                      min_density)
    kwargs = dict(pruning_schedule=pruning_schedule or
                  schedules.ConstantSparsity(0.5, 0),
                  block_size=block_size, sparsity_m_by_n=sparsity_m_by_n,
                  block_pooling_type=block_pooling_type,
                  global_pruning=global_pruning, min_density=min_density)
    if isinstance(to_prune, (list, tuple)):
        if not all(isinstance(l, keras.layers.Layer) and
                   not isinstance(l, keras.Model) for l in to_prune):
            raise InputError("prune_low_magnitude takes a list of Keras "
                             "layers (not models); wrap a model on its own")
        return [PruneLowMagnitude(l, **kwargs, **layer_kwargs)
                for l in to_prune]
    if isinstance(to_prune, keras.layers.Layer) and not isinstance(
            to_prune, keras.Model):
        return PruneLowMagnitude(to_prune, **kwargs, **layer_kwargs)
    if layer_kwargs:
        raise InputError(
            f"prune_low_magnitude: {sorted(layer_kwargs)} apply to the "
            "wrapper of a single layer; leave them out for a model")
    if not isinstance(to_prune, keras.Model):
        raise InputError(f"prune_low_magnitude takes a Keras layer or model, "
                         f"got {type(to_prune).__name__}")
    if not is_container(to_prune):
        raise InputError(
            f"{to_prune.name} is a subclassed model; tfcompress cannot "
            "rebuild it. Wrap its prunable layers inside the subclass with "
            "prune_low_magnitude(layer, ...) instead, or build the model as "
            "Sequential/Functional.")
    if not to_prune.built:
        raise InputError(f"model {to_prune.name} is not built; call it on "
                         "data or give it an Input first")
    _refuse_clustered_or_qat(to_prune)
    if pruning_policy is not None:
        _check_policy(pruning_policy)
        pruning_policy.ensure_model_supports_pruning(to_prune)
    # one name on its own, include="fc1", is that name (set("fc1") would
    # be its letters)
    include = layer_names(include, "include", "prune_low_magnitude")
    exclude = layer_names(exclude, "exclude", "prune_low_magnitude") or set()
    names = {l.name: l for l in iter_layers(to_prune)}
    nested = {m.name: m for m in nested_models(to_prune)}
    for option, given in (("include", include), ("exclude", exclude)):
        unknown = (given or set()) - set(names) - set(nested)
        if unknown:
            known = sorted(names)
            shown = ", ".join(known[:12]) + (
                f", ... ({len(known)} in all; see model.summary())"
                if len(known) > 12 else "")
            raise InputError(
                f"{option} names layers not in the model: {sorted(unknown)}; "
                f"its layers are {shown}")
    # layers named themselves: checked, and pruned even if depthwise or
    # not fit for N:M (which raises)
    named = {n for n in include or () if n in names}
    for name in named:
        if not prunable.is_prunable(names[name]):
            raise InputError(prunable.unsupported_message(names[name]))
    # a nested model's name stands for its layers (exclude=[base.name]
    # keeps a frozen base dense); its layers are pruned as by default
    include = with_nested_layers(include, nested)
    exclude = with_nested_layers(exclude, nested)

    def wrap(layer):
        if isinstance(layer, PruneLowMagnitude):
            raise InputError(f"layer {layer.name} is already pruned; strip "
                             "it with strip_pruning() first")
        if layer.name in exclude:
            return layer
        if include is not None and layer.name not in include:
            return layer
        if not prunable.is_prunable(layer):
            return layer
        if layer.name not in named and isinstance(layer, DEPTHWISE):
            # few weights per channel, each critical (tfmot leaves them
            # dense too): pruned only when named in ``include``
            return layer
        if pruning_policy is not None and not pruning_policy.allow_pruning(
                layer):
            return layer
        if not layer.built:
            return layer
        if (sparsity_m_by_n is not None and layer.name not in named and not
                prunable.supports_n_of_m(layer, sparsity_m_by_n[1])):
            return layer  # e.g. a first conv with 1 input channel
        if layer.name not in named and not prunable.supports_block(
                layer, kwargs["block_size"]):
            return layer  # one block would span the kernel: left dense
        return PruneLowMagnitude(layer, **kwargs)

    return keep_output_names(map_layers(to_prune, wrap), to_prune)


def _check_policy(policy):
    """A policy object with tfmot's two methods, else an InputError."""
    if isinstance(policy, type):
        raise InputError(f"pruning_policy takes a policy object, got the "
                         f"class {policy.__name__}; write "
                         f"pruning_policy={policy.__name__}()")
    if not all(callable(getattr(policy, method, None)) for method in (
            "allow_pruning", "ensure_model_supports_pruning")):
        raise InputError(f"pruning_policy must be a PruningPolicy such as "
                         f"prune.PruneForLatencyOnXNNPack(), got "
                         f"{type(policy).__name__}")


def prune_scope():
    """Makes tfcompress's pruning classes known when loading ``.keras``
    files, with tfmot's name. They are registered serializables already,
    so this scope is only for code written for tfmot:

    >>> with prune_scope():
    ...     pass
    """
    return keras.saving.custom_object_scope({
        "PruneLowMagnitude": PruneLowMagnitude,
        "ConstantSparsity": schedules.ConstantSparsity,
        "PolynomialDecay": schedules.PolynomialDecay})


def _refuse_clustered_or_qat(model):
    """InputError for a model with clustering wrappers or QAT layers:
    their layers are not prunable, so pruning would wrap nothing."""
    found = training_wrapper(model, ("clustering", "qat"))
    if found is None:
        return
    kind, layer = found
    if kind == "clustering":
        raise InputError(
            f"prune_low_magnitude: layer {layer.name!r} is wrapped for "
            "clustering; prune the float model first and cluster the "
            "stripped result with preserve_sparsity=True, or call "
            "tfcompress.cluster.strip_clustering(model) first")
    raise InputError(
        f"prune_low_magnitude: model {model.name!r} is "
        f"quantization-aware (layer {layer.name!r} is a QAT layer); "
        "prune the float model, strip it, then quantize with "
        "PrunePreservingScheme()")
