"""Op by op: how far each int8 tensor of a QAT model's flatbuffer is from
the Keras QAT model's output of the same op, in quantization steps.

Builds a benchmarks/zoo.py model (EfficientNetB0 by default, 32x32x3,
Fashion-MNIST pixels), quantizes it with ``tfcompress.quantize``, trains
the QAT model a few batches (so the ranges are realistic; the weights may
stay untrained), converts it to int8 and runs the flatbuffer on LiteRT's
built-in kernels with every intermediate tensor kept (XNNPACK would hide
them). Each int8 op output is matched to the Keras quantizer with the same
scale and shape and compared on the test images; the drift accumulates
from op to op, so the first op whose share of values one step off jumps is
the op the QAT model does not reproduce. Last, the logits of the flatbuffer
on LiteRT's default XNNPACK kernels against the Keras model.

    .venv/bin/python benchmarks/op_agreement.py
    .venv/bin/python benchmarks/op_agreement.py --model mobilenet_v2
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402,F401  (sys.path, TF log level)
import numpy as np  # noqa: E402
from tfcompress.bench.delegation import interpreter_nodes  # noqa: E402
import zoo  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0")
    p.add_argument("--train-samples", type=int, default=1024)
    p.add_argument("--test-samples", type=int, default=200)
    p.add_argument("--op-samples", type=int, default=50,
                   help="test images for the op-by-op comparison")
    p.add_argument("--float-epochs", type=int, default=0)
    p.add_argument("--qat-steps", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=32)
    return p.parse_args(argv)


def quantizer_outputs(q):
    """``[(layer name, scale, symbolic output)]`` of every layer of ``q``
    that fake-quantizes its output."""
    out = []
    for layer in q.layers:
        rng = getattr(layer, "range", None)
        if rng is None or not getattr(layer, "quantize_output", True):
            continue
        lo, hi = float(rng[0].numpy()), float(rng[1].numpy())
        bits = getattr(layer, "activation_bits", 8)
        out.append((layer.name, (hi - lo) / (2 ** bits - 1), layer.output))
    return out


def op_rows(q, tflite_bytes, x):
    """One row per int8 op output of the flatbuffer, in execution order."""
    import keras
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    quants = quantizer_outputs(q)
    probe = keras.Model(q.inputs, [t for _, _, t in quants])
    keras_out = [np.asarray(v) for v in probe.predict(x, verbose=0)]
    interp = Interpreter(
        model_content=tflite_bytes, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interpreter_nodes(interp)    # op order and types
    watched = [(op["op_name"], op["outputs"][0]) for op in ops
               if details[op["outputs"][0]]["dtype"] == np.int8]
    got = {i: [] for _, i in watched}
    for k in range(len(x)):
        interp.set_tensor(inp["index"], x[k:k + 1].astype(inp["dtype"]))
        interp.invoke()
        for _, i in watched:
            got[i].append(interp.get_tensor(i)[0].copy())
    rows = []
    for op_name, i in watched:
        d = details[i]
        scale, zp = d["quantization"]
        tfl = (np.asarray(got[i], np.float32) - zp) * scale
        # same scale and shape; the quantizer named in the tensor's name
        # first (every LOGISTIC has the scale 1/256)
        same = [(name, ref) for (name, s, _), ref in zip(quants, keras_out)
                if ref.shape[1:] == tfl.shape[1:] and
                abs(s - scale) <= 1e-5 * scale]
        named = [m for m in same if f"/{m[0]}_" in d["name"] or
                 f"/{m[0]}/" in d["name"]]
        match = (named or same or [None])[0]
        if match is None:
            rows.append((op_name, d["name"].split(";")[0][-60:], None))
            continue
        steps = np.abs(tfl - match[1]) / scale
        rows.append((op_name, match[0], {
            "mean": float(steps.mean()),
            "off": float(np.mean(steps > 0.5)),
            "off2": float(np.mean(steps > 1.5)),
            "max": float(steps.max())}))
    return rows


def main(argv=None):
    args = parse_args(argv)
    import keras
    from tfcompress.convert import convert
    from tfcompress.models import compile_classifier
    from tfcompress.quantize import quantize_model
    args.size = 32
    (xt, yt), (xv, yv) = zoo.load(args, args.model)
    keras.utils.set_random_seed(0)
    model = zoo.build(args.model, keras, args.size)
    if args.float_epochs:
        common.train(model, ((xt, yt), (xv, yv)), args.float_epochs)
    q = quantize_model(model)
    compile_classifier(q, 1e-4)
    n = args.qat_steps * args.batch_size
    q.fit(xt[:n], yt[:n], batch_size=args.batch_size, epochs=1, verbose=0)
    r = convert(q, "int8", strict=True, representative_data=xt[:100])
    rows = op_rows(q, r.tflite_bytes, xv[:args.op_samples])
    print(f"{args.model}: {len(rows)} int8 op outputs, "
          f"{args.op_samples} test images, LiteRT built-in kernels\n")
    print("| # | op | Keras quantizer | mean steps | >0.5 step | "
          ">1.5 steps | max |")
    print("|---|---|---|---|---|---|---|")
    for k, (op, name, f) in enumerate(rows):
        if f is None:
            print(f"| {k} | {op} | (no match: {name}) | | | | |")
        else:
            print(f"| {k} | {op} | {name} | {f['mean']:.3f} | "
                  f"{100 * f['off']:.2f}% | {100 * f['off2']:.2f}% | "
                  f"{f['max']:.0f} |")
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    from tfcompress.quantize.zoo import output_step
    it, _ = litert_interpreter(r.tflite_bytes)
    tfl = run_flatbuffer(it, xv)
    step = output_step(q)
    print("\nlogits, XNNPACK:", zoo.agreement(tfl, step, q, xv))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
