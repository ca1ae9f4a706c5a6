"""Walk the graph of a Sequential or Functional Keras model.

Two views of the same graph, both in topological order:

- :func:`layer_graph`: ``[(operation, [parent names])]``, one entry per
  operation (layers and ``keras.ops`` calls such as ``x + 3.0``).
- :func:`node_graph`: one :class:`Node` per call of an operation, so a
  layer called twice (shared) appears twice; each node knows its parents,
  their shapes and the constants it was called with.

>>> import keras
>>> i = keras.Input((4,), name="x")
>>> h = keras.layers.Dense(4, name="fc")(i)
>>> m = keras.Model(i, keras.layers.ReLU(name="act")(h * 2.0))
>>> nodes = node_graph(m)
>>> nodes[1].key, nodes[1].parents
('fc', ['x'])
>>> nodes[2].parents, nodes[2].constants, nodes[3].key
(['fc'], [2.0], 'act')
"""

from __future__ import annotations

import dataclasses

import keras

from tfcompress import compat
from tfcompress.errors import InputError

# parent name of the first layer of a Sequential model (it has no Input)
SEQUENTIAL_INPUT = "__sequential_input__"
_SEQUENTIAL_INPUT = SEQUENTIAL_INPUT   # name used before this module
# stands for a tensor argument in ``Node.call_args``
TENSOR = "__tensor__"


@dataclasses.dataclass
class Node:
    """One call of an operation in a model graph.

    ``key`` is the operation's name for its first call and ``name#i`` for
    its i-th; ``parents`` are the keys of the nodes whose outputs it reads,
    ``parent_shapes`` their shapes, ``constants`` the non-tensor positional
    arguments (``3.0`` in ``x + 3.0``), ``calls`` how many times the
    operation is called in the model, ``call_args`` all positional
    arguments (tensors as :data:`TENSOR`), ``call_kwargs`` the keyword
    arguments as serialized in the model config.
    """
    op: object
    key: str
    parents: list
    parent_shapes: list
    constants: list
    calls: int = 1
    call_args: list = dataclasses.field(default_factory=list)
    call_kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def is_layer(self) -> bool:
        return isinstance(self.op, keras.layers.Layer)


def node_key(name: str, node_index: int) -> str:
    return name if not node_index else f"{name}#{node_index}"


def _tensor_refs(node_config):
    """``(keras_history, shape)`` of every tensor argument, in order, the
    positional arguments that are plain numbers, and all positional
    arguments (tensors as :data:`TENSOR`)."""
    refs, constants, call_args = [], [], []

    def walk(value, top):
        if isinstance(value, dict):
            if value.get("class_name") == "__keras_tensor__":
                cfg = value["config"]
                refs.append((cfg["keras_history"], cfg.get("shape")))
            else:
                for v in value.values():
                    walk(v, False)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, False)
        elif top and isinstance(value, (int, float)) and \
                not isinstance(value, bool):
            constants.append(value)

    if isinstance(node_config, dict):
        for arg in node_config.get("args", []):
            before = len(refs)
            walk(arg, True)
            call_args.append(TENSOR if len(refs) > before else arg)
        walk(node_config.get("kwargs", {}), False)
    else:                      # older list format
        walk(node_config, False)
    return refs, constants, call_args


def operations_by_name(model) -> dict:
    """Name -> operation for every layer and op of a Functional model."""
    ops = getattr(model, "operations", None) or model.layers
    return {op.name: op for op in ops}


def node_graph(model) -> list:
    """The :class:`Node` list of ``model`` in topological order."""
    if isinstance(model, keras.Sequential):
        nodes, prev = [], SEQUENTIAL_INPUT
        shape = list(model.inputs[0].shape) if model.inputs else None
        for layer in model.layers:
            nodes.append(Node(layer, layer.name, [prev], [shape], [],
                              call_args=[TENSOR]))
            prev = layer.name
            shape = list(layer.output.shape) if layer.built else None
        return nodes
    by_name = operations_by_name(model)
    nodes = []
    for entry in model.get_config()["layers"]:
        name = entry.get("name", entry["config"].get("name"))
        op = by_name[name]
        inbound = entry.get("inbound_nodes", [])
        if not inbound:
            nodes.append(Node(op, name, [], [], []))
            continue
        for index, call in enumerate(inbound):
            refs, constants, call_args = _tensor_refs(call)
            nodes.append(Node(
                op, node_key(name, index),
                [node_key(h[0], h[1]) for h, _ in refs],
                [s for _, s in refs], constants, calls=len(inbound),
                call_args=call_args,
                call_kwargs=dict(call.get("kwargs") or {})
                if isinstance(call, dict) else {}))
    return nodes


def output_keys(model) -> list:
    """Node keys whose outputs are outputs of ``model``."""
    if isinstance(model, keras.Sequential):
        return [model.layers[-1].name]
    keys = []
    for tensor in model.outputs:
        op, node_index, _ = compat.keras_history(tensor)
        keys.append(node_key(op.name, node_index))
    return keys


def consumers(nodes) -> dict:
    """Node key -> keys of the nodes reading its output (with repeats)."""
    found = {}
    for node in nodes:
        for p in node.parents:
            found.setdefault(p, []).append(node.key)
    return found


def layer_graph(model):
    """``[(operation, [parent names])]`` in topological order.

    Operations are layers or ``keras.ops`` calls of a Functional model.

    Raises:
      InputError: when a layer is called more than once (shared layers);
        use :func:`node_graph` to see every call.
    """
    out = []
    for node in node_graph(model):
        if node.calls > 1:
            raise InputError(
                f"layer {node.op.name!r} is shared (called {node.calls} "
                "times); this transform needs each layer used once")
        out.append((node.op, [p.split("#")[0] for p in node.parents]))
    return out
