"""Activation range selection for post-training int8 calibration.

The TFLite converter calibrates with min/max. tfcompress can instead pick
each activation's range by percentile or by KL divergence (entropy, as in
TensorRT's calibrator): it lets the converter record min/max, runs the
float model on the same data to collect every activation, chooses new
ranges, writes them into the calibrated model and then quantizes it.

>>> import numpy as np
>>> x = np.concatenate([np.random.default_rng(0).normal(size=10000), [80.0]])
>>> lo, hi = percentile_range(x, 99.99)
>>> hi < 80.0
True
"""

from __future__ import annotations

import warnings

import numpy as np

from tfcompress.convert.options import CALIBRATIONS as METHODS
from tfcompress.errors import InputError


def percentile_range(values, percentile=99.99):
    """Range covering ``percentile`` % of values on each side.

    The range always includes 0 (int8 must represent it exactly), and a
    rare outlier is clipped instead of stretching the int8 scale:

    >>> import numpy as np
    >>> x = np.maximum(np.random.default_rng(0).normal(size=10000), 0.0)
    >>> x[0] = 50.0                       # one outlier in ReLU outputs
    >>> lo, hi = percentile_range(x, 99.9)
    >>> lo, round(hi, 2)
    (0.0, 3.01)
    """
    v = np.asarray(values, np.float64).ravel()
    lo = float(np.percentile(v, 100 - percentile))
    hi = float(np.percentile(v, percentile))
    return min(lo, 0.0), max(hi, 0.0)


def _kl(p, q):
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def entropy_range(values, bins=512, target_bins=128):
    """Range whose int8 quantization loses least information (min KL).

    Builds a histogram of ``|x|``, and for each candidate threshold
    compares the clipped distribution with its ``target_bins``-level
    quantization; returns the threshold with the smallest divergence.

    >>> import numpy as np
    >>> x = np.maximum(np.random.default_rng(0).normal(size=10000), 0.0)
    >>> x[0] = 50.0                       # one outlier in ReLU outputs
    >>> lo, hi = entropy_range(x)
    >>> lo, bool(3.0 < hi < 50.0)         # clipped, but less than 99.9 %
    (0.0, True)
    >>> entropy_range(np.zeros(5))
    (0.0, 0.0)
    """
    v = np.asarray(values, np.float64).ravel()
    lo_obs, hi_obs = float(v.min()), float(v.max())
    amax = max(abs(lo_obs), abs(hi_obs))
    if amax == 0:
        return 0.0, 0.0
    # Exact zeros (half of every ReLU output) are representable exactly;
    # leaving them out keeps the spike at 0 from dominating the divergence.
    mags = np.abs(v[v != 0])
    if mags.size == 0:
        return min(lo_obs, 0.0), max(hi_obs, 0.0)
    hist, edges = np.histogram(mags, bins=bins, range=(0, amax))
    hist = hist.astype(np.float64)
    best, best_i = np.inf, bins
    for i in range(target_bins, bins + 1, 4):
        ref = hist[:i]
        p = ref.copy()
        p[-1] += hist[i:].sum()          # clipped outliers land on the edge
        # quantize the unclipped histogram into target_bins levels, then
        # spread each level back evenly over its non-empty bins
        q = np.zeros(i)
        for c in np.array_split(np.arange(i), target_bins):
            nz = ref[c] > 0
            if nz.any():
                q[c[nz]] = ref[c].sum() / nz.sum()
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        pn, qn = p / ps, q / qs
        qn[(pn > 0) & (qn == 0)] = 1e-12
        d = _kl(pn, qn)
        if d < best:
            best, best_i = d, i
    threshold = float(edges[best_i]) if best_i < len(edges) else amax
    return min(max(lo_obs, -threshold), 0.0), max(min(hi_obs, threshold), 0.0)


def choose_range(values, method, percentile=99.99):
    """Range of ``values`` by ``method``: ``minmax``, ``percentile`` or
    ``entropy``.

    >>> import numpy as np
    >>> x = np.concatenate([np.random.default_rng(0).normal(size=10000),
    ...                     [80.0]])
    >>> for method in ("minmax", "percentile", "entropy"):
    ...     lo, hi = choose_range(x, method)
    ...     print(method, round(lo, 1), round(hi, 1))
    minmax -3.9 80.0
    percentile -3.8 3.5
    entropy -3.9 20.0
    """
    if method == "minmax":
        v = np.asarray(values)
        return float(min(v.min(), 0.0)), float(max(v.max(), 0.0))
    if method == "percentile":
        return percentile_range(values, percentile)
    if method == "entropy":
        return entropy_range(values)
    raise InputError(f"calibration must be one of {METHODS}, got {method!r}")


