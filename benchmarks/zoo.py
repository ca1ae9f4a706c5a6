"""keras.applications models on Fashion-MNIST, every compression path side
by side: float, post-training int8, QAT int8, 50% pruning + prune-
preserving QAT int8, 50% channel pruning + shrink + int8, with accuracy,
flatbuffer sizes, LiteRT latency and tfmot 0.8.1's figures on the same
architecture (tf_keras.applications) where tfmot accepts it.

Images are Fashion-MNIST (real idx files) resized to ``--size`` pixels
and repeated to 3 channels; every model trains from scratch
(``weights=None``, no pretrained weights), ``classes=10``, logits out.
Models with their own preprocessing layers (MobileNetV3Small,
EfficientNetB0: Rescaling 1/255) get pixels in [0, 255], the others [0, 1].

Training per model (Adam, batch 128): the float model trains
``--epochs`` E at 1e-3; each compressed path starts from it and fine-tunes
at 5e-4: QAT for F (``--finetune-epochs``), pruning for F then
prune-preserving QAT for F, channel pruning for F. The float model
continues for 2F more epochs at 5e-4 (the longest pipeline, so the
baseline trained as long as any compressed model); that fair float model
is what post-training int8 and float32 convert.

After every model has trained, all flatbuffers are timed with LiteRT,
one thread, XNNPACK on and off, alternating (``common.alternating_p50``).
tfmot runs in its own process (``--tfmot-side``, tf_keras).

    .venv/bin/python benchmarks/zoo.py                       # default run
    .venv/bin/python benchmarks/zoo.py --models mobilenet_v2,resnet20 \\
        --train-samples 2000 --test-samples 500 --epochs 1 --name zoo_small

Writes ``benchmarks/results/<name>.{json,md}``. A step that fails records
its error in the model's row; the run goes on.
"""

import os
import sys

TFMOT_SIDE = "--tfmot-side" in sys.argv
if TFMOT_SIDE:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"   # before TensorFlow loads

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# name: (keras.applications class or None for resnet20, kwargs,
#        takes pixels in [0, 255] because it rescales itself)
MODELS = {
    "mobilenet_v2": ("MobileNetV2", {"alpha": 0.35}, False),
    "mobilenet_v3_small": ("MobileNetV3Small", {}, True),
    "efficientnet_b0": ("EfficientNetB0", {}, True),
    "resnet20": (None, {}, False),
    "resnet50": ("ResNet50", {}, False),
}
DEFAULT_MODELS = "mobilenet_v2,mobilenet_v3_small,efficientnet_b0,resnet20"
FT_LR = 5e-4
# MobileNetV2/V3 use BatchNormalization momentum 0.999: after a few hundred
# steps from scratch the moving statistics are still mostly their initial
# values and evaluation reads chance. 0.9 settles within tens of steps.
BN_MOMENTUM = 0.9
BATCH = 128
SPARSITY = 0.5
QAT_TOLERANCE_POINTS = 0.5
CHANNEL_SPEEDUP_AIM, CHANNEL_DROP_POINTS = 1.5, 1.5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma-separated from {', '.join(MODELS)}")
    p.add_argument("--epochs", type=int, default=2,
                   help="float training epochs E")
    p.add_argument("--finetune-epochs", type=int, default=1,
                   help="epochs F of each fine-tune stage")
    p.add_argument("--train-samples", type=int, default=4000,
                   help="0: all 60,000")
    p.add_argument("--test-samples", type=int, default=1000,
                   help="0: all 10,000")
    p.add_argument("--size", type=int, default=32,
                   help="image side in pixels (>= 32)")
    p.add_argument("--calibration-samples", type=int, default=200)
    p.add_argument("--runs", type=int, default=100,
                   help="timed inferences per flatbuffer, repeat and "
                        "XNNPACK setting")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--no-tfmot", action="store_true",
                   help="skip tfmot's side")
    p.add_argument("--name", default="zoo",
                   help="results file benchmarks/results/<name>.{json,md}")
    p.add_argument("--tfmot-side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from "
                f"{', '.join(MODELS)}")
    if args.size < 32:
        p.error("--size must be at least 32 (keras.applications minimum)")
    return args


