"""``tfcompress convert MODEL.keras --mode int8 --data DATA --output OUT``."""

import os
import re
import sys
import time

from absl import flags

from tfcompress.commands import UsageError, command
from tfcompress.convert.options import CALIBRATIONS, IO_TYPES, MODES
from tfcompress.errors import InputError

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "int8", MODES, "convert: conversion mode.")
flags.DEFINE_string("data", None, "convert: calibration data: an .npz with "
                    "x_train (or x), or a data set name (fashion_mnist).")
flags.DEFINE_string("output", None, "convert: output .tflite path "
                    "(default: MODEL with a .tflite suffix).")
flags.DEFINE_enum("io_type", "float32", IO_TYPES,
                  "convert: input and output type.")
flags.DEFINE_enum("calibration", "minmax", CALIBRATIONS,
                  "convert: activation range method for int8.")
flags.DEFINE_integer("samples", 200, "convert: calibration samples.",
                     lower_bound=1)
flags.DEFINE_bool("strict", None, "convert: fail if ops stay float "
                  "(default: on for int8).")
flags.DEFINE_bool("sparse", False, "convert: store pruned weights sparse.")
flags.DEFINE_bool("per_channel", True, "convert: int8 weights with one "
                  "scale per output channel; --noper_channel gives one "
                  "scale per weight tensor.")
flags.DEFINE_list("float_layers", [], "convert: comma-separated Keras "
                  "layer names whose ops stay float32 in an int8 model "
                  "(e.g. fc1,conv2).")


# convert()'s argument spellings in its messages, as this command's flags
# (a name already written as a flag, --float_layers, is left as it is)
_ARG = r"(?<![-\w])"
_CLI_SPELLING = [
    (re.compile(_ARG + r"strict=False\b"), "--nostrict"),
    (re.compile(_ARG + r"strict=True\b"), "--strict"),
    (re.compile(_ARG + r"sparse=True\b"), "--sparse"),
    (re.compile(_ARG + r"per_channel=False\b"), "--noper_channel"),
    (re.compile(_ARG + r"calibration='(\w+)'"), r"--calibration \1"),
    (re.compile(_ARG + r"(input|output)_type\b"), "--io_type"),
    (re.compile(_ARG + r"representative_data\b"), "--data"),
    (re.compile(_ARG + r"float_layers\b"), "--float_layers"),
]


def cli_spelling(message):
    """``message`` with convert()'s argument names written as this
    command's flags.

    >>> cli_spelling("pass strict=False or representative_data")
    'pass --nostrict or --data'
    """
    for pattern, flag in _CLI_SPELLING:
        message = pattern.sub(flag, message)
    return message


def _progress(text):
    print(f"convert: {text}", file=sys.stderr, flush=True)


def _takes_raw_pixels(model):
    """True if ``model`` takes pixels in [0, 255]: its input is integer
    (uint8 pixels), or it scales them itself (a Rescaling or Normalization
    first: keras.applications MobileNetV3, EfficientNet, ConvNeXt, or a
    model built around one of them)."""
    from tfcompress.convert.inputs import input_dtypes
    from tfcompress.models.applications import rescales_input
    return input_dtypes(model)[0].kind in "iu" or rescales_input(model)


def _load_samples(spec, n, model):
    """Calibration inputs from ``--data``: a float .npz array as it is;
    uint8 images (an .npz, fashion_mnist, mnist) as pixels in [0, 1], or in
    [0, 255] when ``model`` takes raw pixels."""
    import numpy as np
    if spec is None:
        return None
    if spec.endswith(".npz"):
        if not os.path.isfile(spec):
            raise InputError(f"data file {spec} does not exist; give the "
                             "path of an existing .npz file")
        from tfcompress.data.datasets import read_npz
        for key in ("x_train", "x", "inputs"):
            arrays = read_npz(spec, (key,))
            if arrays:
                x = arrays[key][:n]
                break
        else:
            raise InputError(f"{spec} has no x_train, x or inputs array")
        if x.dtype != np.uint8:
            return x.astype("float32")
        from tfcompress.data import prepare_images
        x = prepare_images(x)
    elif spec in ("fashion_mnist", "mnist"):
        from tfcompress.recipes.runner import load_data
        (x, _), _ = load_data(spec, train_samples=n)
    else:
        raise InputError(f"--data {spec!r}: give an .npz file or "
                         "fashion_mnist / mnist")
    if _takes_raw_pixels(model):
        x = np.round(x * np.float32(255.0))
    return x.astype("float32")


@command("convert", "Convert a .keras model to TFLite and report on it.")
def convert_command(args):
    if len(args) != 1:
        raise UsageError("convert takes one model file: tfcompress convert "
                         "model.keras --mode int8 --data fashion_mnist")
    path = args[0]
    out = FLAGS.output or os.path.splitext(path)[0] + f"_{FLAGS.mode}.tflite"
    if os.path.abspath(out) == os.path.abspath(path):
        raise InputError(f"--output {out} is the model file itself; give "
                         "another path for the .tflite file")
    if out.lower().endswith((".keras", ".h5", ".hdf5")):
        raise InputError(f"--output {out} names a Keras model file, which "
                         "the flatbuffer would replace; give a .tflite path")
    _progress(f"loading {path}")
    from tfcompress.saving import load_model
    model = load_model(path, compile=False)
    from tfcompress.convert import (FloatFallbackError, UnrunnableModelError,
                                    convert)
    samples = _load_samples(FLAGS.data, FLAGS.samples, model)
    data = "" if samples is None else f" with {len(samples)} data samples"
    _progress(f"converting to {FLAGS.mode}{data} (calibration and "
              "conversion can take a minute)")
    start = time.monotonic()
    try:
        result = convert(model, FLAGS.mode,
                         representative_data=samples,
                         input_type=FLAGS.io_type, output_type=FLAGS.io_type,
                         output_path=out, strict=FLAGS.strict,
                         sparse=FLAGS.sparse, calibration=FLAGS.calibration,
                         per_channel=FLAGS.per_channel,
                         float_layers=FLAGS.float_layers or None)
    except (FloatFallbackError, UnrunnableModelError, InputError) as e:
        raise InputError(cli_spelling(str(e))) from None
    _progress(f"converted in {time.monotonic() - start:.1f} s")
    print(result.to_table())
    print(f"wrote {out}")
    return 0
