"""Op by op on XNNPACK: how far each int8 tensor of a QAT model's
flatbuffer is from the Keras QAT model, chained and op by op in isolation.

Builds a benchmarks/zoo.py model (32x32x3 Fashion-MNIST pixels),
quantizes it, trains a few QAT batches (realistic ranges) and converts a
copy whose outputs are the outputs of every fake-quantizing layer: LiteRT
with its default XNNPACK delegate writes out each of those tensors
(``experimental_preserve_all_tensors`` cannot read inside an XNNPACK
partition). Two figures per tensor, in its quantization steps:

- chained: the Keras QAT model against the flatbuffer on the same images
  (differences add up from op to op);
- isolated: the QAT layer fed the flatbuffer's own int8 inputs to that op
  against the flatbuffer's output of that op (the op's own error).

    .venv/bin/python benchmarks/op_agreement_xnnpack.py
    .venv/bin/python benchmarks/op_agreement_xnnpack.py \\
        --model mobilenet_v3_small

See docs/effnet_agreement.md.
"""

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import zoo  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_b0",
                   help=f"one of {', '.join(zoo.MODELS)}")
    p.add_argument("--qat-steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--test-samples", type=int, default=100)
    return p.parse_args(argv)


def quantizers(q):
    """The layers of ``q`` that fake-quantize their output."""
    return [layer for layer in q.layers
            if getattr(layer, "range", None) is not None
            and getattr(layer, "quantize_output", True)]


def flatbuffer_taps(q, layers, x):
    """``{layer name: (int8 values on x, scale, zero point)}``: every
    quantizer's output as the int8 flatbuffer computes it on XNNPACK."""
    import keras
    from ai_edge_litert.interpreter import Interpreter
    from tfcompress.convert import convert
    taps = keras.Model(q.inputs, [layer.output for layer in layers])
    r = convert(taps, "int8", strict=True, representative_data=x[:8],
                output_type="int8")
    interp = Interpreter(model_content=r.tflite_bytes)
    runner = interp.get_signature_runner()
    (input_name,) = runner.get_input_details()
    details = runner.get_output_details()
    got = collections.defaultdict(list)
    for k in range(len(x)):
        for name, v in runner(**{input_name: x[k:k + 1]}).items():
            got[name].append(v[0])
    out = {}
    for j, layer in enumerate(layers):
        scale, zp = details[f"output_{j}"]["quantization"]
        out[layer.name] = (np.asarray(got[f"output_{j}"], np.float32),
                           scale, zp)
    return out


def steps_off(ref, taps, name):
    """|flatbuffer - Keras| in steps of the flatbuffer tensor ``name``."""
    got, scale, zp = taps[name]
    return np.abs(got - (np.round(ref.reshape(got.shape) / scale) + zp))


def feeding_quantizers(tensor, names):
    """The quantizer outputs a layer input is computed from (through
    layers that keep the scale); None if it comes from the model input."""
    from tfcompress import compat
    layer = compat.keras_history(tensor).operation
    if layer.name in names:
        return [(layer.name, tensor)]
    if layer.__class__.__name__ == "InputLayer":
        return None
    inputs = layer.input if isinstance(layer.input, (list, tuple)) \
        else [layer.input]
    found = []
    for t in inputs:
        more = feeding_quantizers(t, names)
        if more is None:
            return None
        found += more
    return found


def main(argv=None):
    args = parse_args(argv)
    import keras
    from tfcompress.models import compile_classifier
    from tfcompress.quantize import quantize_model
    n = args.qat_steps * args.batch_size
    data = common.fashion_mnist(n, args.test_samples)
    (x, y), (xv, _) = zoo.images(data, 32, zoo.MODELS[args.model][2])
    keras.utils.set_random_seed(0)
    q = quantize_model(zoo.build(args.model, keras, 32))
    compile_classifier(q, 1e-3)
    q.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
    layers = quantizers(q)
    names = {layer.name for layer in layers}
    taps = flatbuffer_taps(q, layers, xv)
    chained = keras.Model(q.inputs, [layer.output for layer in layers])
    chained = chained.predict(xv, verbose=0)
    print(f"{args.model}: {len(layers)} int8 tensors, {len(xv)} test "
          "images, LiteRT with XNNPACK\n")
    print("| tensor | layer | chained >=1 step | >=2 steps | max | "
          "isolated >=1 step | max |")
    print("|---|---|---|---|---|---|---|")
    totals = collections.defaultdict(lambda: [0, 0])
    rows = []
    for layer, ref in zip(layers, chained):
        off = steps_off(np.asarray(ref), taps, layer.name)
        kind = type(getattr(layer, "layer", None)).__name__
        iso = "", ""
        inputs = layer.input if isinstance(layer.input, (list, tuple)) \
            else [layer.input]
        feeds = []
        for t in inputs:
            found = feeding_quantizers(t, names - {layer.name})
            feeds = None if found is None or feeds is None else feeds + found
        if feeds:
            one = keras.Model([t for _, t in feeds], layer.output)
            vals = [(taps[f][0] - taps[f][2]) * taps[f][1] for f, _ in feeds]
            alone = steps_off(np.asarray(one.predict(
                vals if len(vals) > 1 else vals[0], verbose=0)), taps,
                layer.name)
            totals[kind][0] += int((alone >= 1).sum())
            totals[kind][1] += alone.size
            iso = f"{100 * np.mean(alone >= 1):.4f}%", f"{alone.max():.0f}"
        rows.append({"tensor": layer.name, "layer": kind,
                     "chained_one_step": float(np.mean(off >= 1)),
                     "chained_two_steps": float(np.mean(off >= 2)),
                     "chained_max_steps": float(off.max()),
                     "isolated_one_step": (float(np.mean(alone >= 1))
                                           if feeds else None),
                     "isolated_max_steps": (float(alone.max())
                                            if feeds else None)})
        print(f"| {layer.name} | {kind} | {100 * np.mean(off >= 1):.2f}% | "
              f"{100 * np.mean(off >= 2):.2f}% | {off.max():.0f} | "
              f"{iso[0]} | {iso[1]} |")
    print("\nisolated, per layer type: values one step off")
    for kind, (bad, size) in totals.items():
        print(f"  {kind}: {bad} of {size} ({100 * bad / size:.4f}%)")
    last = layers[-1].name
    got, scale, zp = taps[last]
    logits = (got - zp) * scale
    logit_agreement = zoo.agreement(logits, scale, q, xv)
    print("\nlogits:", logit_agreement)
    common.save(f"op_agreement_{args.model}", {
        "args": vars(args), "tensors": rows,
        "isolated_by_layer_type": {k: {"one_step_off": b, "values": n}
                                   for k, (b, n) in totals.items()},
        "logits": logit_agreement})


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