def activation_indices(model_bytes) -> set:
    """Indices of the tensors the ops of a TFLite model's main graph write
    (its activations; constant weights and the inputs are not among them).
    """
    from tfcompress import compat
    # the flatbuffer read in place: the weight buffers are not copied
    model = compat.tflite_schema().Model.GetRootAs(bytearray(model_bytes), 0)
    sub = model.Subgraphs(0)
    return {int(t) for i in range(sub.OperatorsLength())
            for t in sub.Operators(i).OutputsAsNumpy()}


def _quota(samples, max_values):
    """How many values of one tensor to keep per sample: ``max_values``
    spread over the samples when their number is known, else all."""
    try:
        n = len(samples)
    except TypeError:
        return None
    return max(1, -(-max_values // max(n, 1)))


def collect_activations(model_bytes, samples, max_values=200_000,
                        tensors=None):
    """Runs a float TFLite model; returns {tensor index: values}.

    Only activations are read (``tensors``, default every tensor an op
    writes): never the constant weights. Each sample contributes at most
    its share of ``max_values`` per tensor, drawn as it runs, so memory
    stays bounded by ``max_values`` per tensor whatever the number of
    samples, the input size or the model's size.
    """
    from ai_edge_litert.interpreter import Interpreter
    with warnings.catch_warnings():
        # every intermediate tensor is kept on purpose: they are what
        # calibration reads (LiteRT warns that it is for debugging)
        warnings.filterwarnings("ignore", message=".*preserve_all_tensors",
                                category=UserWarning)
        interp = Interpreter(model_content=model_bytes,
                             experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    wanted = activation_indices(model_bytes) if tensors is None \
        else set(tensors)
    details = [d for d in interp.get_tensor_details()
               if d["dtype"] == np.float32 and d["index"] in wanted]
    seen = {d["index"]: [] for d in details}
    quota = _quota(samples, max_values)
    rng = np.random.default_rng(0)
    for x in samples:
        interp.set_tensor(inp, np.asarray(x, np.float32)[None])
        interp.invoke()
        for d in details:
            try:
                v = interp.get_tensor(d["index"]).ravel()
            except ValueError:
                continue
            if quota is not None and v.size > quota:
                v = rng.choice(v, quota, replace=False)
            seen[d["index"]].append(v)
    out = {}
    for i, chunks in seen.items():
        if chunks:
            v = np.concatenate(chunks)
            if v.size > max_values:
                v = rng.choice(v, max_values, replace=False)
            out[i] = v
    return out


def recalibrate(calibrated_bytes, samples, method, percentile=99.99):
    """Rewrites activation min/max of a calibrated model by ``method``.

    Returns ``(new model bytes, {tensor name: (min, max)} changed)``.
    """
    from tfcompress import compat
    model = compat.read_tflite_object(calibrated_bytes)
    sub = model.subgraphs[0]
    # Inputs keep their range; outputs too: clipping logits would tie the
    # top classes and change the prediction.
    inputs = set(int(i) for i in sub.inputs) | set(int(i) for i in
                                                     sub.outputs)
    wanted = [idx for idx, tensor in enumerate(sub.tensors)
              if idx not in inputs and tensor.quantization is not None
              and tensor.quantization.min is not None]
    values = collect_activations(calibrated_bytes, samples, tensors=wanted)
    ranges = {}
    for idx, tensor in enumerate(sub.tensors):
        q = tensor.quantization
        if idx in inputs or q is None or q.min is None or q.max is None:
            continue
        if len(q.min) != 1 or idx not in values:
            continue
        lo, hi = choose_range(values[idx], method, percentile)
        if hi <= lo:
            continue
        q.min, q.max = [lo], [hi]
        name = tensor.name.decode() if isinstance(tensor.name, bytes) \
            else str(tensor.name)
        ranges[name] = (round(lo, 6), round(hi, 6))
    return compat.write_tflite_object(model), ranges
