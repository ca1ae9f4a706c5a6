"""Which TFLite ops get packed INT4 weights, and does LiteRT run them?

For each op a one-layer model with 4-bit fake-quantized weights (8-bit
activations) is converted to int8 TFLite; the table gives the weight
tensor's type in the flatbuffer (read by ``tfcompress.inspect``), the op
and its version, and whether LiteRT runs it with XNNPACK (and whether
XNNPACK takes the op) and with the built-in kernels alone, with the
largest output difference from Keras in output quantization steps. The
last column is what ``quantize_model`` does when asked for 4 bits.

    .venv/bin/python benchmarks/int4_ops.py

Writes benchmarks/results/int4_ops.json and int4_ops.md.
"""

import argparse
import re

import common

CASES = ["FULLY_CONNECTED (Dense)", "CONV_2D (Conv2D)",
         "DEPTHWISE_CONV_2D (DepthwiseConv2D)",
         "TRANSPOSE_CONV (Conv2DTranspose)", "Dense on 3-D input",
         "EinsumDense abc,cd->abd", "EinsumDense abc,bcd->abd",
         "Embedding", "Conv1D", "SeparableConv2D", "SeparableConv1D"]


def _layers():
    """Fake-quant weight layers the QAT transform has no rule for
    (EinsumDense, Embedding): 4-bit per-tensor weights, 8-bit output."""
    import keras
    import tensorflow as tf
    from tfcompress.quantize import fake_quant as fq

    class QuantEinsum(keras.layers.Layer):
        def __init__(self, bits, equation, **kw):
            super().__init__(**kw)
            self.bits, self.equation = bits, equation

        def build(self, shape):
            kshape = (shape[-1], 8) if self.equation.endswith(
                ",cd->abd") else (shape[-2], shape[-1], 8)
            self.kernel = self.add_weight(shape=kshape,
                                          initializer="glorot_uniform")
            self.lo = self.add_weight(shape=(), initializer="zeros",
                                      trainable=False)
            self.hi = self.add_weight(shape=(), initializer="zeros",
                                      trainable=False)

        def call(self, x):
            k = fq.quantize_weights(self.kernel, self.bits, False)
            y = tf.einsum(self.equation, x, k)
            return fq.quantize_activations(y, self.lo, self.hi)

    class QuantEmbedding(keras.layers.Layer):
        def __init__(self, bits, **kw):
            super().__init__(**kw)
            self.bits = bits

        def build(self, shape):
            self.table = self.add_weight(shape=(32, 8),
                                         initializer="uniform")
            self.lo = self.add_weight(shape=(), initializer="zeros",
                                      trainable=False)
            self.hi = self.add_weight(shape=(), initializer="zeros",
                                      trainable=False)

        def call(self, ids):
            t = fq.quantize_weights(self.table, self.bits, False)
            y = tf.gather(t, tf.cast(ids, tf.int32))
            return fq.quantize_activations(y, self.lo, self.hi)
    return QuantEinsum, QuantEmbedding


