"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization"): each weight is rounded up or down, chosen
layer by layer to reproduce the layer's float output on representative
data (no labels), instead of to nearest.

For each Conv2D, DepthwiseConv2D and Dense (batch norms folded first, in
topological order) a continuous variable ``V`` per weight is learned: the
soft weight is ``s * clip(floor(w / s) + h(V), -q, q)`` with ``h`` the
rectified sigmoid, trained with Adam to minimise the squared difference
between the layer's output (through its ReLU, if any) on the inputs the
already-rounded layers before it produce and the float layer's output on
float inputs, plus a regulariser that pushes ``h`` to 0 or 1 (its
exponent annealed from 20 to 2). The final kernel is
``s * clip(floor(w / s) + (V >= 0), -q, q)``: exactly on the grid the
converter uses (``s = max|w| / q`` per output channel or per tensor,
``q = 2**(bits-1) - 1``; each channel's largest weight keeps its nearest
value so the converter finds the same ``s``).

8-bit: ``convert(adarounded, "int8", ...)`` (with ``per_channel`` matching)
reproduces the rounded integers bit for bit. 4-bit: the float kernels sit
on the 4-bit grid, but post-training conversion would store them as int8;
:func:`for_conversion` wraps the model in 4-bit fake-quant layers
(``quantize_model(model, NBitScheme(bits, 8))``, activation ranges
calibrated on data) that reproduce the same grid, so
``convert(for_conversion(m, x), "int8")`` writes packed INT4 weights with
the AdaRound integers. Dense kernels are per-tensor in that path (as the
fake-quant layers write them); ``adaround(bits=4)`` rounds them per tensor
accordingly.

>>> import keras, numpy as np
>>> m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
>>> x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
>>> r = adaround(m, x, bits=4, iterations=50)
>>> k = r.get_layer("fc").kernel.numpy()
>>> s = np.abs(k).max() / 7
>>> bool(np.allclose(k / s, np.round(k / s), atol=1e-4))
True
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfcompress.errors import InputError
from tfcompress.ptq import grid
from tfcompress.ptq import layers as lyr
from tfcompress.ptq.bias_correction import weight_layers
from tfcompress.ptq.fold import fold_batchnorm
from tfcompress.ptq.samples import as_inputs
from tfcompress.quantize.bit_widths import check_bits
from tfcompress.utils.arguments import check_counts
from tfcompress.utils.graph import consumers, node_graph, output_keys

ZETA, GAMMA = 1.1, -0.1


def _following_activation(model):
    """Layer name -> ``relu``/``relu6``/``linear``: what is applied to its
    output (its own activation, or a ReLU after it, through identities)."""
    nodes = node_graph(model)
    by_key = {n.key: n for n in nodes}
    readers = consumers(nodes)
    outputs = set(output_keys(model))
    found = {}
    for node in nodes:
        if not (node.is_layer and lyr.is_weight_layer(node.op)):
            continue
        act = lyr.activation_name(node.op) or "linear"
        cur = node
        while act == "linear" and cur.key not in outputs and \
                len(readers.get(cur.key, [])) == 1:
            cur = by_key[readers[cur.key][0]]
            if not cur.is_layer:
                break
            name = lyr.activation_name(cur.op) if isinstance(
                cur.op, (keras.layers.ReLU, keras.layers.Activation,
                         keras.layers.Identity)) else None
            if name is None:
                break
            act = name
        found[node.op.name] = act
    return found


