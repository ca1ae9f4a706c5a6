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
is what post-training int8 and float32 convert. QAT's aim compares it with
the float model after E + F epochs, as long as QAT trained in total.

After every model has trained, all flatbuffers are timed with LiteRT,
one thread, XNNPACK on and off, alternating (``common.alternating_p50``).
tfmot runs in its own process (``--tfmot-side``, tf_keras), starting from
the same float weights after E epochs (tf_keras.applications builds the
same layers), so both libraries compress the same float model.

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
import concurrent.futures  # noqa: E402
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
# the models also timed at --speed-size by default: the channel aim's
SPEED_MODELS = "mobilenet_v2"
# --onednn: TF_ENABLE_ONEDNN_OPTS of the training processes ("default":
# left as it is; benchmarks/onednn_training.py, docs/zoo_benchmark.md)
ONEDNN_CHOICES = ("default", "on", "off")
# each model's wall seconds in the default run (tfmot's side included),
# to start the longest pipelines first with --jobs
RELATIVE_COST = {"efficientnet_b0": 1354, "resnet50": 1354, "resnet20": 752,
                 "mobilenet_v2": 679, "mobilenet_v3_small": 634}
FT_LR = 5e-4
FLOAT_LR = 1e-3   # the float model's E epochs
SCHEDULES = ("constant", "cosine")
# MobileNetV2/V3 use BatchNormalization momentum 0.999: after a few hundred
# steps from scratch the moving statistics are still mostly their initial
# values and evaluation reads chance. 0.9 settles within tens of steps.
BN_MOMENTUM = 0.9
BATCH = 128
SPARSITY = 0.5
QAT_TOLERANCE_POINTS = 0.5
CHANNEL_SPEEDUP_AIM, CHANNEL_DROP_POINTS = 1.5, 1.5
AGREEMENT_AIM, LATENCY_TOLERANCE = 0.98, 0.05
AGREEMENT_SAMPLES = 200
# rounds in which the QAT and the converter's post-training flatbuffers of
# a model are timed alternately on their own, for the QAT p50 aim
PAIR_REPEATS = 5
# --paths choices: the flatbuffers (and tfmot's side) a run produces
PATH_KEYS = ["float32", "ptq_int8", "converter_ptq_int8", "qat_int8",
             "pruned_pqat_int8", "channel_int8", "tfmot"]
# --quick: options it sets unless given explicitly.
QUICK = {"models": "mobilenet_v2", "train_samples": 384,
         "test_samples": AGREEMENT_SAMPLES, "epochs": 1,
         "finetune_epochs": 1, "runs": 20, "repeats": 1,
         "calibration_samples": 64, "name": "zoo_quick"}