def build(case, bits):
    """(model, inputs, quantize_model's bits for the layer or None)."""
    import keras
    import numpy as np
    from keras import layers as L
    from tfcompress.quantize import QuantizeFused, QuantizeOutput
    from tfcompress.quantize.bit_widths import weight_bits_for
    rng = np.random.default_rng(0)
    QuantEinsum, QuantEmbedding = _layers()
    keras_layer = {
        CASES[0]: (lambda: L.Dense(8), (16,)),
        CASES[1]: (lambda: L.Conv2D(8, 3), (8, 8, 4)),
        CASES[2]: (lambda: L.DepthwiseConv2D(3), (8, 8, 4)),
        CASES[3]: (lambda: L.Conv2DTranspose(8, 3), (4, 4, 4)),
        CASES[4]: (lambda: L.Dense(8), (6, 16)),
        "Conv1D": (lambda: L.Conv1D(8, 3), (16, 4)),
        "SeparableConv2D": (lambda: L.SeparableConv2D(8, 3), (8, 8, 4)),
        "SeparableConv1D": (lambda: L.SeparableConv1D(8, 3), (16, 4)),
    }
    if case in keras_layer:
        make, shape = keras_layer[case]
        layer = make()
        inp = keras.Input(shape)
        x = QuantizeOutput(None, name="quant_input")(inp)
        # the layer built directly at ``bits``: what the converter does
        out = QuantizeFused(layer, weight_bits=bits, name="weights")(x)
        data = rng.normal(size=(16,) + shape).astype("float32")
        chosen = weight_bits_for(layer, bits)[0]
    elif case.startswith("EinsumDense"):
        inp = keras.Input((6, 16))
        x = QuantizeOutput(None, name="quant_input")(inp)
        out = QuantEinsum(bits, case.split()[1], name="weights")(x)
        data = rng.normal(size=(16, 6, 16)).astype("float32")
        chosen = None
    else:
        inp = keras.Input((5,), dtype="int32")
        out = QuantEmbedding(bits, name="weights")(inp)
        data = rng.integers(0, 32, (16, 5)).astype("int32")
        chosen = None
    model = keras.Model(inp, out)
    _calibrate(model, data)
    return model, data, chosen


def _calibrate(model, data):
    import numpy as np
    from tfcompress.quantize import QuantizeFused, QuantizeOutput
    model(data, training=True)
    ref = np.asarray(model(data))
    for layer in model.layers:     # the hand-made layers: range of Keras
        if hasattr(layer, "lo") and not isinstance(
                layer, (QuantizeFused, QuantizeOutput)):
            layer.lo.assign(min(0.0, float(ref.min()) * 1.5 - 1))
            layer.hi.assign(max(0.0, float(ref.max()) * 1.5 + 1))


WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D",
              "TRANSPOSE_CONV", "BATCH_MATMUL", "GATHER", "EMBEDDING_LOOKUP")


def _delegation(interp):
    """{op: True if XNNPACK took it} for the ops with weights: a delegate
    node lists the weight tensors of the ops it took among its inputs."""
    from tfcompress.bench.delegation import interpreter_nodes
    nodes = interpreter_nodes(interp)
    taken = set()
    for d in nodes:
        if d["op_name"] == "DELEGATE":
            taken.update(int(i) for i in d["inputs"])
    # the weight is GATHER's first input, every other op's second
    return {d["op_name"]: int(d["inputs"][0 if d["op_name"] == "GATHER"
                                         else 1]) in taken
            for d in nodes if d["op_name"] in WEIGHT_OPS}


def _convert(model, data):
    """int8 conversion; a model with integer input (Embedding) through
    the TFLite converter itself (tfcompress.convert calibrates float
    inputs only; the fake-quant ranges need no calibration)."""
    from tfcompress.convert import convert
    if data.dtype.kind == "f":
        return convert(model, "int8", representative_data=data,
                       strict=False).tflite_bytes
    import tensorflow as tf
    fn = tf.function(lambda x: model(x)).get_concrete_function(
        tf.TensorSpec((1,) + data.shape[1:], tf.as_dtype(data.dtype)))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    return conv.convert()