# ---------------------------------------------------------------- models
def resnet20(keras_module, input_shape, classes=10):
    """ResNet-20 (He et al. 2016, CIFAR variant): 3 stages of 3 basic
    blocks, 16/32/64 filters, 1x1-conv projection shortcuts; logits."""
    L = keras_module.layers

    def conv_bn(x, filters, stride, relu=True, kernel=3):
        x = L.Conv2D(filters, kernel, stride, padding="same",
                     use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x) if relu else x

    inp = keras_module.Input(input_shape)
    x = conv_bn(inp, 16, 1)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(3):
            stride = 2 if stage and not block else 1
            y = conv_bn(x, filters, stride)
            y = conv_bn(y, filters, 1, relu=False)
            if stride != 1 or x.shape[-1] != filters:
                x = conv_bn(x, filters, stride, relu=False, kernel=1)
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras_module.Model(inp, L.Dense(classes)(x), name="resnet20")


def build(name, keras_module, size):
    """``name`` built with ``keras_module`` (Keras 3 or tf_keras), every
    BatchNormalization's momentum set to ``BN_MOMENTUM``."""
    cls, kwargs, _ = MODELS[name]
    shape = (size, size, 3)
    if cls is None:
        model = resnet20(keras_module, shape)
    else:
        model = getattr(keras_module.applications, cls)(
            input_shape=shape, weights=None, classes=10,
            classifier_activation=None, **kwargs)
    for layer in model.layers:
        if isinstance(layer, keras_module.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def images(data, size, pixels):
    """Fashion-MNIST ``((x, y), (xv, yv))`` in [0, 1] as 3-channel
    ``size`` x ``size`` images, in [0, 255] if ``pixels``."""
    import tensorflow as tf

    def one(x):
        out = np.concatenate([
            tf.image.resize(x[i:i + 2000], (size, size)).numpy()
            for i in range(0, len(x), 2000)]) if size != x.shape[1] else x
        out = np.repeat(np.clip(out, 0.0, 1.0), 3, axis=-1)
        return (out * 255.0 if pixels else out).astype(np.float32)
    (x, y), (xv, yv) = data
    return (one(x), y), (one(xv), yv)


def load(args, name):
    data = common.fashion_mnist(args.train_samples or None,
                                args.test_samples or None)
    return images(data, args.size, MODELS[name][2])


def error_text(e):
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:600]


def flatbuffer_figures(tflite_bytes, data, path):
    from tfcompress.inspect import inspect
    with open(path + ".tmp", "wb") as f:
        f.write(tflite_bytes)
    os.replace(path + ".tmp", path)
    rep = inspect(tflite_bytes)
    big = [w for w in rep["weights"]
           if w["dtype"] in ("INT8", "FLOAT32") and w["params"] >= 1000]
    params = sum(w["params"] for w in big)
    nonzero = sum(w["nonzero"] for w in big)
    return {"tflite_accuracy": common.tflite_accuracy(tflite_bytes, data),
            "fully_integer": rep["fully_integer"],
            "float_ops": sorted({o["op"] for o in rep["float_ops"]}),
            "size_bytes": len(tflite_bytes),
            "gzip_bytes": len(gzip.compress(tflite_bytes, 9)),
            "weight_sparsity": round(1 - nonzero / params, 4)
            if params else 0.0,
            "path": path}


# ------------------------------------------------------ tfcompress side
def clone(model):
    import keras
    c = keras.models.clone_model(model)
    c.set_weights(model.get_weights())
    return c


def timed_train(model, data, epochs, lr, callbacks=()):
    t = time.perf_counter()
    common.train(model, data, epochs, batch_size=BATCH, lr=lr,
                 callbacks=callbacks)
    return round(time.perf_counter() - t, 1)