def check_models(parser, models):
    """Exits through ``parser.error`` naming the choices when the
    comma-separated ``models`` has a name that is not in :data:`MODELS`."""
    unknown = [m for m in models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(MODELS)}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS,
                   help=f"comma-separated from {', '.join(MODELS)}")
    p.add_argument("--epochs", type=int, default=6,
                   help="float training epochs E")
    p.add_argument("--finetune-epochs", type=int, default=2,
                   help="epochs F of each fine-tune stage")
    p.add_argument("--finetune-lr", type=float, default=FT_LR,
                   help="Adam learning rate of every fine-tune stage "
                        "(the float model's E epochs use 1e-3)")
    p.add_argument("--finetune-schedule", choices=SCHEDULES,
                   default="cosine",
                   help="learning rate within each fine-tune stage: "
                        "constant at --finetune-lr, or cosine decay from "
                        "it to 0 over the stage's F epochs (every stage: "
                        "the float continuation, QAT, pruning, PQAT, the "
                        "channel path, tfmot's side)")
    p.add_argument("--channel-schedule", choices=SCHEDULES,
                   default="constant",
                   help="the channel path's learning rate (its pruning and "
                        "its fine-tune stage): constant or cosine as "
                        "--finetune-schedule (default: constant; a cosine "
                        "decay leaves the pruning ramp's end at a small "
                        "rate)")
    p.add_argument("--train-samples", type=int, default=6000,
                   help="0: all 60,000")
    p.add_argument("--test-samples", type=int, default=2000,
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
    p.add_argument("--tfmot-models", default=None,
                   help="run tfmot's side for these models only "
                        "(comma-separated; default: every model)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of a few minutes: " + ", ".join(
                       f"--{k.replace('_', '-')} {v}"
                       for k, v in QUICK.items()) + " (figures mean "
                   "nothing; it proves every path runs)")
    p.add_argument("--keep", default=None,
                   help="folder to keep every flatbuffer in (with a "
                        "<file>.json giving its input pixel scale, as "
                        "benchmarks/zoo_arm.py --flatbuffers reads)")
    p.add_argument("--time-only", action="store_true",
                   help="after a run with --keep (interrupted, or "
                        "finished: to time it again): time the "
                        "flatbuffers its saved <name>.json lists and "
                        "write the tables from it (no training)")
    p.add_argument("--paths", default=None,
                   help="comma-separated paths to run (default: all): "
                        + ", ".join(PATH_KEYS) + "; the float model "
                        "always trains")
    p.add_argument("--channel-sparsity", type=float, default=SPARSITY,
                   help="fraction of each channel space's channels the "
                        "channel path removes")
    p.add_argument("--channel-norm", default="bn_gamma",
                   choices=["l1", "l2", "bn_gamma"],
                   help="channel ranking of the channel path "
                        "(ChannelPruning norm)")
    p.add_argument("--channel-allocation", choices=("uniform", "global"),
                   default="uniform",
                   help="channel path: remove --channel-sparsity of every "
                        "channel space (uniform) or of all channels "
                        "together, the weakest of the model first "
                        "(global; ChannelPruning allocation)")
    p.add_argument("--channel-start-epoch", type=int, default=None,
                   help="channel path: the float epoch it prunes from "
                        "(default E - F). It prunes for F epochs, at the "
                        "float training's rate if it starts before epoch "
                        "E, then fine-tunes the shrunk model for the rest "
                        "of the fair float model's E + 2F epochs (2F by "
                        "default; F when it starts at E)")
    p.add_argument("--channel-finetune", choices=("qat", "float"),
                   default="qat",
                   help="channel path: the shrunk model's F fine-tuning "
                        "epochs as QAT (int8 from its fake-quant ranges; "
                        "default) or in float, then post-training int8")
    p.add_argument("--channel-distill", action="store_true",
                   help="channel path: prune and fine-tune with "
                        "distillation from the unpruned float model it "
                        "starts from (its logits precomputed once; no "
                        "extra epochs)")
    p.add_argument("--qat-freeze-bn-delay", type=int, default=0,
                   help="QAT and PQAT: training steps before the folded "
                        "batch norms use their moving statistics "
                        "(Default8BitScheme freeze_bn_delay; default 0: "
                        "frozen from the start; -1: never, batch "
                        "statistics throughout)")
    p.add_argument("--channel-freeze-bn-delay", type=int, default=-1,
                   help="the channel path's QAT: freeze_bn_delay as "
                        "--qat-freeze-bn-delay (default -1: never; the "
                        "shrunk model's batch statistics are left to "
                        "settle)")
    p.add_argument("--qat-ema-decay", type=float, default=0.999,
                   help="QAT, PQAT and the channel path's QAT: ema_decay of "
                        "the activation ranges (default 0.999, tfmot's and "
                        "the library's)")
    p.add_argument("--qat-activation-percentile", type=float,
                   default=99.99,
                   help="QAT, PQAT and the channel path's QAT: "
                        "activation_percentile of the activation ranges "
                        "(default 99.99; 100: each batch's min and max, "
                        "tfmot's and the library's default)")
    p.add_argument("--speed-size", default="96",
                   help="comma-separated larger input sides (e.g. 96,224) "
                        "at which the PTQ int8 and channel-pruned int8 "
                        "models are also timed: the trained weights in "
                        "the same architecture at that input shape "
                        "(latency only: they were trained at --size); "
                        "'' for none (default: 96)")
    p.add_argument("--speed-models", default=SPEED_MODELS,
                   help="comma-separated models timed at --speed-size, "
                        "'all' or '' for none (default: mobilenet_v2, the "
                        "model of the channel speed-up aim; the others "
                        "add about 30 s each)")
    p.add_argument("--jobs", type=int, default=2,
                   help="models trained at once, each in its own process "
                        "(their first training steps are single-threaded "
                        "tracing); latency is timed afterwards, one "
                        "flatbuffer at a time")
    p.add_argument("--threads", type=int, default=0,
                   help="TensorFlow threads (intra- and inter-op) of each "
                        "training process; 0 (default): TensorFlow's own "
                        "choice, all cores. In one run on 2 cores with "
                        "--jobs 2, --threads 1 took ResNet-20's pipeline "
                        "36%% longer and EfficientNetB0's 4%% shorter")
    p.add_argument("--onednn", choices=ONEDNN_CHOICES, default="default",
                   help="TensorFlow's oneDNN CPU kernels in the training "
                        "processes (TF_ENABLE_ONEDNN_OPTS), tfcompress's "
                        "and tfmot's alike: on, off, or default (as the "
                        "environment has it; TensorFlow turns them on on "
                        "x86 Linux). Alone, EfficientNetB0 and MobileNetV2 "
                        "train faster with them off "
                        "(benchmarks/onednn_training.py); a default run "
                        "with them off for those was not faster")
    p.add_argument("--name", default="zoo",
                   help="results file benchmarks/results/<name>.{json,md}")
    p.add_argument("--tfmot-side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model-side", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        # an option given explicitly wins, even when it equals the default
        p.set_defaults(**{k: None for k in QUICK})
        given = p.parse_args(argv)
        for k, v in QUICK.items():
            if getattr(given, k) is None:
                setattr(args, k, v)
    check_models(p, args.models)
    if not args.finetune_lr > 0:
        p.error("--finetune-lr must be positive")
    if args.size < 32:
        p.error("--size must be at least 32 (keras.applications minimum)")
    wanted = PATH_KEYS if args.paths is None else args.paths.split(",")
    unknown = [k for k in wanted if k not in PATH_KEYS]
    if unknown:
        p.error(f"unknown path(s) {', '.join(unknown)}; choose from "
                f"{', '.join(PATH_KEYS)}")
    args.paths = ",".join(wanted)
    if not 50.0 < args.qat_activation_percentile <= 100.0:
        p.error("--qat-activation-percentile must be above 50 and at most "
                "100 (100: each batch's min and max)")
    if not 0.0 < args.channel_sparsity < 1.0:
        p.error("--channel-sparsity must be between 0 and 1 (exclusive)")
    try:
        args.speed_sizes = [int(v) for v in (args.speed_size or "").split(
            ",") if v]
    except ValueError:
        p.error(f"--speed-size takes integers like 96,224, got "
                f"{args.speed_size!r}")
    if any(v < 32 for v in args.speed_sizes):
        p.error("--speed-size must be at least 32")
    if isinstance(args.speed_models, str):
        args.speed_models = (args.models.split(",")
                             if args.speed_models == "all" else
                             [v for v in args.speed_models.split(",") if v])
    if args.speed_models:
        check_models(p, ",".join(args.speed_models))
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    if args.channel_start_epoch is None:
        args.channel_start_epoch = max(0, args.epochs - args.finetune_epochs)
    if not 0 <= args.channel_start_epoch <= args.epochs:
        p.error(f"--channel-start-epoch must be between 0 and --epochs "
                f"({args.epochs}), got {args.channel_start_epoch}")
    # no more processes than models (one model runs in this process)
    args.jobs = min(args.jobs, len(args.models.split(",")))
    if args.threads < 0:
        p.error("--threads must be 0 (TensorFlow's choice) or more")
    return args


def onednn_variable(args):
    """``{"TF_ENABLE_ONEDNN_OPTS": "1" or "0"}`` as ``--onednn`` sets it;
    empty for ``default``."""
    if args.onednn == "default":
        return {}
    return {"TF_ENABLE_ONEDNN_OPTS": "1" if args.onednn == "on" else "0"}


def onednn_env(args, **extra):
    """The environment of a training process, with ``onednn_variable``."""
    return dict(os.environ, **extra, **onednn_variable(args))


def onednn_in_use():
    """This process's oneDNN setting as TensorFlow read it at import."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {"1": "on", "0": "off"}.get(value, "TensorFlow's default")


def use_threads(n):
    """Caps this process's TensorFlow thread pools at ``n`` threads each
    (before TensorFlow runs anything); 0 leaves them as they are."""
    if n:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


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
    from tfcompress.models.applications import set_batchnorm_momentum
    set_batchnorm_momentum(model, BN_MOMENTUM, keras_module)
    return model


def images(data, size, pixels):
    """Fashion-MNIST ``((x, y), (xv, yv))`` in [0, 1] as 3-channel
    ``size`` x ``size`` images, in [0, 255] if ``pixels``."""
    from tfcompress.data import resize_images

    def one(x):
        out = resize_images(x, size, 3)
        return (out * 255.0 if pixels else out).astype(np.float32)
    (x, y), (xv, yv) = data
    return (one(x), y), (one(xv), yv)


def load(args, name):
    data = common.fashion_mnist(args.train_samples or None,
                                args.test_samples or None)
    return images(data, args.size, MODELS[name][2])


def error_text(e):
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:600]


def tflite_logits(tflite_bytes, x, path):
    """Dequantized outputs of the flatbuffer on ``x`` (one at a time, as
    deployed) and the output's quantization step (None if float)."""
    from tfcompress.bench.cross_check import output_step
    from tfcompress.convert.result import litert_interpreter, run_flatbuffer
    it, _ = litert_interpreter(tflite_bytes)   # built-ins if XNNPACK refuses
    return run_flatbuffer(it, x), output_step(path)


def agreement(tflite_out, step, keras_model, x, keras_out=None):
    """Top-1 agreement and logit error (in output quantization steps) of
    the int8 flatbuffer against the Keras model it came from, as Keras
    evaluates it (``keras_out``, its outputs on ``x`` if already
    computed) and, under ``device_rounding``, inside
    ``quantize.device_rounding`` (the int8 kernels' rounding)."""
    from tfcompress import quantize
    if keras_out is None:
        keras_out = keras_model.predict(x, batch_size=250, verbose=0)
    res = _agreement(tflite_out, step, keras_out)
    with quantize.device_rounding(keras_model):
        device = _agreement(tflite_out, step, keras_model.predict(
            x, batch_size=250, verbose=0))
    res["device_rounding"] = {k: v for k, v in device.items()
                              if k != "samples"}
    return res


def _agreement(tflite_out, step, keras_out):
    ref = np.asarray(keras_out, np.float32).reshape(tflite_out.shape)
    err = np.abs(tflite_out - ref)
    res = {"samples": int(len(ref)),
           "top1_agreement": float(np.mean(tflite_out.argmax(1) ==
                                           ref.argmax(1))),
           "max_abs_error": float(err.max()),
           "mean_abs_error": float(err.mean())}
    if step:
        steps = err / step
        res.update({"output_step": step,
                    "mean_error_steps": float(steps.mean()),
                    "p99_error_steps": float(np.percentile(steps, 99)),
                    "max_error_steps": float(steps.max()),
                    "within_one_step": float(np.mean(steps <= 1.0 + 1e-6))})
    return res


def flatbuffer_figures(tflite_bytes, data, path, pixel_scale=1.0):
    """Accuracy, sizes and op counts of one flatbuffer, written to
    ``path`` (with ``path.json`` giving its input pixel scale). Keeps the
    outputs on the test images in ``["_outputs"]`` for the agreement."""
    from tfcompress.inspect import inspect
    from tfcompress.utils.atomic import atomic_write_bytes, \
        atomic_write_text
    atomic_write_bytes(path, tflite_bytes)
    atomic_write_text(path + ".json", json.dumps(
        {"input_scale": pixel_scale}))
    rep = inspect(tflite_bytes)
    big = [w for w in rep["weights"]
           if w["dtype"] in ("INT8", "FLOAT32") and w["params"] >= 1000]
    params = sum(w["params"] for w in big)
    nonzero = sum(w["nonzero"] for w in big)
    _, (xv, yv) = data
    outputs, step = tflite_logits(tflite_bytes, xv, path)
    return {"tflite_accuracy": float(np.mean(outputs.argmax(1) == yv)),
            "fully_integer": rep["fully_integer"],
            "float_ops": sorted({o["op"] for o in rep["float_ops"]}),
            "op_counts": rep["op_counts"],
            "size_bytes": len(tflite_bytes),
            "gzip_bytes": len(gzip.compress(tflite_bytes, 9)),
            "weight_sparsity": round(1 - nonzero / params, 4)
            if params else 0.0,
            "path": path, "_outputs": outputs, "_step": step}


def converter_int8(model, calib):
    """The TFLite converter's own post-training int8 (built-in int8 ops
    only, float input and output as tfcompress's default), seconds."""
    import tensorflow as tf
    t = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [calib[i:i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    from tfcompress.quiet import converter_output_silenced
    with converter_output_silenced():
        tflite_bytes = conv.convert()
    return tflite_bytes, round(time.perf_counter() - t, 2)


# ------------------------------------------------------ tfcompress side
def clone(model):
    import keras
    c = keras.models.clone_model(model)
    c.set_weights(model.get_weights())
    return c


def accuracy_after(keras, epochs, data):
    """A callback recording the test accuracy after ``epochs`` epochs of
    the fit it is given to (``.accuracy``)."""
    class AccuracyAfter(keras.callbacks.Callback):
        accuracy = None

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                self.accuracy = common.keras_accuracy(self.model, data)
    return AccuracyAfter()


def timed_train(model, data, epochs, lr, callbacks=()):
    t = time.perf_counter()
    common.train(model, data, epochs, batch_size=BATCH, lr=lr,
                 callbacks=callbacks)
    return round(time.perf_counter() - t, 1)


def finetune_rate(args, keras_module, samples, epochs, schedule=None):
    """The learning rate of one fine-tune stage of ``epochs`` epochs over
    ``samples`` images: ``--finetune-lr``, or with ``--finetune-schedule
    cosine`` (or ``schedule="cosine"``) a cosine decay from it to 0 over
    the stage's steps."""
    if (schedule or args.finetune_schedule) != "cosine":
        return args.finetune_lr
    steps = int(np.ceil(samples / BATCH)) * epochs
    return keras_module.optimizers.schedules.CosineDecay(args.finetune_lr,
                                                         steps)


DISTILL_T, DISTILL_ALPHA = 4.0, 0.3


def timed_distill(model, data, teacher_logits, epochs, lr, callbacks=()):
    """``timed_train`` with a ``tfcompress.distill.Distiller`` on the
    teacher's precomputed logits (T=4, alpha=0.3)."""
    import keras
    from tfcompress.distill import Distiller
    (xt, yt), _ = data
    d = Distiller(model, None, temperature=DISTILL_T, alpha=DISTILL_ALPHA)
    d.compile(optimizer=keras.optimizers.Adam(lr))
    t = time.perf_counter()
    d.fit(xt, (yt, teacher_logits), epochs=epochs, batch_size=BATCH,
          verbose=0, callbacks=list(callbacks))
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
    row = {"train_seconds": {}, "path_seconds": {}, "paths": {},
           "size": args.size, "onednn": onednn_in_use()}
    secs, path_seconds = row["train_seconds"], row["path_seconds"]

    wanted = args.paths.split(",")

    def step(key, fn):
        """Runs one path (if chosen with --paths); its error goes in the
        row instead of aborting."""
        if key not in wanted:
            return
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:
            row["paths"][key] = {"error": error_text(e)}
            print(f"[{name}] {key} failed: {error_text(e)}", flush=True)
        path_seconds[key] = round(time.perf_counter() - t, 1)

    scale = 255.0 if MODELS[name][2] else 1.0

    def record(key, tflite_bytes, seconds, keras_model=None,
               keras_out=None):
        fig = flatbuffer_figures(tflite_bytes, data,
                                 os.path.join(tmp, f"{name}_{key}.tflite"),
                                 scale)
        outputs, step = fig.pop("_outputs"), fig.pop("_step")
        fig["conversion_s"] = seconds
        if keras_model is not None:
            fig["agreement"] = agreement(outputs, step, keras_model,
                                         data[1][0], keras_out)
        row["paths"].setdefault(key, {}).update(fig)
        print(f"[{name}] {key}: TFLite accuracy "
              f"{fig['tflite_accuracy']:.4f}", flush=True)

    def to_tflite(key, model, mode="int8", check=False, keras_out=None):
        r = convert(model, mode, strict=mode == "int8",
                    representative_data=calib)
        record(key, r.tflite_bytes, r.report["conversion_seconds"],
               model if check else None, keras_out)

    def test_outputs(model):
        """``model``'s outputs on the test images, computed once for its
        accuracy and its flatbuffer's agreement."""
        return model.predict(data[1][0], batch_size=500, verbose=0)

    def accuracy_of(outputs):
        return float(np.mean(np.argmax(outputs, 1) == data[1][1]))

    t_float = time.perf_counter()
    keras.utils.set_random_seed(0)
    fl = build(name, keras, args.size)
    row["params"] = int(fl.count_params())
    channel_from = channel_start(keras, args.channel_start_epoch)
    secs["float"] = timed_train(fl, data, E, FLOAT_LR, [channel_from]
                                if "channel_int8" in wanted else [])
    start = clone(fl)
    save_start_weights(start, start_weights_path(tmp, name))
    row["float_accuracy"] = common.keras_accuracy(fl, data)
    rate = finetune_rate(args, keras, len(xt), F)
    if args.finetune_schedule == "constant":
        after_f = accuracy_after(keras, F, data)   # one fit: one trace
        secs["float_continue"] = timed_train(fl, data, 2 * F, rate,
                                             [after_f])
        row["float_accuracy_plus_f"] = after_f.accuracy
    else:   # two stages, each its own decay, as pruning + PQAT
        secs["float_continue"] = timed_train(fl, data, F, rate)
        row["float_accuracy_plus_f"] = common.keras_accuracy(fl, data)
        secs["float_continue"] += timed_train(fl, data, F, rate)
    row["float_fair_accuracy"] = common.keras_accuracy(fl, data)
    row["float_epochs"], row["float_fair_epochs"] = E, E + 2 * F
    print(f"[{name}] float {row['float_accuracy']:.4f} after {E} epochs, "
          f"{row['float_fair_accuracy']:.4f} after {E + 2 * F}", flush=True)
    path_seconds["float_training"] = round(time.perf_counter() - t_float, 1)
    step("float32", lambda: to_tflite("float32", fl, "float32"))
    step("ptq_int8", lambda: to_tflite("ptq_int8", fl))
    step("converter_ptq_int8",
         lambda: record("converter_ptq_int8", *converter_int8(fl, calib)))

    delay = freeze_delay(args.qat_freeze_bn_delay)
    channel_delay = freeze_delay(getattr(args, "channel_freeze_bn_delay",
                                         args.qat_freeze_bn_delay))
    ema = getattr(args, "qat_ema_decay", 0.999)
    pct = range_percentile(getattr(args, "qat_activation_percentile", None))

    def qat():
        q = quantize.quantize_model(clone(start), quantize.Default8BitScheme(
            freeze_bn_delay=delay, ema_decay=ema,
            activation_percentile=pct))
        secs["qat"] = timed_train(q, data, F, rate)
        out = test_outputs(q)
        row["paths"]["qat_int8"] = {
            "keras_accuracy": accuracy_of(out),
            "freeze_bn_delay": delay}
        to_tflite("qat_int8", q, check=True, keras_out=out)
    step("qat_int8", qat)

    def pruned():
        p = prune.prune_low_magnitude(clone(start), prune.PolynomialDecay(
            0.0, SPARSITY, 0, max(1, int(0.7 * steps)),
            frequency=max(1, steps // 20)))
        secs["prune"] = timed_train(p, data, F, rate,
                                    [prune.UpdatePruningStep()])
        stripped = prune.strip_pruning(p)
        res = {"pruned_keras_accuracy": common.keras_accuracy(stripped,
                                                              data)}
        row["paths"]["pruned_pqat_int8"] = res
        q = quantize.quantize_model(stripped, quantize.PrunePreservingScheme(
            freeze_bn_delay=delay, ema_decay=ema,
            activation_percentile=pct))
        secs["prune_preserving_qat"] = timed_train(q, data, F, rate)
        out = test_outputs(q)
        res["keras_accuracy"] = accuracy_of(out)
        to_tflite("pruned_pqat_int8", q, check=True, keras_out=out)
    step("pruned_pqat_int8", pruned)

    kept = {}

    def channels():
        """Channel pruning with the fair float model's epoch budget:
        S float epochs (``--channel-start-epoch``, default E - F), F
        epochs pruning (sparsity ramps from 0 over the first 70% of them,
        then holds; at the float rate if S < E), shrink, E + F - S epochs
        fine-tuning the shrunk model: QAT, converted from its own ranges
        (``--channel-finetune qat``), or float, then post-training int8."""
        c = clone(start)
        S = args.channel_start_epoch
        c.set_weights(channel_from.weights)   # start's own when S == E
        sparsity = args.channel_sparsity
        cb = prune.ChannelPruning(channel_schedule(sparsity, steps),
                                  norm=args.channel_norm, model=c,
                                  allocation=args.channel_allocation)
        res = row["paths"].setdefault("channel_int8", {})
        schedule = args.channel_schedule or args.finetune_schedule
        tune = E + F - S
        crate = finetune_rate(args, keras, len(xt), tune, schedule)
        # pruning before epoch E replaces float epochs: at their rate
        prune_lr = FLOAT_LR if S < E else args.finetune_lr
        prune_rate = prune_lr if S < E else finetune_rate(
            args, keras, len(xt), F, schedule)
        res.update({"sparsity": sparsity, "epochs": E + 2 * F,
                    "start_epoch": S, "finetune_epochs": tune,
                    "prune_lr": prune_lr,
                    "norm": args.channel_norm,
                    "allocation": args.channel_allocation,
                    "distill": args.channel_distill,
                    "schedule": schedule,
                    "finetune": args.channel_finetune,
                    "freeze_bn_delay": channel_delay})
        if args.channel_distill:
            logits = start.predict(xt, batch_size=500, verbose=0)

            def fit(model, epochs, rate, callbacks=()):
                return timed_distill(model, data, logits, epochs, rate,
                                     callbacks)
        else:
            def fit(model, epochs, rate, callbacks=()):
                return timed_train(model, data, epochs, rate, callbacks)
        secs["channel_prune"] = fit(c, F, prune_rate, [cb])
        res.update(channel_counts(cb.summary()))
        res["masked_keras_accuracy"] = common.keras_accuracy(c, data)
        small = prune.shrink(c)
        res["shrunk_keras_accuracy"] = common.keras_accuracy(small, data)
        x_check = data[1][0][:AGREEMENT_SAMPLES]
        res["shrink_max_abs_logit_difference"] = float(np.max(np.abs(
            c.predict(x_check, batch_size=250, verbose=0) -
            small.predict(x_check, batch_size=250, verbose=0))))
        from tfcompress.ptq import reestimate_batchnorm
        res["shrunk_bn_reestimated_keras_accuracy"] = common.keras_accuracy(
            reestimate_batchnorm(small, xt, samples=1000), data)
        res.update({
            "params": int(small.count_params()),
            "params_ratio": small.count_params() / fl.count_params(),
            "mac_ratio": prune.count_macs(small) / prune.count_macs(fl)})
        qat_finetune = args.channel_finetune == "qat"
        if qat_finetune:
            small = quantize.quantize_model(small, quantize.Default8BitScheme(
                freeze_bn_delay=channel_delay, ema_decay=ema,
                activation_percentile=pct))
        secs["channel_finetune"] = fit(small, tune, crate)
        out = test_outputs(small)
        res["keras_accuracy"] = accuracy_of(out)
        print(f"[{name}] channel {sparsity:.0%}: masked "
              f"{res['masked_keras_accuracy']:.4f}, shrunk "
              f"{res['shrunk_keras_accuracy']:.4f}, fine-tuned "
              f"{res['keras_accuracy']:.4f}, MACs {res['mac_ratio']:.2%}",
              flush=True)
        kept["channel_int8"] = small
        to_tflite("channel_int8", small, check=qat_finetune,
                  keras_out=out)
    step("channel_int8", channels)
    if "ptq_int8" in wanted and "error" not in row["paths"].get(
            "ptq_int8", {}):
        kept["ptq_int8"] = fl
    for size in speed_sizes_of(name, args):
        t = time.perf_counter()
        speed = row.setdefault("speed", {}).setdefault(str(size), {})
        for key, model in kept.items():
            try:
                speed[key] = speed_flatbuffer(model, name, key, size, args,
                                              tmp)
            except Exception as e:
                speed[key] = {"error": error_text(e)}
                print(f"[{name}] {key} at {size}x{size} failed: "
                      f"{error_text(e)}", flush=True)
        path_seconds[f"speed_{size}px"] = round(time.perf_counter() - t, 1)
    return row


def speed_sizes_of(name, args):
    """The --speed-size sides ``name`` is timed at: all of them for the
    --speed-models, none for the others."""
    return list(args.speed_sizes) if name in args.speed_models else []


def channel_start(keras_module, epoch):
    """A callback keeping the float model's weights after ``epoch``
    epochs of the fit it is given to (``.weights``; 0: before the
    first), where the channel path starts pruning."""
    class ChannelStart(keras_module.callbacks.Callback):
        weights = None

        def on_train_begin(self, logs=None):
            if epoch == 0:
                self.weights = self.model.get_weights()

        def on_epoch_end(self, index, logs=None):
            if index + 1 == epoch:
                self.weights = self.model.get_weights()
    return ChannelStart()


def freeze_delay(steps):
    """``freeze_bn_delay`` for a ``--*-freeze-bn-delay`` value: a negative
    value (or none) means never.

    >>> freeze_delay(0), freeze_delay(200), freeze_delay(-1)
    (0, 200, None)
    """
    return None if steps is None or steps < 0 else steps


def range_percentile(pct):
    """``activation_percentile`` for the QAT schemes from a
    ``--*activation-percentile`` value: ``None`` (each batch's min and
    max) for 100, or for results saved before the option.

    >>> range_percentile(99.99), range_percentile(100), range_percentile(None)
    (99.99, None, None)
    """
    return None if pct is None or pct >= 100 else pct


def channel_schedule(sparsity, steps):
    """0 -> ``sparsity`` over about 70% of ``steps``, 20 updates. The
    ramp ends on an update step: a schedule updates only every
    ``frequency`` steps, so an end between two updates would leave the
    last update just short of ``sparsity`` (one channel fewer removed
    per space, as channel counts are rounded down).

    >>> s = channel_schedule(0.5, 94)
    >>> (s.end_step, s.frequency)
    (64, 4)
    """
    from tfcompress import prune
    return prune.PolynomialDecay.ramp(sparsity, steps, end_fraction=0.7,
                                      updates=20)


def channel_counts(summary):
    """Channels in the pruned spaces and how many pruning kept."""
    total = sum(r["channels"] for r in summary)
    kept = sum(r["kept"] for r in summary)
    return {"prunable_channels": total, "kept_channels": kept,
            "removed_channel_fraction": 1 - kept / total if total else 0.0,
            "channel_spaces": len(summary)}


def at_input_size(model, size):
    """The functional ``model`` with a ``size`` x ``size`` input and the
    same weights (convolution weights do not depend on the image size).

    >>> import keras
    >>> m = build("mobilenet_v2", keras, 32)
    >>> tuple(at_input_size(m, 96).input.shape)
    (None, 96, 96, 3)
    """
    config = model.get_config()
    for entry in config["layers"]:
        entry.pop("build_config", None)   # input shapes change
        if entry["class_name"] == "InputLayer":
            shape = list(entry["config"]["batch_shape"])
            shape[1:-1] = [size] * (len(shape) - 2)
            entry["config"]["batch_shape"] = shape
    new = model.__class__.from_config(config)
    new.set_weights(model.get_weights())
    return new


def speed_flatbuffer(model, name, key, size, args, tmp):
    """int8 flatbuffer of ``model`` rebuilt at ``size`` (calibrated on
    the same training images at that size), written for timing."""
    from tfcompress.convert import convert
    from tfcompress.utils.atomic import atomic_write_bytes
    raw = common.fashion_mnist(args.calibration_samples, 1)
    (calib, _), _ = images(raw, size, MODELS[name][2])
    big = at_input_size(model, size)
    r = convert(big, "int8", strict=True, representative_data=calib)
    path = os.path.join(tmp, f"{name}_{key}_{size}.tflite")
    atomic_write_bytes(path, r.tflite_bytes)
    from tfcompress.prune import count_macs
    print(f"[{name}] {key} at {size}x{size}: "
          f"{len(r.tflite_bytes):,} bytes", flush=True)
    return {"size_bytes": len(r.tflite_bytes), "macs": count_macs(big),
            "conversion_s": r.report["conversion_seconds"], "path": path}


# ----------------------------------------------------------- tfmot side
def tfmot_side(args):
    """tfmot 0.8.1 on tf_keras.applications: float (tfcompress's E-epoch
    weights when ``run_model`` saved them) -> prune 50% -> prune-preserving
    QAT -> TFLite int8. Prints one JSON object."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as k
    name = args.tfmot_side
    data = load(args, name)
    (x, y), _ = data
    E, F = args.epochs, args.finetune_epochs
    steps = int(np.ceil(len(x) / BATCH)) * F
    out = {"tfmot": tfmot.__version__, "int8_from": None,
           "onednn": onednn_in_use()}
    rate = finetune_rate(args, k, len(x), F)

    def fit(m, epochs, lr, callbacks=()):
        m.compile(k.optimizers.Adam(lr),
                  k.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
        m.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0,
              callbacks=list(callbacks))

    k.utils.set_random_seed(0)
    m = build(name, k, args.size)
    path = start_weights_path(args.out, name)
    if os.path.exists(path) and load_start_weights(m, path):
        out["float_from"] = (f"tfcompress's float model after {E} epochs "
                             "(the same weights)")
    else:
        fit(m, E, 1e-3)
        out["float_from"] = f"trained {E} epochs with tf_keras"
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
        fit(p, F, rate, [s.UpdatePruningStep()])
        final = s.strip_pruning(p)
        out["pruned_keras_accuracy"] = common.keras_accuracy(final, data)
        label = "pruned model, post-training int8"
    try:
        q = tfmot.quantization.keras
        scheme = tfmot.experimental.combine.\
            Default8BitPrunePreserveQuantizeScheme()
        qat = q.quantize_apply(q.quantize_annotate_model(final), scheme)
    except Exception as e:
        out["qat_error"] = error_text(e)
    else:
        fit(qat, F, rate)
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
        fig = flatbuffer_figures(
            tfl, data, os.path.join(args.out, f"{name}_tfmot.tflite"),
            255.0 if MODELS[name][2] else 1.0)
        fig.pop("_outputs"), fig.pop("_step")
        out.update(fig)
    print(json.dumps(out))


def start_weights_path(folder, name):
    return os.path.join(folder, f"{name}_float_start.npz")


def save_start_weights(model, path):
    """The float model's weights after E epochs, in layer order, for
    tfmot's side to start from (``load_start_weights``)."""
    np.savez(path, *model.get_weights())


def load_start_weights(model, path):
    """Sets ``model``'s weights (the same architecture built with the other
    Keras) from ``save_start_weights``' file; False, leaving the model as
    it was, when their count or shapes differ."""
    with np.load(path) as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    current = model.get_weights()
    if len(weights) != len(current) or any(
            w.shape != c.shape for w, c in zip(weights, current)):
        return False
    model.set_weights(weights)
    return True


# the options tfmot's side reads, and those run_model reads, passed on to
# their processes
TFMOT_SIDE_OPTIONS = ("size", "epochs", "finetune_epochs", "train_samples",
                      "test_samples", "calibration_samples", "finetune_lr",
                      "finetune_schedule", "threads")
MODEL_SIDE_OPTIONS = TFMOT_SIDE_OPTIONS + (
    "paths", "channel_sparsity", "channel_norm", "channel_allocation",
    "speed_size", "speed_models",
    "channel_distill", "channel_finetune", "qat_freeze_bn_delay",
    "qat_ema_decay", "qat_activation_percentile", "channel_schedule",
    "channel_freeze_bn_delay", "channel_start_epoch")


def side_command(side, name, args, tmp, options):
    """The command running this script's ``--<side> name`` with ``args``'
    ``options``, writing to ``tmp``."""
    cmd = [sys.executable, os.path.abspath(__file__), f"--{side}", name,
           "--out", tmp]
    for key in options:
        value, flag = getattr(args, key), f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            cmd += [flag] if value else []
        elif isinstance(value, list):
            cmd += [flag, ",".join(value)]
        elif value is not None:
            cmd += [flag, str(value)]
    return cmd


def model_side_command(name, args, tmp):
    """The command running ``run_model(name)`` with ``args``' options in a
    process of its own."""
    return side_command("model-side", name, args, tmp,
                        MODEL_SIDE_OPTIONS) + ["--models", name,
                                               "--jobs", "1"]


def model_row(name, args, tmp):
    """``run_model``'s row, or its error as the row."""
    try:
        return run_model(name, args, tmp)
    except Exception as e:
        print(f"[{name}] failed: {error_text(e)}", flush=True)
        return {"error": error_text(e)}


def run_model_side(name, args, tmp):
    """``run_model`` in a process of its own (``--jobs`` > 1): its
    progress lines are passed on, its last line is the row."""
    proc = subprocess.Popen(model_side_command(name, args, tmp),
                            stdout=subprocess.PIPE, text=True,
                            env=onednn_env(args))
    row = None
    for line in proc.stdout:
        if line.startswith("{"):
            row = json.loads(line)
        else:
            print(line, end="", flush=True)
    if proc.wait() != 0 or row is None:
        print(f"[{name}] failed (exit {proc.returncode}): see the lines "
              "above", flush=True)
        return {"error": f"model process exited with {proc.returncode}"}
    return row


def run_tfmot(name, args, tmp):
    cmd = side_command("tfmot-side", name, args, tmp, TFMOT_SIDE_OPTIONS)
    print(f"[{name}] tfmot side ...", flush=True)
    t = time.perf_counter()
    result = common.json_child(
        cmd, env=onednn_env(args, TF_CPP_MIN_LOG_LEVEL="3"), timeout=7200)
    return dict(result, wall_seconds=round(time.perf_counter() - t, 1))


# ----------------------------------------------------------- reporting
PATHS = [("float32", "float32"), ("ptq_int8", "post-training int8"),
         ("qat_int8", "QAT int8"),
         ("pruned_pqat_int8", "pruned 50% + PQAT int8"),
         ("channel_int8", "channel-pruned int8"),
         ("converter_ptq_int8", "TFLite converter's own PTQ int8")]


def points(difference):
    """An accuracy difference in points, rounded to 1e-6: accuracies are
    counts over the test images, so a drop of exactly 0.5 points must not
    read 0.5000000000000004."""
    return round(100 * difference, 6)


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
    # QAT fine-tunes F epochs from the E-epoch float model: its baseline is
    # the float model trained as long in total (E + F epochs)
    qat_base_key = ("float_accuracy_plus_f" if "float_accuracy_plus_f" in
                    row else "float_fair_accuracy")
    qat_base = row.get(qat_base_key)
    qat = paths.get("qat_int8", {}).get("tflite_accuracy")
    if qat_base is not None and "qat_int8" in paths:
        aims["qat_within_0.5_points"] = (
            {"met": None, "why": paths.get("qat_int8", {}).get("error")}
            if qat is None else
            {"met": points(qat_base - qat) <= QAT_TOLERANCE_POINTS,
             "drop_points": round(100 * (qat_base - qat), 2),
             "baseline": qat_base_key})
    ptq, ch = paths.get("ptq_int8", {}), paths.get("channel_int8", {})
    if "p50_ms_xnnpack" in ptq and "p50_ms_xnnpack" in ch:
        ch["int8_speedup_vs_unpruned"] = (ptq["p50_ms_xnnpack"] /
                                          ch["p50_ms_xnnpack"])
        ch["int8_speedup_vs_unpruned_no_xnnpack"] = (
            ptq["p50_ms_no_xnnpack"] / ch["p50_ms_no_xnnpack"])
        drop = points(ptq["tflite_accuracy"] - ch["tflite_accuracy"])
        ch["drop_points_vs_unpruned_int8"] = drop
        aims["channel_1.5x_at_1.5_points"] = {
            "met": ch["int8_speedup_vs_unpruned"] >= CHANNEL_SPEEDUP_AIM
            and drop <= CHANNEL_DROP_POINTS,
            "speedup": round(ch["int8_speedup_vs_unpruned"], 2),
            "speedup_no_xnnpack": round(
                ch["int8_speedup_vs_unpruned_no_xnnpack"], 2),
            "drop_points": round(drop, 2),
            "size": row.get("size")}
    if "tflite_accuracy" in ch and base is not None:
        ch["drop_points_vs_float_fair"] = 100 * (base -
                                                 ch["tflite_accuracy"])
    for size, at in row.get("speed", {}).items():
        p, c = at.get("ptq_int8", {}), at.get("channel_int8", {})
        if "p50_ms_xnnpack" not in p or "p50_ms_xnnpack" not in c:
            continue
        c["int8_speedup_vs_unpruned"] = (p["p50_ms_xnnpack"] /
                                         c["p50_ms_xnnpack"])
        c["int8_speedup_vs_unpruned_no_xnnpack"] = (
            p["p50_ms_no_xnnpack"] / c["p50_ms_no_xnnpack"])
        c["mac_ratio"] = c["macs"] / p["macs"]
        if "drop_points_vs_unpruned_int8" in ch:
            # accuracy is the trained size's: these weights, larger input
            drop = ch["drop_points_vs_unpruned_int8"]
            aims[f"channel_1.5x_at_1.5_points_{size}px"] = {
                "met": c["int8_speedup_vs_unpruned"] >= CHANNEL_SPEEDUP_AIM
                and drop <= CHANNEL_DROP_POINTS,
                "speedup": round(c["int8_speedup_vs_unpruned"], 2),
                "speedup_no_xnnpack": round(
                    c["int8_speedup_vs_unpruned_no_xnnpack"], 2),
                "drop_points": round(drop, 2), "size": int(size)}
    qat_r, conv = paths.get("qat_int8", {}), paths.get("converter_ptq_int8",
                                                       {})
    ag = qat_r.get("agreement")
    if ag:
        aims["qat_top1_agreement_98"] = {
            "met": ag["top1_agreement"] >= AGREEMENT_AIM,
            "agreement": round(ag["top1_agreement"], 4),
            "samples": ag["samples"]}
        if "device_rounding" in ag:
            aims["qat_top1_agreement_98"]["with_device_rounding"] = round(
                ag["device_rounding"]["top1_agreement"], 4)
    if "p50_ms_xnnpack" in qat_r and "p50_ms_xnnpack" in conv:
        ratios = {x: qat_r[f"p50_ms_{x}"] / conv[f"p50_ms_{x}"]
                  for x in ("xnnpack", "no_xnnpack")}
        qat_r["p50_vs_converter_ptq"] = ratios
        timing = "all flatbuffers"
        if "pair_p50_ms" in qat_r and "pair_p50_ms" in conv:
            # the two timed alternately on their own, over more rounds
            ratios = {x: qat_r["pair_p50_ms"][x] / conv["pair_p50_ms"][x]
                      for x in ("xnnpack", "no_xnnpack")}
            qat_r["pair_p50_vs_converter_ptq"] = ratios
            timing = "pair"
        extra = {op: qat_r["op_counts"].get(op, 0) - n
                 for op, n in conv["op_counts"].items()
                 if qat_r["op_counts"].get(op, 0) != n}
        extra.update({op: n for op, n in qat_r["op_counts"].items()
                      if op not in conv["op_counts"]})
        qat_r["op_count_difference_vs_converter_ptq"] = extra
        aims["qat_p50_within_5pct_of_converter_ptq"] = {
            "met": max(ratios.values()) <= 1 + LATENCY_TOLERANCE,
            "ratio_xnnpack": round(ratios["xnnpack"], 3),
            "ratio_no_xnnpack": round(ratios["no_xnnpack"], 3),
            "timing": timing, "op_difference": extra}
    row["aims"] = aims


def onednn_note(results):
    """Which models trained with TensorFlow's oneDNN kernels."""
    used = {n: r["onednn"] for n, r in results.items() if "onednn" in r}
    if not used:
        return ""
    return " oneDNN (TF_ENABLE_ONEDNN_OPTS) while training: " + ", ".join(
        f"{n} {v}" for n, v in used.items()) + "."


def freeze_note(args):
    """The markdown's sentence on frozen batch norm: QAT and PQAT's
    setting, and the channel path's QAT where it differs."""
    qat = freeze_delay(getattr(args, "qat_freeze_bn_delay", None))
    channel = freeze_delay(getattr(args, "channel_freeze_bn_delay",
                                   getattr(args, "qat_freeze_bn_delay",
                                           None)))
    text = (f" QAT and PQAT with batch norm frozen after {qat} steps "
            "(freeze_bn_delay)." if qat is not None else "")
    if channel != qat:
        text += (f" The channel path's QAT with batch norm frozen after "
                 f"{channel} steps." if channel is not None else
                 " The channel path's QAT with batch statistics "
                 "throughout.")
    return text


def _f(v, fmt="{:.4f}"):
    if v is None:
        return "—"
    return fmt.format(v) if isinstance(v, (int, float)) else str(v)


def markdown(results, args):
    cmd = getattr(args, "command", None) or " ".join(
        ["python"] + [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    lines = [f"Command: `{cmd}`", "",
             f"{args.train_samples or 60000} training / "
             f"{args.test_samples or 10000} test images, {args.size}x"
             f"{args.size}x3, E={args.epochs}, F={args.finetune_epochs} "
             f"(fine-tune learning rate "
             f"{getattr(args, 'finetune_lr', FT_LR):g}"
             + (", cosine decay to 0 within each stage"
                if getattr(args, "finetune_schedule", "") == "cosine"
                else "")
             + (f"; the channel path's: {args.channel_schedule}"
                if getattr(args, "channel_schedule", None) not in (
                    None, getattr(args, "finetune_schedule", None))
                else "") + "); "
             "float E + F = as long as QAT; float fair = E + 2F epochs "
             "(as long as pruning + PQAT), the model float32 and PTQ "
             "convert." + (f" Models trained {args.jobs} at a time, each "
                           "in its own process: training and conversion "
                           "seconds are measured with the cores shared; "
                           "latency is timed afterwards, one flatbuffer "
                           "at a time." if getattr(args, "jobs", 1) > 1
                           else "") +
             freeze_note(args) +
             (f" QAT ranges: ema_decay {args.qat_ema_decay:g}."
              if getattr(args, "qat_ema_decay", 0.999) != 0.999 else "") +
             (f" QAT ranges follow each batch's "
              f"{args.qat_activation_percentile:g}th percentile "
              "(activation_percentile)."
              if range_percentile(getattr(
                 args, "qat_activation_percentile", None)) is not None
              else "") + onednn_note(results),
             "",
             "### Accuracy (TFLite, test set)", "",
             "| model | float E | float E+F | float fair | float32 | "
             "PTQ int8 | QAT int8 | pruned+PQAT int8 (sparsity) | channel "
             "int8 (MACs) | tfmot int8 |", "|---" * 10 + "|"]
    for name, row in results.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} |" +
                         " |" * 8)
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
                   if t.get("int8_from") else
                   "not run" if t.get("error", "").startswith("not run")
                   else "failed")
        lines.append(
            f"| {name} | {_f(row['float_accuracy'])} | "
            f"{_f(row.get('float_accuracy_plus_f'))} | "
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
            if not r:
                continue   # not chosen with --paths
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
    lines += channel_lines(results) + speed_lines(results)
    lines += ["", "### int8 flatbuffer vs its Keras model; QAT vs the "
              "converter's own int8", "",
              f"Agreement on the {args.test_samples or 10000} test images: "
              "top-1 of the int8 TFLite logits vs the Keras QAT model's; "
              "logit error in output quantization steps (dequantized). "
              "p50 ratio: QAT int8 p50 / the TFLite converter's own "
              "post-training int8 p50 of the fair float model (XNNPACK / "
              "built-in); op difference: QAT op counts minus the "
              "converter's (none = the same ops). Device rounding: the "
              "same Keras model evaluated inside "
              "`quantize.device_rounding` (top-1 agreement / mean error "
              "in steps).", "",
              "| model | flatbuffer | top-1 agreement | mean / p99 / max "
              "error (steps) | within 1 step | device rounding | p50 "
              "ratio vs converter PTQ | op difference |", "|---" * 8 + "|"]
    for name, row in results.items():
        for key in ("qat_int8", "pruned_pqat_int8", "channel_int8"):
            r = row.get("paths", {}).get(key, {})
            a = r.get("agreement")
            if not a:
                continue
            steps = (f"{a['mean_error_steps']:.2f} / "
                     f"{a['p99_error_steps']:.2f} / "
                     f"{a['max_error_steps']:.2f}"
                     if "mean_error_steps" in a else "—")
            ratio = r.get("p50_vs_converter_ptq")
            ratio = (f"{ratio['xnnpack']:.3f} / {ratio['no_xnnpack']:.3f}"
                     if ratio else "—")
            diff = r.get("op_count_difference_vs_converter_ptq")
            diff = ("—" if diff is None else ", ".join(
                f"{k} {v:+d}" for k, v in diff.items()) or "none")
            d = a.get("device_rounding")
            device = "—" if d is None else \
                f"{d['top1_agreement']:.2%} / " + \
                _f(d.get("mean_error_steps"), "{:.2f}")
            lines.append(
                f"| {name} | {dict(PATHS)[key]} | "
                f"{a['top1_agreement']:.2%} | {steps} | "
                f"{_f(a.get('within_one_step'), '{:.2%}')} | {device} | "
                f"{ratio} | {diff if key == 'qat_int8' else '—'} |")
    starts = {r["tfmot"].get("float_from") for r in results.values()
              if r.get("tfmot", {}).get("float_from")}
    if starts:
        lines += ["", "tfmot's float model: " + "; ".join(sorted(starts))
                  + "."]
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
    lines += time_lines(results)
    lines += ["", "### Aims", ""] + aim_lines(results)
    return "\n".join(lines) + "\n"


def time_lines(results):
    """Where each model's wall seconds went: float training (with its
    evaluations), each path (training, conversion, checks), latency at
    the ``--speed-size`` inputs, tfmot's side.

    >>> rows = {"m": {"wall_seconds": 100.0, "tfmot": {"wall_seconds": 20.0},
    ...               "path_seconds": {"float_training": 50.0,
    ...                                "qat_int8": 25.0, "speed_96px": 5.0}}}
    >>> print("\\n".join(time_lines(rows)[3:]))
    | model | wall | float training | qat_int8 | speed_96px | tfmot |
    |---|---:|---:|---:|---:|---:|
    | m | 100 | 50 | 25 | 5 | 20 |
    """
    keys = []
    for row in results.values():
        keys += [k for k in row.get("path_seconds", {}) if k not in keys]
    if not keys:
        return []
    out = ["", "### Wall seconds per model (cores shared with the other "
           "jobs)", "",
           "| model | wall | " + " | ".join(k.replace("_", " ")
                                           if k == "float_training" else k
                                           for k in keys) + " | tfmot |",
           "|---|---:|" + "---:|" * (len(keys) + 1)]
    for name, row in results.items():
        secs = row.get("path_seconds", {})
        cells = [f"{secs[k]:.0f}" if k in secs else "" for k in keys]
        tf = row.get("tfmot", {}).get("wall_seconds")
        out.append(f"| {name} | {row.get('wall_seconds', 0):.0f} | "
                   + " | ".join(cells) + f" | "
                   + (f"{tf:.0f}" if tf is not None else "") + " |")
    return out


def ranking_note(rows):
    """How the channel path ranked channels (``--channel-norm``,
    ``--channel-distill``), as one sentence for the step table.

    >>> ranking_note([("m", {"norm": "bn_gamma", "distill": False,
    ...                          "finetune": "qat"})])
    ' Channels ranked by bn_gamma; the shrunk model fine-tuned with QAT.'
    """
    kinds = sorted({(c.get("norm", "l1"), bool(c.get("distill")),
                     c.get("finetune", "float"),
                     c.get("allocation", "uniform")) for _, c in rows})
    return "".join(f" Channels ranked by {norm}" +
                   (" across the whole model (global allocation)"
                    if allocation == "global" else "") +
                   (", pruned and fine-tuned with distillation from the "
                    "unpruned float model" if distill else "") +
                   ("; the shrunk model fine-tuned with QAT" if finetune ==
                    "qat" else "; the shrunk model fine-tuned in float, "
                    "then post-training int8") + "."
                   for norm, distill, finetune, allocation in kinds)


def channel_lines(results):
    """The channel path's steps: masked, shrunk, fine-tuned accuracy."""
    rows = [(n, r["paths"]["channel_int8"]) for n, r in results.items()
            if "masked_keras_accuracy" in r.get("paths", {}).get(
                "channel_int8", {})]
    if not rows:
        return []
    out = ["", "### Channel pruning, step by step", "",
           "The float model after S epochs (--channel-start-epoch, default "
           "E - F), F epochs channel pruning (sparsity ramps over 70% of "
           "them; at the float training's rate when S < E), shrink, "
           "E + F - S epochs fine-tuning the shrunk model (E + 2F in all, "
           "as the fair float model)." + start_note(rows) + " Keras accuracy; "
           "logit difference: largest |masked - shrunk| logit on the test "
           "images; BN re-estimated: the shrunk model with its "
           "BatchNormalization statistics re-estimated on 1,000 training "
           "images (not used further)." + ranking_note(rows), "",
           "| model | sparsity | channels kept | MACs | params | masked | "
           "shrunk | logit difference | BN re-estimated | fine-tuned | "
           "int8 TFLite |", "|---" * 11 + "|"]
    for name, c in rows:
        out.append(
            f"| {name} | {c['sparsity']:.0%} | {c['kept_channels']:,} / "
            f"{c['prunable_channels']:,} | {_f(c.get('mac_ratio'), '{:.1%}')}"
            f" | {_f(c.get('params'), '{:,}')} "
            f"({_f(c.get('params_ratio'), '{:.1%}')}) | "
            f"{_f(c['masked_keras_accuracy'])} | "
            f"{_f(c['shrunk_keras_accuracy'])} | "
            f"{c['shrink_max_abs_logit_difference']:.2e} | "
            f"{_f(c.get('shrunk_bn_reestimated_keras_accuracy'))} | "
            f"{_f(c.get('keras_accuracy'))} | "
            f"{_f(c.get('tflite_accuracy'))} |")
    return out


def start_note(rows):
    """The start epochs and fine-tune epochs of the channel ``rows``.

    >>> start_note([("m", {"start_epoch": 4, "finetune_epochs": 4})])
    ' Here S = 4, fine-tuned 4 epochs.'
    """
    found = sorted({(c["start_epoch"], c["finetune_epochs"])
                    for _, c in rows if "start_epoch" in c})
    return "".join(f" Here S = {s}, fine-tuned {t} epochs." for s, t in found)


def speed_lines(results):
    """Latency of the same int8 models rebuilt at --speed-size."""
    rows = [(n, size, at) for n, r in results.items()
            for size, at in r.get("speed", {}).items()]
    if not rows:
        return []
    out = ["", "### Latency at larger inputs (--speed-size)", "",
           "The trained weights in the same architectures at a larger "
           "input (convolution weights do not depend on it), int8 "
           "calibrated on the training images at that size; latency only "
           "(the models were trained at --size). LiteRT, 1 thread.", "",
           "| model | input | flatbuffer | MACs | bytes | p50 ms XNNPACK | "
           "p50 ms built-in | channel speed-up XNNPACK / built-in |",
           "|---" * 8 + "|"]
    for name, size, at in rows:
        for key, r in at.items():
            if "error" in r:
                out.append(f"| {name} | {size} | {key} | failed: "
                           f"{r['error']} |" + " |" * 4)
                continue
            sp = (f"{r['int8_speedup_vs_unpruned']:.2f} / "
                  f"{r['int8_speedup_vs_unpruned_no_xnnpack']:.2f}"
                  if "int8_speedup_vs_unpruned" in r else "—")
            out.append(
                f"| {name} | {size}x{size} | {dict(PATHS)[key]} | "
                f"{r['macs']:,} | {r['size_bytes']:,} | "
                f"{_f(r.get('p50_ms_xnnpack'), '{:.3f}')} | "
                f"{_f(r.get('p50_ms_no_xnnpack'), '{:.3f}')} | {sp} |")
    return out


def aim_lines(results):
    def met(ok):
        return "met" if ok else "missed"
    out = []
    for name, row in results.items():
        for aim, a in row.get("aims", {}).items():
            if aim.startswith("qat_within"):
                what = (f"QAT int8 within {QAT_TOLERANCE_POINTS} points of "
                        + ("the float model trained as long (E + F "
                           "epochs)" if a.get("baseline") ==
                           "float_accuracy_plus_f" else
                           "the fair float model"))
                fig = (f"drop {a['drop_points']} points" if a["met"] is not
                       None else f"not measured: {a['why']}")
            elif aim.startswith("qat_top1"):
                what = (f"QAT int8 TFLite top-1 agrees with the Keras QAT "
                        f"model on >= {AGREEMENT_AIM:.0%}")
                fig = f"{a['agreement']:.2%} of {a['samples']} inputs"
                if "with_device_rounding" in a:
                    fig += (f"; inside quantize.device_rounding: "
                            f"{a['with_device_rounding']:.2%}")
            elif aim.startswith("qat_p50"):
                what = (f"QAT int8 p50 within {LATENCY_TOLERANCE:.0%} of "
                        "the TFLite converter's own PTQ int8")
                timed = ("the two timed alternately on their own, "
                         f"{PAIR_REPEATS} rounds" if a.get("timing") ==
                         "pair" else "timed among all flatbuffers")
                fig = (f"ratio {a['ratio_xnnpack']} XNNPACK, "
                       f"{a['ratio_no_xnnpack']} built-in, {timed}; op "
                       f"difference {a['op_difference'] or 'none'}")
            else:
                size = a.get("size")
                at = (f" at {size}x{size}" if size else "")
                what = (f"channel-pruned int8 >= {CHANNEL_SPEEDUP_AIM}x "
                        f"faster than unpruned int8 (LiteRT, 1 thread, "
                        f"XNNPACK){at} at <= {CHANNEL_DROP_POINTS} points")
                if aim.endswith("px"):
                    what += (" (latency at this input size, the trained "
                             "weights unchanged; accuracy measured at the "
                             "trained size)")
                fig = (f"{a['speedup']}x XNNPACK, "
                       f"{a.get('speedup_no_xnnpack', '—')}x built-in; "
                       f"drop {a['drop_points']} points vs PTQ int8: "
                       f"speed-up {met(a['speedup'] >= CHANNEL_SPEEDUP_AIM)}"
                       f", accuracy "
                       f"{met(a['drop_points'] <= CHANNEL_DROP_POINTS)}")
            state = {True: "MET", False: "MISSED", None: "NOT MEASURED"}[
                a["met"]]
            out.append(f"- {name}: {what}: **{state}** ({fig})")
    return out or ["- none measured"]


def kept_paths(results, folder):
    """Gives each figure of a finished run's ``results`` that names its
    flatbuffer (``file``) the ``path`` of it in ``folder`` (the run's
    ``--keep``), to time it again; returns the files not found there."""
    missing = []
    for row in results.values():
        for res in (list(row.get("paths", {}).values()) +
                    [row.get("tfmot", {})] +
                    [v for at in row.get("speed", {}).values()
                     for v in at.values()]):
            if "file" not in res:
                continue
            path = os.path.join(folder, res["file"])
            if os.path.isfile(path):
                res["path"] = path
            else:
                missing.append(res["file"])
    return missing


def time_pairs(results, runs):
    """Times each model's QAT int8 flatbuffer and the converter's own
    post-training int8 alternately, the two alone, ``PAIR_REPEATS``
    rounds, XNNPACK on and off: ``pair_p50_ms`` of each, which the QAT p50
    aim reads (one round among all flatbuffers moves by more than the
    aim's 5% on the built-in kernels)."""
    for row in results.values():
        paths = row.get("paths", {})
        pair = [paths.get(k, {}) for k in ("qat_int8", "converter_ptq_int8")]
        if not all("path" in res for res in pair):
            continue
        for res in pair:
            res["pair_p50_ms"] = {}
        for xnn in (True, False):
            p50 = common.alternating_p50([res["path"] for res in pair], runs,
                                         PAIR_REPEATS, xnnpack=xnn)
            for res in pair:
                res["pair_p50_ms"]["xnnpack" if xnn else "no_xnnpack"] = \
                    p50[res["path"]]


def time_and_report(results, args, save):
    """Times every flatbuffer still on disk, derives ratios and aims,
    writes the JSON and Markdown; returns the timing seconds."""
    timed = [res for r in results.values()
             for res in list(r.get("paths", {}).values()) +
             [r.get("tfmot", {})] + [v for at in r.get("speed", {}).values()
                                     for v in at.values()]
             if "path" in res]
    paths = [res["path"] for res in timed]
    t = time.perf_counter()
    for xnn in (True, False):
        p50 = common.alternating_p50(paths, args.runs, args.repeats,
                                     xnnpack=xnn) if paths else {}
        for res in timed:
            key = "p50_ms_xnnpack" if xnn else "p50_ms_no_xnnpack"
            res[key] = p50[res["path"]]
    time_pairs(results, args.runs)
    timing_s = round(time.perf_counter() - t, 1)
    for res in timed:
        res["file"] = os.path.basename(res.pop("path"))
    for row in results.values():
        if "paths" in row:
            finish(row)
    save(True, timing_s)
    table = markdown(results, args)
    common.save_markdown(args.name, table)
    print(table)
    return timing_s


def use_onednn_here(args):
    """With ``--jobs 1`` the models train in this process: it takes the
    ``--onednn`` setting if TensorFlow is not imported yet (TensorFlow
    reads it once, at import)."""
    if "tensorflow" not in sys.modules:
        os.environ.update(onednn_variable(args))


def main(argv=None):
    args = parse_args(argv)
    if args.jobs == 1 and not (args.model_side or args.tfmot_side):
        use_onednn_here(args)
    if args.model_side or args.tfmot_side or args.jobs == 1:
        use_threads(args.threads)   # the process that trains
    if TFMOT_SIDE or args.tfmot_side:
        return tfmot_side(args)
    if args.model_side:
        row = model_row(args.model_side, args, args.out)
        print(json.dumps(row, default=str), flush=True)
        return row
    t0 = time.perf_counter()
    args_out = {k: v for k, v in vars(args).items()
                if k not in ("tfmot_side", "model_side", "out")}
    results, before = {}, 0.0

    def save(complete, timing_s=None):
        common.save(args.name, {
            "args": args_out, "complete": complete, "models": results,
            "timing_seconds": timing_s,
            "total_seconds": round(before + time.perf_counter() - t0, 1)})
    if args.time_only:
        # an interrupted run: its trained models' rows and kept flatbuffers
        with open(os.path.join(common.RESULTS, f"{args.name}.json")) as f:
            saved = json.load(f)
        results, before = saved["models"], saved["total_seconds"]
        if saved.get("complete"):
            # a finished run timed again: its flatbuffers are in its --keep
            folder = args.keep or saved["args"].get("keep")
            missing = kept_paths(results, folder or "")
            if missing:
                raise SystemExit(f"--time-only: {len(missing)} flatbuffers "
                                 f"of the run are not in {folder!r} (e.g. "
                                 f"{missing[0]}); give the run's --keep")
            before -= saved.get("timing_seconds") or 0.0
        args_out = dict(saved["args"], runs=args.runs, repeats=args.repeats)
        trained = argparse.Namespace(**args_out)
        trained.command = (saved["command"] + " (trained), then "
                           + " ".join(sys.argv[1:]) + " (timed)")
        time_and_report(results, trained, save)
        return results
    tmp = args.keep or tempfile.mkdtemp(prefix="zoo_")
    os.makedirs(tmp, exist_ok=True)
    names = args.models.split(",")

    def tfcompress_paths(name):
        t = time.perf_counter()
        row = (run_model_side(name, args, tmp) if args.jobs > 1 else
               model_row(name, args, tmp))
        row["wall_seconds"] = round(time.perf_counter() - t, 1)
        return name, "tfcompress", row

    def tfmot_paths(name):
        return name, "tfmot", run_tfmot(name, args, tmp)

    def wants_tfmot(name):
        return not args.no_tfmot and "tfmot" in args.paths.split(",") and \
            name in (args.tfmot_models or args.models).split(",")
    try:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            order = sorted(names, key=lambda n: -RELATIVE_COST.get(n, 1))
            pending = {pool.submit(tfcompress_paths, n) for n in order}
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    name, side, part = future.result()
                    if side == "tfmot":
                        results[name]["tfmot"] = part
                        results[name]["wall_seconds"] += part["wall_seconds"]
                    else:
                        results[name] = part
                        if wants_tfmot(name):
                            # its own task, from the float start the
                            # model's process saved, so that it fills a
                            # free core instead of lengthening the model's
                            pending.add(pool.submit(tfmot_paths, name))
                    save(False)   # an interrupted run keeps what it trained
        results = {n: results[n] for n in names}
        time_and_report(results, args, save)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    from tfcompress.quiet import filter_native_stderr_live
    filter_native_stderr_live()   # TensorFlow's log lines, not the figures
    main()
