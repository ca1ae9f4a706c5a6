"""The bias scale a TFLite kernel assumes.

A quantized CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED or TRANSPOSE_CONV
adds its integer bias to the integer sums of input x weights without
rescaling it: the bias must be stored at input scale x weight scale (per
output channel). A flatbuffer whose bias is stored at another scale
runs, and every output of that op is off.

A zero bias reads as zero at any scale, so only channels with a bias
other than zero count.

>>> import numpy as np
>>> bias = {"name": "bias", "dtype": "INT32", "shape": [2], "buffer": 1,
...         "sparse": False, "quantization": {"scale": [0.05, 0.04]}}
>>> model = {"opcodes": [{"name": "CONV_2D"}], "subgraphs": [{
...     "tensors": [{"quantization": {"scale": [0.5]}},
...                 {"quantization": {"scale": [0.1, 0.2]}}, bias],
...     "operators": [{"opcode": 0, "inputs": [0, 1, 2]}]}],
...     "buffers": [b"", np.array([3, -5], "<i4").tobytes()]}
>>> bias_scale_mismatches(model)
[{'op': 0, 'name': 'CONV_2D', 'ratio': 0.4, 'weights': ''}]
>>> model["buffers"][1] = np.array([3, 0], "<i4").tobytes()
>>> bias_scale_mismatches(model)
[]
"""

from __future__ import annotations

from tfcompress.inspect.model_reader import tensor_values

# op name -> positions of (input, weights, bias) among its inputs
WEIGHTED_OPS = {"CONV_2D": (0, 1, 2), "DEPTHWISE_CONV_2D": (0, 1, 2),
                "FULLY_CONNECTED": (0, 1, 2), "TRANSPOSE_CONV": (2, 1, 3)}


# what a mismatch means and the way out, after "op #k OP (layer L): "
BIAS_SCALE_NOTE = (
    "its bias is stored at {ratio}x the input scale x weight scale its "
    "kernel assumes, as the TFLite converter wrote it: every output of "
    "this op is off. Convert with mode int8, or keep the layer float with "
    "float_layers.")

# the integer biases of quantized kernels
BIAS_TYPES = ("INT32", "INT64")


def _scales(tensors, index):
    if index < 0 or index >= len(tensors):
        return None
    q = tensors[index].get("quantization")
    return list(q["scale"]) if q and q.get("scale") else None


def bias_scale_mismatches(model: dict, tolerance: float = 1e-3) -> list:
    """The weighted ops of the first subgraph of ``model`` (as
    :func:`tfcompress.inspect.model_reader.read_model` returns it) whose
    quantized bias is not stored at input scale x weight scale: ``[{"op":
    index, "name": op, "ratio": bias scale / that product, the furthest
    from 1 of its channels with a bias other than zero, "weights": the
    name of its weight tensor, which names the layer a fused activation
    hides}]``. Ops with a float or no bias are left out.
    """
    graph = model["subgraphs"][0]
    tensors = graph["tensors"]
    found = []
    for k, op in enumerate(graph["operators"]):
        name = model["opcodes"][op["opcode"]]["name"]
        positions = WEIGHTED_OPS.get(name)
        if positions is None or len(op["inputs"]) <= max(positions):
            continue
        inp, weights, bias = (_scales(tensors, op["inputs"][p])
                              for p in positions)
        if not (inp and weights and bias):
            continue
        bias_tensor = tensors[op["inputs"][positions[2]]]
        values = tensor_values(bias_tensor, model["buffers"]) \
            if bias_tensor["dtype"] in BIAS_TYPES else None
        if values is None or len(values) != len(bias):
            continue
        if len(weights) == 1:
            weights = weights * len(bias)
        if len(weights) != len(bias):
            continue
        ratios = [b / (inp[0] * w) for b, w, v in zip(bias, weights, values)
                  if inp[0] * w > 0 and v != 0]
        worst = max(ratios, key=lambda r: abs(r - 1.0), default=1.0)
        if abs(worst - 1.0) > tolerance:
            found.append({"op": k, "name": name, "ratio": round(worst, 4),
                          "weights": tensors[op["inputs"][positions[1]]]
                          .get("name", "")})
    return found