def _rectified_sigmoid(v):
    return tf.clip_by_value(tf.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def round_layer(layer, kernel, bias, x_in, target, bits, per_channel, act,
                iterations=500, batch_size=32, reg_weight=0.01,
                learning_rate=1e-2, warmup=0.2, seed=0):
    """The AdaRound integers of one layer's ``kernel`` (int32, same shape)
    and the grid scale; ``x_in`` the layer's inputs, ``target`` the float
    outputs (after ``act``) to reproduce."""
    depthwise = lyr.is_depthwise(layer)
    q = grid.qmax(bits)
    scale = grid.grid_scale(kernel, bits, per_channel, depthwise)
    scaled = kernel.astype(np.float64) / scale
    floor = np.floor(scaled)
    rest = scaled - floor
    v0 = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
    v = tf.Variable(v0.astype(np.float32))
    floor_t = tf.constant(floor.astype(np.float32))
    scale_t = tf.constant(scale.astype(np.float32))
    bias_t = tf.constant(bias)
    m = tf.Variable(tf.zeros_like(v))
    u = tf.Variable(tf.zeros_like(v))
    t = tf.Variable(0.0)

    @tf.function
    def step(xb, yb, beta, lam):
        with tf.GradientTape() as tape:
            h = _rectified_sigmoid(v)
            w = scale_t * tf.clip_by_value(floor_t + h, -q, q)
            y = lyr.apply_activation(act, lyr.preactivation(layer, xb, w,
                                                            bias_t))
            rec = tf.reduce_mean(tf.reduce_sum(tf.square(y - yb), -1))
            reg = tf.reduce_sum(1.0 - tf.pow(tf.abs(2.0 * h - 1.0), beta))
            loss = rec + lam * reg
        g = tape.gradient(loss, v)
        t.assign_add(1.0)
        m.assign(0.9 * m + 0.1 * g)
        u.assign(0.999 * u + 0.001 * g * g)
        mhat = m / (1.0 - tf.pow(0.9, t))
        uhat = u / (1.0 - tf.pow(0.999, t))
        v.assign_sub(learning_rate * mhat / (tf.sqrt(uhat) + 1e-8))
        return loss

    rng = np.random.default_rng(seed)
    n = len(x_in)
    start = int(warmup * iterations)
    for it in range(iterations):
        idx = rng.choice(n, min(batch_size, n), replace=False)
        if it < start:
            beta, lam = 20.0, 0.0
        else:
            frac = (it - start) / max(1, iterations - start)
            beta, lam = 20.0 + (2.0 - 20.0) * frac, reg_weight
        step(tf.constant(x_in[idx]), tf.constant(target[idx]),
             tf.constant(beta, tf.float32), tf.constant(lam, tf.float32))
    ints = floor + (v.numpy() >= 0)
    # each range-setting weight keeps its nearest value (+-q), so the
    # converter computes the same scale
    pinned = np.isclose(np.abs(scaled), q, rtol=0, atol=1e-3)
    ints = np.where(pinned, np.sign(scaled) * q, ints)
    return np.clip(ints, -q, q).astype(np.int32), scale


def adaround(model, data, bits: int = 8, per_channel: bool = True,
             iterations: int = 500, batch_size: int = 32,
             samples: int = 256, reg_weight: float = 0.01,
             learning_rate: float = 1e-2, seed: int = 0):
    """A new model whose Conv2D/DepthwiseConv2D/Dense kernels are the
    AdaRound-rounded values on the ``bits``-bit grid.

    Args:
      model: a Sequential or Functional Keras 3 model (not changed); batch
        norms are folded first.
      data: representative inputs (array ``(n, ...)`` or ``(x, y)``; no
        labels needed); the first ``samples`` are used.
      bits: 8 (convert as usual) or 2-7 (convert through
        :func:`for_conversion`).
      per_channel: per-channel grids (must match the conversion).
      iterations: optimisation steps per layer (the paper uses 10000;
        a few hundred already gain most of it on small models).

    Returns:
      The rounded model (float kernels exactly on the grid).

    Each kernel lands on the 4-bit grid (15 levels; Dense per tensor),
    some weights rounded away from their nearest level:

    >>> import keras
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([
    ...     keras.Input((8,)),
    ...     keras.layers.Dense(16, activation="relu", name="fc1"),
    ...     keras.layers.Dense(3, name="fc2")])
    >>> x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    >>> rounded = adaround(model, x, bits=4, iterations=50)
    >>> w = model.get_layer("fc1").kernel.numpy()
    >>> k = rounded.get_layer("fc1").kernel.numpy()
    >>> step = np.abs(w).max() / 7
    >>> bool(np.allclose(k / step, np.round(k / step), atol=1e-4))
    True
    >>> int(np.unique(np.round(k / step)).size) <= 15
    True
    >>> bool((np.round(k / step) != np.round(w / step)).any())
    True
    """
    model = lyr.flat_model(model, "adaround")
    check_counts("adaround", optional=("samples",), samples=samples,
                 batch_size=batch_size, iterations=iterations)
    bits = check_bits(bits, "adaround: bits")
    base = fold_batchnorm(model)
    x = as_inputs(data, base, "adaround", limit=samples)
    acts = _following_activation(base)
    rounded = lyr.copy_model(base)
    weights = {}
    for k, layer in enumerate(weight_layers(base)):
        rlayer = rounded.get_layer(layer.name)
        kernel, bias = lyr.kernel_and_bias(layer)
        act = acts.get(layer.name, "linear")
        x_float = lyr.batched(lyr.feature_model(base, layer), x)
        x_rounded = lyr.batched(lyr.feature_model(rounded, rlayer), x)
        target = lyr.batched(lambda xb: lyr.apply_activation(
            act, lyr.preactivation(layer, xb, kernel, bias)), x_float)
        ints, scale = round_layer(
            layer, kernel, bias, x_rounded, target, bits,
            grid.layer_per_channel(layer, bits, per_channel), act,
            iterations, batch_size, reg_weight, learning_rate,
            seed=seed + k)
        new_kernel = (ints * scale).astype(np.float32)
        rlayer.kernel.assign(new_kernel)
        weights[layer.name] = (new_kernel, bias)
    return lyr.with_weights(base, weights)


def for_conversion(model, data, bits: int = 4, per_channel: bool = True,
                   samples: int = 256):
    """``model`` (e.g. an :func:`adaround` result) ready for
    ``convert(..., "int8")`` with ``bits``-bit weights.

    For ``bits < 8`` the model is wrapped in fake-quant layers
    (``quantize_model(model, NBitScheme(bits, 8, per_channel=...))``)
    whose weight grid is the one :func:`adaround` rounded to, so the
    kernels pass through unchanged and the converter stores them as packed
    INT4 (for 4 bits); activation ranges are the min/max over ``data``
    (dropout disabled). For ``bits == 8`` a copy of the model is returned:
    post-training int8 conversion already uses the grid.

    >>> from tfcompress.convert import convert       # doctest: +SKIP
    >>> rounded = adaround(model, x, bits=4)          # doctest: +SKIP
    >>> convert(for_conversion(rounded, x), "int8")   # doctest: +SKIP
    """
    model = lyr.flat_model(model, "for_conversion")
    check_counts("for_conversion", optional=("samples",), samples=samples)
    bits = check_bits(bits, "for_conversion: bits")
    if bits == 8:
        return lyr.copy_model(model)
    from tfcompress.quantize import NBitScheme, quantize_model
    x = as_inputs(data, model, "for_conversion", limit=samples)
    no_dropout = lyr.with_weights(model, {}, overrides={
        l.name: {"rate": 0.0} for l in model.layers
        if isinstance(l, (keras.layers.Dropout, keras.layers.SpatialDropout2D))})
    qat = quantize_model(no_dropout, NBitScheme(bits, 8,
                                                per_channel=per_channel))
    qat(x, training=True)       # the first call sets each range to min/max
    return qat
