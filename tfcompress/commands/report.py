"""``tfcompress report RUN_DIR``: print a finished run's report."""

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
    with open(path) as f:
        print(f.read())
    return 0
