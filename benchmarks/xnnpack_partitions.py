"""How XNNPACK executes keras.applications flatbuffers: partitions (DELEGATE
nodes), the ops left outside the delegate and the share of MACs inside it.

Builds MobileNetV2, MobileNetV3Small (alpha 0.75, minimalistic=False) and
EfficientNetB0 at ``--size`` (96x96x3 by default) with weights=None,
converts each with ``tfcompress.convert`` (``int8``: post-training, float
input and output, calibrated on random images; and ``float32`` for
comparison) and reports, per flatbuffer, what LiteRT on this host does
with it (XNNPACK on, 1 thread). ``--arm`` counts the same in the emulated
arm64 root (tflite-runtime 2.14 and LiteRT's aarch64 wheel), if the root is
built. No timing: partitions do not depend on the machine's load.

    nice -n 10 .venv/bin/python benchmarks/xnnpack_partitions.py [--arm]

Writes ``benchmarks/results/xnnpack_partitions.{json,md}``.
"""

import argparse
import json
import os
import time

import common
import numpy as np

ZOO = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0")
# Models with a built-in Rescaling layer expect pixels in [0, 255].
PIXEL_RANGE = {"MobileNetV3Small": 255.0, "EfficientNetB0": 255.0}


def build(name, size):
    import keras
    apps = keras.applications
    kw = dict(input_shape=(size, size, 3), weights=None, classes=10)
    if name == "MobileNetV2":
        return apps.MobileNetV2(**kw)
    if name == "MobileNetV3Small":
        return apps.MobileNetV3Small(alpha=0.75, minimalistic=False, **kw)
    if name == "EfficientNetB0":
        return apps.EfficientNetB0(**kw)
    raise ValueError(f"unknown model {name}; choose from {', '.join(ZOO)}")


def make_flatbuffers(name, size, out_dir, modes, log):
    """Converts one model in each mode; returns ``{mode: (path, layer
    names, seconds)}``, reusing files a previous run left in out_dir."""
    import keras
    from tfcompress.convert import convert
    paths = {m: os.path.join(out_dir, f"{name}_{size}_{m}.tflite")
             for m in modes}
    if all(os.path.exists(p) and os.path.exists(p + ".layers.json")
           for p in paths.values()):
        out = {}
        for m, p in paths.items():
            with open(p + ".layers.json") as f:
                out[m] = (p, json.load(f), None)
        log(f"{name}: reusing {', '.join(paths.values())}")
        return out
    keras.utils.set_random_seed(0)
    model = build(name, size)
    layers = [l.name for l in model.layers]
    rng = np.random.default_rng(0)
    calib = rng.random((32, size, size, 3), np.float32) * \
        PIXEL_RANGE.get(name, 1.0)
    out = {}
    for m, p in paths.items():
        t0 = time.time()
        convert(model, m, representative_data=calib if m == "int8" else None,
                strict=False, output_path=p, check_data=calib[:4])
        with open(p + ".layers.json", "w") as f:
            json.dump(layers, f)
        out[m] = (p, layers, round(time.time() - t0, 1))
        log(f"{name} {m}: {os.path.getsize(p):,} bytes, {out[m][2]} s")
    keras.backend.clear_session()
    return out


def markdown(rows, command):
    from tfcompress.bench.delegation import outside_summary
    lines = ["# XNNPACK partitions of keras.applications flatbuffers", "",
             f"`{command}`", "",
             "| model | mode | runtime | machine | partitions | ops outside "
             "/ total | MACs delegated | outside (type x count) |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['model']} | {r['mode']} | {r['runtime']} | "
                         f"{r.get('machine') or '-'} | - | - | - | "
                         f"{r['error'].replace('|', '/')} |")
            continue
        lines.append(
            f"| {r['model']} | {r['mode']} | {r['runtime']} "
            f"{r['runtime_version']} | {r['machine']} | {r['partitions']} | "
            f"{len(r['ops_outside'])} / {r['total_ops']} | "
            f"{100 * r['delegated_mac_share']:.1f}% | "
            f"{outside_summary(r['ops_outside'])} |")
    lines += ["", "Ops outside the delegate, by layer (first 12 per row):",
              ""]
    for r in rows:
        if r.get("error") or not r["ops_outside"]:
            continue
        named = ", ".join(f"#{o['index']} {o['op']} ({o['layer'] or '?'})"
                          for o in r["ops_outside"][:12])
        more = len(r["ops_outside"]) - 12
        lines.append(f"- {r['model']} {r['mode']} on {r['runtime']} "
                     f"{r['runtime_version']}: {named}"
                     f"{f' and {more} more' if more > 0 else ''}")
    return "\n".join(lines) + "\n"


def main():
    import platform
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(ZOO))
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--modes", default="int8,float32")
    p.add_argument("--flatbuffer-dir", default=os.path.join(
        os.path.expanduser("~"), ".cache", "tfcompress", "xnnpack_zoo"))
    p.add_argument("--arm", action="store_true",
                   help="also count in the emulated arm64 root")
    p.add_argument("--name", default="xnnpack_partitions")
    a = p.parse_args()
    from tfcompress.bench.delegation import delegation_report
    os.makedirs(a.flatbuffer_dir, exist_ok=True)
    os.makedirs(common.RESULTS, exist_ok=True)
    command = ("nice -n 10 .venv/bin/python benchmarks/xnnpack_partitions.py"
               f" --size {a.size} --models {a.models} --modes {a.modes}"
               f"{' --arm' if a.arm else ''}")
    modes = a.modes.split(",")
    rows = []

    def log(msg):
        print(msg, flush=True)

    def save():
        with open(os.path.join(common.RESULTS, a.name + ".json"), "w") as f:
            json.dump({"command": command, "rows": rows}, f, indent=1)
        with open(os.path.join(common.RESULTS, a.name + ".md"), "w") as f:
            f.write(markdown(rows, command))

    machine = platform.machine()
    for name in a.models.split(","):
        made = make_flatbuffers(name, a.size, a.flatbuffer_dir, modes, log)
        for mode, (path, layers, _) in made.items():
            r = delegation_report(path, runtime="ai_edge_litert",
                                  known_layers=layers)
            rows.append({"model": name, "mode": mode, "machine": machine,
                         "path": path, **r})
            log(f"{name} {mode} x86 LiteRT: {r['partitions']} partition(s),"
                f" outside {r['outside_op_types']}")
            save()
            if a.arm and mode == "int8":
                from tfcompress.bench.arm_delegation import arm_delegation
                for ar in arm_delegation({name: path}, log=log):
                    ar.update(mode=mode, path=path)
                    rows.append(ar)
                save()
    save()


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
