"""``tfcompress run RECIPE``: run a recipe from configs/."""

import json

from absl import flags

from tfcompress.commands import UsageError, command

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "run: output folder for run artifacts "
                    "(default: runs/<recipe name>/).")
flags.DEFINE_multi_string("set", [], "run: override a recipe field, "
                          "key.path=value (repeatable).")
flags.DEFINE_string("only", None, "run: run only this variant.")

# A variant counts as keeping the float model's accuracy within this.
ACCURACY_TOLERANCE = 0.01


def headline(report):
    """One line naming the best variant of a run's ``report.json``: the
    smallest (gzip) flatbuffer whose accuracy is within one point of the
    float32 flatbuffer's (else the most accurate), with its accuracy and
    its size ratio to the float32 flatbuffer.

    >>> headline({"baseline": {"keras_accuracy": 0.83}, "variants": [
    ...     {"variant": "float", "mode": "float32", "tflite_accuracy": 0.83,
    ...      "size_bytes": 4000, "gzip_bytes": 3600},
    ...     {"variant": "int8", "mode": "int8", "tflite_accuracy": 0.825,
    ...      "size_bytes": 1000, "gzip_bytes": 900}]})
    'best: int8, accuracy 0.8250 (float32 0.8300), 4.0x smaller than the float32 .tflite (4.4x gzipped)'
    """
    rows = [r for r in report.get("variants", [])
            if r.get("size_bytes") and r.get("gzip_bytes")]
    if not rows:
        return "no variant produced a .tflite"

    def accuracy(r):
        a = r.get("tflite_accuracy")
        return r.get("keras_accuracy") if a is None else a

    floats = [r for r in rows if r.get("mode") == "float32"]
    ref = accuracy(floats[0]) if floats else \
        report.get("baseline", {}).get("keras_accuracy")
    scored = [r for r in rows if accuracy(r) is not None]
    if not scored:
        return "no variant was evaluated"
    good = [r for r in scored
            if ref is None or accuracy(r) >= ref - ACCURACY_TOLERANCE]
    if good:
        best = min(good, key=lambda r: (r["gzip_bytes"], -accuracy(r)))
    else:
        best = max(scored, key=accuracy)
    line = f"best: {best['variant']}, accuracy {accuracy(best):.4f}"
    if ref is not None:
        line += f" ({'float32' if floats else 'Keras float'} {ref:.4f})"
    if floats:
        f = floats[0]
        line += (f", {f['size_bytes'] / best['size_bytes']:.1f}x smaller "
                 f"than the float32 .tflite "
                 f"({f['size_bytes'] / best['gzip_bytes']:.1f}x gzipped)")
    return line


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