def run_litert(tflite, data, xnnpack):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kw = {} if xnnpack else {"experimental_op_resolver_type":
                             OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    try:
        interp = Interpreter(model_content=tflite, **kw)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        out = interp.get_output_details()[0]
        ys = []
        for sample in data:
            interp.set_tensor(inp["index"],
                              sample[None].astype(inp["dtype"]))
            interp.invoke()
            ys.append(interp.get_tensor(out["index"])[0])
        return np.stack(ys), _delegation(interp), None
    except Exception as e:  # noqa: BLE001 - the error is the measurement
        return None, None, " ".join(str(e).split())[:160]


def measure(case, bits):
    import numpy as np
    from tfcompress.inspect import inspect
    model, data, chosen = build(case, bits)
    ref = np.asarray(model(data))
    row = {"case": case, "bits": bits, "quantize_model_bits": chosen}
    try:
        tflite = _convert(model, data)
    except Exception as e:  # noqa: BLE001 - the error is the measurement
        text = " ".join(str(e.__cause__ or e).split())   # in full
        # the converter's message: "'tfl.<op>' op <what is wrong>"
        msg = re.search(r"'tfl?\.\w+' op .*?(?= <unknown>| main\(\)|$)",
                        text)
        row["conversion"] = "fails: " + (msg.group(0) if msg
                                         else text)[:240]
        return row
    rep = inspect(tflite)
    weights = [w for w in rep["weights"] if len(w["shape"]) >= 2]
    row["conversion"] = "ok"
    row["weight_dtype"] = ("/".join(sorted({w["dtype"] for w in weights}))
                           if weights else None)
    row["weight_bytes"] = sum(w["bytes"] for w in weights) or None
    row["weight_params"] = sum(w["params"] for w in weights) or None
    row["distinct_values"] = (weights[0]["distinct_values"] if weights
                              else None)
    row["ops"] = {o: v for o, v in rep["op_versions"].items()
                  if o not in ("QUANTIZE", "DEQUANTIZE")}
    row["float_ops"] = [f["op"] for f in rep["float_ops"]]
    step = float(rep["outputs"][0]["scale"] or 0) or \
        float(np.ptp(ref)) / 255
    for name, xnn in (("xnnpack", True), ("builtin", False)):
        got, ops, err = run_litert(tflite, data, xnn)
        if err:
            row[name] = {"runs": False, "error": err}
            continue
        diff = float(np.abs(got.reshape(ref.shape) - ref).max())
        row[name] = {"runs": True, "max_diff_steps": round(diff / step, 2)}
        if xnn:
            row[name]["delegated"] = ops
    return row


def _cell_run(r):
    if not r:
        return "-"
    if not r["runs"]:
        return f"fails ({r['error'][:60]})"
    txt = f"yes, max diff {r['max_diff_steps']} steps"
    for op, taken in (r.get("delegated") or {}).items():
        txt += f"; XNNPACK {'runs' if taken else 'declines'} {op}"
    return txt


def markdown(rows):
    lines = ["| op (Keras layer) | weights in flatbuffer | op version | "
             "LiteRT 2.3 + XNNPACK | LiteRT 2.3 built-in | quantize_model "
             "at 4 bits |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r["conversion"] != "ok":
            lines.append(f"| {r['case']} | conversion fails: "
                         f"{r['conversion'][7:90]} | - | - | - | "
                         f"{_chosen(r)} |")
            continue
        dtype = (f"{r['weight_dtype']} ({r['weight_bytes']} B for "
                 f"{r['weight_params']} weights)" if r["weight_dtype"]
                 else "no constant weight tensor")
        ops = ", ".join(f"{o} v{v}" for o, v in r["ops"].items())
        lines.append(f"| {r['case']} | {dtype} | {ops} | "
                     f"{_cell_run(r.get('xnnpack'))} | "
                     f"{_cell_run(r.get('builtin'))} | {_chosen(r)} |")
    return "\n".join(lines) + "\n"


def _chosen(r):
    b = r["quantize_model_bits"]
    if b is None:
        return "no QAT rule for this layer"
    return f"{b}-bit" + (" (kept, noted in summary)" if b != r["bits"]
                         else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bits", type=int, default=4)
    args = ap.parse_args()
    import ai_edge_litert
    import tensorflow as tf
    rows = []
    for case in CASES:
        rows.append(measure(case, args.bits))
        print(rows[-1], flush=True)
    md = (f"Weights fake-quantized to {args.bits} bits, 8-bit activations, "
          f"TF {tf.__version__} converter (int8), LiteRT "
          f"{getattr(ai_edge_litert, '__version__', '?')}; diff = largest "
          "|TFLite - Keras| output difference in output quantization "
          "steps over 16 inputs.\n\n" + markdown(rows))
    common.save("int4_ops", {"bits": args.bits, "tensorflow": tf.__version__,
                             "rows": rows})
    common.save_markdown("int4_ops", md)
    print(md)


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
