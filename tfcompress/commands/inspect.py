"""``tfcompress inspect MODEL.tflite [--json]``: what a flatbuffer holds."""

import json

from absl import flags

from tfcompress.commands import UsageError, command

FLAGS = flags.FLAGS
flags.DEFINE_bool("json", False, "inspect: print the report as JSON.")


@command("inspect", "Describe a .tflite flatbuffer (ops, types, sparsity, "
                    "float ops) without TensorFlow.")
def inspect_command(args):
    if len(args) != 1:
        raise UsageError("inspect takes one .tflite file: "
                         "tfcompress inspect model.tflite [--json]")
    from tfcompress.inspect import format_report, inspect
    report = inspect(args[0])
    if FLAGS.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0
