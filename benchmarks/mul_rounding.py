"""Which rounding does each machine's XNNPACK use for an int8 MUL?

XNNPACK requantizes an int8 ``MUL`` product ``p = (a - za) * (b - zb)``
with the scale ``s = sa * sb / so`` (float32) by one of two rules:

- ``fp32``: ``float32(p) * s``, rounded half to even (its x86 kernels);
- ``rndnu``: the exact ``p * s``, rounded half up (its arm64 NEON kernels).

For every ``MUL`` of each flatbuffer, this recomputes the int8 output
from the int8 inputs a run actually fed it (a copy of the model that
outputs every op's result, ``tfcompress.bench.first_difference``) with
both rules, and counts the outputs each rule misses, and the outputs on
which the two rules disagree. Runs LiteRT with XNNPACK on x86 and, with
``--arm``, LiteRT's aarch64 wheel in the emulated arm64 root.

    .venv/bin/python benchmarks/mul_rounding.py --flatbuffers DIR --arm

Inputs: ``--samples`` Fashion-MNIST test images, as benchmarks/zoo_arm.py
feeds them. Writes benchmarks/results/<name>.{json,md}.
"""

import argparse
import glob
import os
import tempfile

import common
import numpy as np

RULES = ("fp32", "rndnu")


def requantized(prod, scale, zero, rule):
    """``prod`` (int64) times the float32 ``scale``, plus ``zero``,
    clipped to int8, rounded as ``rule`` rounds it.

    >>> requantized(np.array([8932]), np.float32(0.0041983877), 0, "fp32")
    array([38])
    >>> requantized(np.array([8932]), np.float32(0.0041983877), 0, "rndnu")
    array([37])
    """
    if rule == "fp32":
        r = np.rint(prod.astype(np.float32) * scale).astype(np.int64)
    else:
        r = np.floor(prod * np.float64(scale) + 0.5).astype(np.int64)
    return np.clip(r + zero, -128, 127)


def mul_counts(graph, op_names, dump):
    """Per rule, the ``MUL`` outputs of ``dump`` it does not give, and
    the outputs on which the rules disagree; with the op and element
    counts."""
    tensors = graph["tensors"]
    out = {"ops": 0, "elements": 0, "disagree": 0,
           **{f"{r}_misses": 0 for r in RULES}}
    for op in graph["operators"]:
        if op_names[op["opcode"]] != "MUL":
            continue
        ta, tb = op["inputs"]
        to = op["outputs"][0]
        if any(f"t{t}" not in dump for t in (ta, tb, to)):
            continue     # a constant operand: not in the dump
        qa, qb, qo = (tensors[t]["quantization"] for t in (ta, tb, to))
        scale = np.float32(np.float32(qa["scale"][0]) *
                           np.float32(qb["scale"][0]) /
                           np.float32(qo["scale"][0]))
        prod = (dump[f"t{ta}"].astype(np.int64) - qa["zero_point"][0]) * \
            (dump[f"t{tb}"].astype(np.int64) - qb["zero_point"][0])
        y = dump[f"t{to}"].astype(np.int64)
        got = {r: requantized(prod, scale, qo["zero_point"][0], r)
               for r in RULES}
        out["ops"] += 1
        out["elements"] += int(y.size)
        out["disagree"] += int(np.sum(got["fp32"] != got["rndnu"]))
        for r in RULES:
            out[f"{r}_misses"] += int(np.sum(got[r] != y))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flatbuffers", required=True,
                    help="folder of int8 .tflite files")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--arm", action="store_true",
                    help="also run LiteRT aarch64 in the emulated root")
    ap.add_argument("--name", default="mul_rounding")
    args = ap.parse_args()
    from tfcompress.bench import arm_root
    from tfcompress.bench.cross_check import quantize_inputs
    from tfcompress.bench.first_difference import EveryOutputCopy
    from tfcompress.inspect.model_reader import read_model
    from zoo_arm import inputs_for, sidecar_scale
    xv = common.fashion_mnist(64, args.samples)[1][0]
    root = site = None
    if args.arm:
        root = arm_root.build_root()
        site = arm_root.build_litert_site(root)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(glob.glob(os.path.join(args.flatbuffers,
                                                  "*.tflite"))):
            name = os.path.splitext(os.path.basename(path))[0]
            with open(path, "rb") as f:
                model = read_model(f.read())
            graph, names = model["subgraphs"][0], [o["name"] for o in
                                                   model["opcodes"]]
            if "MUL" not in {names[op["opcode"]] for op in
                             graph["operators"]}:
                continue
            data = os.path.join(tmp, f"{name}.npz")
            x = inputs_for(path, xv, sidecar_scale(path))
            np.savez(data, x=quantize_inputs(path, x))
            every = EveryOutputCopy(path, data, tmp)
            rows[name] = {"x86_64": mul_counts(graph, names, every.dump())}
            if args.arm:
                dump = os.path.join(tmp, f"{name}.arm.npz")
                r = arm_root.run_runner(root, [every.path, "--data", data,
                                               "--runtime", "ai_edge_litert",
                                               "--every-output", dump],
                                        site=site)
                if r.returncode:
                    raise SystemExit(arm_root.runner_error(r))
                with np.load(dump) as f:
                    rows[name]["aarch64"] = mul_counts(graph, names, dict(f))
            print(name, rows[name], flush=True)
    lines = [f"# {args.name}", "",
             f"`.venv/bin/python benchmarks/mul_rounding.py --flatbuffers "
             f"DIR{' --arm' if args.arm else ''} --samples {args.samples}`:"
             f" every int8 `MUL` of each flatbuffer recomputed from the "
             f"int8 inputs LiteRT 2.3 (XNNPACK) fed it, on {args.samples} "
             "test images, with XNNPACK's two requantization rules (fp32: "
             "float32 product times the scale, half to even; rndnu: exact "
             "product times the scale, half up).", "",
             "| flatbuffer | machine | MUL ops | outputs | missed by fp32 "
             "| missed by rndnu | fp32 and rndnu disagree |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, by in rows.items():
        for machine, c in by.items():
            lines.append(f"| {name} | {machine} | {c['ops']} | "
                         f"{c['elements']} | {c['fp32_misses']} | "
                         f"{c['rndnu_misses']} | {c['disagree']} |")
    common.save(args.name, {"samples": args.samples, "rows": rows})
    from tfcompress.utils.atomic import atomic_write_text
    atomic_write_text(os.path.join(common.RESULTS, f"{args.name}.md"),
                      "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
