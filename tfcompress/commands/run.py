"""``tfcompress run RECIPE``: run a recipe from configs/."""

import json

from absl import flags

from tfcompress.commands import UsageError, command
# the line printed after a run: its best variant and size ratios
from tfcompress.recipes.report import (ACCURACY_TOLERANCE,  # noqa: F401
                                       headline)

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "run: output folder for run artifacts "
                    "(default: runs/<recipe name>/).")
flags.DEFINE_multi_string("set", [], "run: override a recipe field, "
                          "key.path=value (repeatable).")
flags.DEFINE_string("only", None, "run: run only this variant (the report "
                    "keeps the other variants' current results).")

@command("run", "Run a recipe (train, prune, QAT, convert, benchmark, "
                "report).")
def run(args):
    if len(args) != 1:
        raise UsageError("run takes exactly one recipe file: "
                         "tfcompress run configs/fashion_mnist_cnn.yaml")
    from tfcompress.recipes import run_recipe
    result = run_recipe(args[0], out_dir=FLAGS.out, overrides=FLAGS.set,
                        only=FLAGS.only)
    with open(result["report_md"]) as f:
        lines = f.read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    print("\n".join(table))
    print(f"tfcompress: report in {result['report_md']} "
          f"(and report.json, pareto.png)")
    with open(result["report_json"]) as f:
        print(f"tfcompress: {headline(json.load(f))}")
    return 0
