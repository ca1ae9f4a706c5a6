"""``tfcompress report RUN_DIR``: print a finished run's report, which
leads with the best variant's size ratio to the float32 flatbuffer."""

import json
import os

from tfcompress.commands import UsageError, command
from tfcompress.errors import InputError


@command("report", "Print the report of a run folder.")
def report(args):
    if len(args) != 1:
        raise UsageError("report takes one run folder: tfcompress report "
                         "runs/fashion_mnist_cnn")
    path = os.path.join(args[0], "report.md")
    if not os.path.isfile(path):
        raise InputError(f"{args[0]} has no report.md; run a recipe into "
                         "it first (tfcompress run RECIPE --out DIR)")
    if not _has_float32_ratios(os.path.join(args[0], "report.json")):
        print("note: this report predates the ratios to the float32 "
              "flatbuffer (its ratios may divide a .keras file holding the "
              "optimizer state); run its recipe again with --out "
              f"{args[0]} to rewrite it (finished stages are reused)\n")
    with open(path) as f:
        print(f.read())
    return 0


def _has_float32_ratios(report_json):
    try:
        with open(report_json) as f:
            return "headline" in json.load(f)
    except (OSError, ValueError):
        return False
