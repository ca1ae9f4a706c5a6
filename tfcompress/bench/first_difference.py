"""Where do two runtimes' outputs of one flatbuffer first part?

When arm64 and x86 outputs differ by more than a quantization step, the
final outputs do not say which kernel rounded differently: a one-step
difference deep in the network grows through the ops after it. This
module makes a copy of the model whose every op output is also a graph
output (:func:`with_every_output`; a delegate such as XNNPACK then writes
out what it computes inside its partition), and, given that copy's
outputs from two runtimes (``runner.every_output``), finds the ops whose
inputs were equal for an input but whose outputs were not: where a
difference starts rather than where it is passed on
(:func:`fresh_differences`).

>>> import numpy as np
>>> graph = {"inputs": [0], "operators": [
...     {"opcode": 0, "inputs": [0], "outputs": [1]},
...     {"opcode": 1, "inputs": [1, 9], "outputs": [2]}],
...     "tensors": [{"name": n} for n in "xyz"]}
>>> a = {"t0": np.zeros((2, 3)), "t1": np.array([[0, 0, 0], [0, 1, 0]]),
...      "t2": np.array([[5, 5, 5], [5, 7, 5]])}
>>> b = {"t0": np.zeros((2, 3)), "t1": np.zeros((2, 3)),
...      "t2": np.array([[5, 5, 5], [5, 5, 5]])}
>>> fresh_differences(graph, ["CONV_2D", "MUL"], a, b)
[{'op_index': 0, 'op': 'CONV_2D', 'tensor': 'y', 'images': 1, 'elements': 1, 'max_steps': 1}]
"""

from __future__ import annotations

import os

import numpy as np

from tfcompress import compat
from tfcompress.bench import runner
from tfcompress.inspect.model_reader import read_model
from tfcompress.utils.atomic import atomic_write_bytes


def with_every_output(tflite_bytes: bytes) -> bytes:
    """A copy of the flatbuffer whose first subgraph also outputs every
    op's output tensors, after its own outputs (which keep their order).

    The kernels are the same; XNNPACK still takes the ops in as many
    partitions. Compare the copy's first outputs with the original's to
    be sure it computes the same.
    """
    model = compat.read_tflite_object(tflite_bytes)
    graph = model.subgraphs[0]
    outputs = [int(t) for t in graph.outputs]
    seen = set(outputs)
    for op in graph.operators:
        for t in op.outputs:
            if int(t) >= 0 and int(t) not in seen:
                outputs.append(int(t))
                seen.add(int(t))
    graph.outputs = np.asarray(outputs, np.int32)
    return compat.write_tflite_object(model, len(tflite_bytes) + 4096)


class EveryOutputCopy:
    """One flatbuffer's every-output copy (:func:`with_every_output`),
    written once into ``folder``, and its outputs on ``data`` computed
    once per runtime on this machine: a model's traces on several arm64
    runtimes all compare with the same x86 dump.

    Attributes: ``path`` (the copy), ``model`` (the original, as
    :func:`tfcompress.inspect.model_reader.read_model` reads it).
    """

    def __init__(self, path, data, folder):
        with open(path, "rb") as f:
            raw = f.read()
        self.model = read_model(raw)
        stem = os.path.splitext(os.path.basename(path))[0]
        self.path = os.path.join(folder, f"{stem}.every_output.tflite")
        atomic_write_bytes(self.path, with_every_output(raw))
        self.data = data
        self._dumps = {}

    def dump(self, runtime="ai_edge_litert"):
        """The copy's outputs with ``runtime`` here (``runner.every_output``:
        ``{"t<tensor index>": (n, ...)}``), computed on the first call."""
        if runtime not in self._dumps:
            self._dumps[runtime] = runner.every_output(self.path, self.data,
                                                       runtime)
        return self._dumps[runtime]


def _per_image_equal(a, b, n):
    return np.all(np.asarray(a).reshape(n, -1) ==
                  np.asarray(b).reshape(n, -1), axis=1)


def fresh_differences(graph, op_names, a, b):
    """The ops of ``graph`` (a :func:`tfcompress.inspect.model_reader.
    read_model` subgraph) whose output differs between the dumps ``a``
    and ``b`` (``{"t<index>": (n, ...)}``) for an input on which every
    dumped input of the op is equal, in execution order: per op its index,
    type (``op_names[opcode]``), output tensor name, how many inputs
    (``images``) and output ``elements`` differ, and the largest
    difference in integer steps. Constant inputs are not dumped, and are
    the same bytes in both runs."""
    n = len(next(iter(a.values())))
    rows = []
    for index, op in enumerate(graph["operators"]):
        same = np.ones(n, bool)
        for t in op["inputs"]:
            key = f"t{t}"
            if t >= 0 and key in a and key in b:
                same &= _per_image_equal(a[key], b[key], n)
        for t in op["outputs"]:
            key = f"t{t}"
            if key not in a or key not in b:
                continue
            x = np.asarray(a[key]).reshape(n, -1)[same]
            y = np.asarray(b[key]).reshape(n, -1)[same]
            differs = x != y
            if not differs.any():
                continue
            steps = np.abs(x.astype(np.float64) - y.astype(np.float64))
            rows.append({"op_index": index,
                         "op": op_names[op["opcode"]],
                         "tensor": graph["tensors"][t]["name"],
                         "images": int(differs.any(axis=1).sum()),
                         "elements": int(differs.sum()),
                         "max_steps": float(steps.max()) if np.issubdtype(
                             x.dtype, np.floating) else int(steps.max())})
    return rows


def describe(row) -> str:
    """One line for a :func:`fresh_differences` row.

    >>> describe({"op_index": 122, "op": "MUL", "tensor": "se/Mul",
    ...           "images": 9, "elements": 9, "max_steps": 1})
    'op 122 MUL (se/Mul): 9 element(s) in 9 input(s), at most 1 step(s)'
    """
    return (f"op {row['op_index']} {row['op']} ({row['tensor']}): "
            f"{row['elements']} element(s) in {row['images']} input(s), at "
            f"most {row['max_steps']} step(s)")