def run_model(name, args, tmp):
    """Every tfcompress path for ``name``; returns the row."""
    import keras
    from tfcompress import prune, quantize
    from tfcompress.convert import convert
    data = load(args, name)
    (xt, _), _ = data
    calib = xt[:args.calibration_samples]
    E, F = args.epochs, args.finetune_epochs
    steps = int(np.ceil(len(xt) / BATCH)) * F
    row = {"train_seconds": {}, "paths": {}}
    secs = row["train_seconds"]

    def step(key, fn):
        """Runs one path; its error goes in the row instead of aborting."""
        try:
            fn()
        except Exception as e:
            row["paths"][key] = {"error": error_text(e)}
            print(f"[{name}] {key} failed: {error_text(e)}", flush=True)

    def to_tflite(key, model, mode="int8"):
        r = convert(model, mode, strict=mode == "int8",
                    representative_data=calib)
        fig = flatbuffer_figures(r.tflite_bytes, data,
                                 os.path.join(tmp, f"{name}_{key}.tflite"))
        fig["conversion_s"] = r.report["conversion_seconds"]
        row["paths"].setdefault(key, {}).update(fig)
        print(f"[{name}] {key}: TFLite accuracy "
              f"{fig['tflite_accuracy']:.4f}", flush=True)

    keras.utils.set_random_seed(0)
    fl = build(name, keras, args.size)
    row["params"] = int(fl.count_params())
    secs["float"] = timed_train(fl, data, E, 1e-3)
    start = clone(fl)
    row["float_accuracy"] = common.keras_accuracy(fl, data)
    secs["float_continue"] = timed_train(fl, data, F, FT_LR)
    row["float_accuracy_plus_f"] = common.keras_accuracy(fl, data)
    secs["float_continue"] += timed_train(fl, data, F, FT_LR)
    row["float_fair_accuracy"] = common.keras_accuracy(fl, data)
    row["float_epochs"], row["float_fair_epochs"] = E, E + 2 * F
    print(f"[{name}] float {row['float_accuracy']:.4f} after {E} epochs, "
          f"{row['float_fair_accuracy']:.4f} after {E + 2 * F}", flush=True)
    step("float32", lambda: to_tflite("float32", fl, "float32"))
    step("ptq_int8", lambda: to_tflite("ptq_int8", fl))

    def qat():
        q = quantize.quantize_model(clone(start))
        secs["qat"] = timed_train(q, data, F, FT_LR)
        row["paths"]["qat_int8"] = {
            "keras_accuracy": common.keras_accuracy(q, data)}
        to_tflite("qat_int8", q)
    step("qat_int8", qat)

    def pruned():
        p = prune.prune_low_magnitude(clone(start), prune.PolynomialDecay(
            0.0, SPARSITY, 0, max(1, int(0.7 * steps)),
            frequency=max(1, steps // 20)))
        secs["prune"] = timed_train(p, data, F, FT_LR,
                                    [prune.UpdatePruningStep()])
        stripped = prune.strip_pruning(p)
        res = {"pruned_keras_accuracy": common.keras_accuracy(stripped,
                                                              data)}
        row["paths"]["pruned_pqat_int8"] = res
        q = quantize.quantize_model(stripped,
                                    quantize.PrunePreservingScheme())
        secs["prune_preserving_qat"] = timed_train(q, data, F, FT_LR)
        res["keras_accuracy"] = common.keras_accuracy(q, data)
        to_tflite("pruned_pqat_int8", q)
    step("pruned_pqat_int8", pruned)

    def channels():
        c = clone(start)
        cb = prune.ChannelPruning(prune.PolynomialDecay(
            0.0, SPARSITY, 0, max(1, steps // 2),
            frequency=max(1, steps // 8)))
        secs["channel_prune"] = timed_train(c, data, F, FT_LR, [cb])
        small = prune.shrink(c)
        row["paths"]["channel_int8"] = {
            "keras_accuracy": common.keras_accuracy(small, data),
            "params": int(small.count_params()),
            "mac_ratio": prune.count_macs(small) / prune.count_macs(fl)}
        to_tflite("channel_int8", small)
    step("channel_int8", channels)
    return row


# ----------------------------------------------------------- tfmot side
def tfmot_side(args):
    """tfmot 0.8.1 on tf_keras.applications: float -> prune 50% ->
    prune-preserving QAT -> TFLite int8. Prints one JSON object."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as k
    name = args.tfmot_side
    data = load(args, name)
    (x, y), _ = data
    E, F = args.epochs, args.finetune_epochs
    steps = int(np.ceil(len(x) / BATCH)) * F
    out = {"tfmot": tfmot.__version__, "int8_from": None}

    def fit(m, epochs, lr, callbacks=()):
        m.compile(k.optimizers.Adam(lr),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        m.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0,
              callbacks=list(callbacks))

    k.utils.set_random_seed(0)
    m = build(name, k, args.size)
    fit(m, E, 1e-3)
    out["float_accuracy"] = common.keras_accuracy(m, data)
    final, label = m, "float model, post-training int8"
    s = tfmot.sparsity.keras
    try:
        p = s.prune_low_magnitude(m, pruning_schedule=s.PolynomialDecay(
            0.0, SPARSITY, 0, max(1, int(0.7 * steps)),
            frequency=max(1, steps // 20)))
    except Exception as e:
        out["prune_error"] = error_text(e)
    else:
        fit(p, F, FT_LR, [s.UpdatePruningStep()])
        final = s.strip_pruning(p)
        out["pruned_keras_accuracy"] = common.keras_accuracy(final, data)
        label = "pruned model, post-training int8"
    try:
        from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve.default_8bit_prune_preserve_quantize_scheme import \
            Default8BitPrunePreserveQuantizeScheme  # noqa: E501
        q = tfmot.quantization.keras
        qat = q.quantize_apply(q.quantize_annotate_model(final),
                               Default8BitPrunePreserveQuantizeScheme())
    except Exception as e:
        out["qat_error"] = error_text(e)
    else:
        fit(qat, F, FT_LR)
        out["qat_keras_accuracy"] = common.keras_accuracy(qat, data)
        final = qat
        label = ("prune-preserving QAT" if "prune_error" not in out
                 else "QAT (pruning refused)")
    calib = x[:args.calibration_samples]
    try:
        t = time.perf_counter()
        conv = tf.lite.TFLiteConverter.from_keras_model(final)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: (
            [calib[i:i + 1]] for i in range(len(calib)))
        conv.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        tfl = conv.convert()
        out["conversion_s"] = round(time.perf_counter() - t, 2)
    except Exception as e:
        out["convert_error"] = error_text(e)
    else:
        out["int8_from"] = label
        out.update(flatbuffer_figures(
            tfl, data, os.path.join(args.out, f"{name}_tfmot.tflite")))
    print(json.dumps(out))


def run_tfmot(name, args, tmp):
    cmd = [sys.executable, os.path.abspath(__file__), "--tfmot-side", name,
           "--out", tmp, "--size", str(args.size),
           "--epochs", str(args.epochs),
           "--finetune-epochs", str(args.finetune_epochs),
           "--train-samples", str(args.train_samples),
           "--test-samples", str(args.test_samples),
           "--calibration-samples", str(args.calibration_samples)]
    print(f"[{name}] tfmot side ...", flush=True)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=7200,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:600]}
    res = json.loads(lines[-1])
    res["wall_seconds"] = round(time.perf_counter() - t, 1)
    return res


# ----------------------------------------------------------- reporting
PATHS = [("float32", "float32"), ("ptq_int8", "post-training int8"),
         ("qat_int8", "QAT int8"),
         ("pruned_pqat_int8", "pruned 50% + PQAT int8"),
         ("channel_int8", "channel-pruned 50% int8")]


def finish(row):
    """Ratios, speed-ups and the aims, from the measured figures."""
    paths = row["paths"]
    f32 = paths.get("float32", {})
    for res in list(paths.values()) + [row.get("tfmot", {})]:
        if "size_bytes" in res and "size_bytes" in f32:
            res["size_ratio"] = f32["size_bytes"] / res["size_bytes"]
            res["gzip_ratio"] = f32["size_bytes"] / res["gzip_bytes"]
        for x in ("xnnpack", "no_xnnpack"):
            k = f"p50_ms_{x}"
            if k in res and k in f32:
                res[f"speedup_vs_float_{x}"] = f32[k] / res[k]
    aims = {}
    base = row.get("float_fair_accuracy")
    qat = paths.get("qat_int8", {}).get("tflite_accuracy")
    if base is not None:
        aims["qat_within_0.5_points"] = (
            {"met": None, "why": paths.get("qat_int8", {}).get("error")}
            if qat is None else
            {"met": 100 * (base - qat) <= QAT_TOLERANCE_POINTS,
             "drop_points": round(100 * (base - qat), 2)})
    ptq, ch = paths.get("ptq_int8", {}), paths.get("channel_int8", {})
    if "p50_ms_xnnpack" in ptq and "p50_ms_xnnpack" in ch:
        ch["int8_speedup_vs_unpruned"] = (ptq["p50_ms_xnnpack"] /
                                          ch["p50_ms_xnnpack"])
        ch["int8_speedup_vs_unpruned_no_xnnpack"] = (
            ptq["p50_ms_no_xnnpack"] / ch["p50_ms_no_xnnpack"])
        drop = 100 * (ptq["tflite_accuracy"] - ch["tflite_accuracy"])
        ch["drop_points_vs_unpruned_int8"] = drop
        aims["channel_1.5x_at_1.5_points"] = {
            "met": ch["int8_speedup_vs_unpruned"] >= CHANNEL_SPEEDUP_AIM
            and drop <= CHANNEL_DROP_POINTS,
            "speedup": round(ch["int8_speedup_vs_unpruned"], 2),
            "drop_points": round(drop, 2)}
    row["aims"] = aims


def _f(v, fmt="{:.4f}"):
    if v is None:
        return "—"
    return fmt.format(v) if isinstance(v, (int, float)) else str(v)


def markdown(results, args):
    cmd = " ".join(["python"] + [os.path.relpath(sys.argv[0])] +
                   sys.argv[1:])
    lines = [f"Command: `{cmd}`", "",
             f"{args.train_samples or 60000} training / "
             f"{args.test_samples or 10000} test images, {args.size}x"
             f"{args.size}x3, E={args.epochs}, F={args.finetune_epochs}; "
             "float fair = E + 2F epochs.", "",
             "### Accuracy (TFLite, test set)", "",
             "| model | float E | float fair | float32 | PTQ int8 | "
             "QAT int8 | pruned+PQAT int8 (sparsity) | channel int8 "
             "(MACs) | tfmot int8 |", "|---" * 9 + "|"]
    for name, row in results.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} |" +
                         " |" * 7)
            continue
        p, t = row["paths"], row.get("tfmot", {})

        def acc(key, extra=""):
            r = p.get(key, {})
            if "error" in r:
                return "failed"
            return _f(r.get("tflite_accuracy")) + extra
        pr = p.get("pruned_pqat_int8", {})
        ch = p.get("channel_int8", {})
        tf_cell = ("—" if not t else
                   f"{_f(t.get('tflite_accuracy'))} ({t['int8_from']})"
                   if t.get("int8_from") else "failed")
        lines.append(
            f"| {name} | {_f(row['float_accuracy'])} | "
            f"{_f(row['float_fair_accuracy'])} | {acc('float32')} | "
            f"{acc('ptq_int8')} | {acc('qat_int8')} | "
            f"{acc('pruned_pqat_int8', ' (' + _f(pr.get('weight_sparsity'), '{:.0%}') + ')' if 'tflite_accuracy' in pr else '')} | "
            f"{acc('channel_int8', ' (' + _f(ch.get('mac_ratio'), '{:.0%}') + ')' if 'tflite_accuracy' in ch else '')} | "
            f"{tf_cell} |")
    lines += ["", "### Size, latency and conversion", "",
              "p50 ms: LiteRT, 1 thread; speed-up vs the float32 flatbuffer "
              "(channel-pruned: also vs post-training int8).", "",
              "| model | flatbuffer | bytes | gzip bytes | x smaller "
              "(raw / gzip vs float32 raw) | p50 ms XNNPACK | p50 ms "
              "built-in | speed-up XNNPACK / built-in | conversion s |",
              "|---" * 9 + "|"]
    for name, row in results.items():
        if "error" in row:
            continue
        items = [(label, row["paths"].get(key, {})) for key, label in PATHS]
        if row.get("tfmot", {}).get("size_bytes"):
            items.append((f"tfmot int8 ({row['tfmot']['int8_from']})",
                          row["tfmot"]))
        for label, r in items:
            if "error" in r or "size_bytes" not in r:
                lines.append(f"| {name} | {label} | failed: "
                             f"{r.get('error', 'not run')} |" + " |" * 6)
                continue
            sp = (f"{_f(r.get('speedup_vs_float_xnnpack'), '{:.2f}')} / "
                  f"{_f(r.get('speedup_vs_float_no_xnnpack'), '{:.2f}')}")
            if "int8_speedup_vs_unpruned" in r:
                sp += (f" (vs PTQ int8 "
                       f"{r['int8_speedup_vs_unpruned']:.2f} / "
                       f"{r['int8_speedup_vs_unpruned_no_xnnpack']:.2f})")
            lines.append(
                f"| {name} | {label} | {r['size_bytes']:,} | "
                f"{r['gzip_bytes']:,} | {_f(r.get('size_ratio'), '{:.2f}')}"
                f" / {_f(r.get('gzip_ratio'), '{:.2f}')} | "
                f"{_f(r.get('p50_ms_xnnpack'), '{:.3f}')} | "
                f"{_f(r.get('p50_ms_no_xnnpack'), '{:.3f}')} | {sp} | "
                f"{_f(r.get('conversion_s'), '{:.1f}')} |")
    lines += ["", "### Errors and tfmot refusals", ""]
    for name, row in results.items():
        for key, r in row.get("paths", {}).items():
            if "error" in r:
                lines.append(f"- {name} {key}: `{r['error']}`")
        t = row.get("tfmot", {})
        for k in ("error", "prune_error", "qat_error", "convert_error"):
            if k in t:
                lines.append(f"- {name} tfmot {k.replace('_', ' ')}: "
                             f"`{t[k]}`")
        if "error" in row:
            lines.append(f"- {name}: `{row['error']}`")
    lines += ["", "### Aims", ""] + aim_lines(results)
    return "\n".join(lines) + "\n"


def aim_lines(results):
    out = []
    for name, row in results.items():
        for aim, a in row.get("aims", {}).items():
            if aim.startswith("qat"):
                what = (f"QAT int8 within {QAT_TOLERANCE_POINTS} points of "
                        "the fair float model")
                fig = (f"drop {a['drop_points']} points" if a["met"] is not
                       None else f"not measured: {a['why']}")
            else:
                what = (f"channel-pruned int8 >= {CHANNEL_SPEEDUP_AIM}x "
                        f"faster than unpruned int8 at <= "
                        f"{CHANNEL_DROP_POINTS} points")
                fig = (f"{a['speedup']}x (XNNPACK), drop "
                       f"{a['drop_points']} points")
            state = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[
                a["met"]]
            out.append(f"- {name}: {what}: **{state}** ({fig})")
    return out or ["- none measured"]


def main(argv=None):
    args = parse_args(argv)
    if TFMOT_SIDE or args.tfmot_side:
        return tfmot_side(args)
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="zoo_")
    results = {}
    try:
        for name in args.models.split(","):
            t = time.perf_counter()
            try:
                results[name] = run_model(name, args, tmp)
            except Exception as e:
                results[name] = {"error": error_text(e)}
                print(f"[{name}] failed: {error_text(e)}", flush=True)
            if not args.no_tfmot:
                results[name]["tfmot"] = run_tfmot(name, args, tmp)
            results[name]["wall_seconds"] = round(time.perf_counter() - t, 1)
        timed = [(r, res) for r in results.values()
                 for res in list(r.get("paths", {}).values()) +
                 [r.get("tfmot", {})] if "path" in res]
        paths = [res["path"] for _, res in timed]
        t = time.perf_counter()
        for xnn in (True, False):
            p50 = common.alternating_p50(paths, args.runs, args.repeats,
                                         xnnpack=xnn) if paths else {}
            for _, res in timed:
                key = "p50_ms_xnnpack" if xnn else "p50_ms_no_xnnpack"
                res[key] = p50[res["path"]]
        timing_s = round(time.perf_counter() - t, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for _, res in timed:
        res.pop("path")
    args_out = {k: v for k, v in vars(args).items()
                if k not in ("tfmot_side", "out")}
    common.save(args.name, {"args": args_out, "models": results,
                            "timing_seconds": timing_s,
                            "total_seconds": round(time.perf_counter() - t0,
                                                   1)})
    for row in results.values():
        if "paths" in row:
            finish(row)
    common.save(args.name, {"args": args_out, "models": results,
                            "timing_seconds": timing_s,
                            "total_seconds": round(time.perf_counter() - t0,
                                                   1)})
    table = markdown(results, args)
    common.save_markdown(args.name, table)
    print(table)
    return results


if __name__ == "__main__":
    main()
