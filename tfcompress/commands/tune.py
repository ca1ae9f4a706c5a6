"""``tfcompress tune RECIPE``: search for the smallest or fastest model
within an accuracy budget."""

from absl import flags

from tfcompress.commands import UsageError, command

FLAGS = flags.FLAGS
flags.DEFINE_float("budget", 1.0, "tune: accuracy points the chosen model "
                   "may lose against the float model (validation split).")
flags.DEFINE_enum("objective", "size", ["size", "latency"],
                  "tune: minimize gzip size or benchmark p50 latency.")
flags.DEFINE_integer("max_candidates", 12, "tune: evaluate at most this "
                     "many candidates (the float32 reference included).")
flags.DEFINE_integer("val_samples", None, "tune: training samples held "
                     "out for validation (default: a sixth, 100 to 5000).")
flags.DEFINE_integer("finetune_epochs", 1, "tune: epochs of each pruning "
                     "or QAT fine-tuning.")


@command("tune", "Search sparsity, bits and conversion for the smallest "
                 "(or fastest) model within an accuracy budget.")
def tune(args):
    if len(args) != 1:
        raise UsageError("tune takes exactly one recipe file: tfcompress "
                         "tune configs/fashion_mnist_cnn.yaml --budget 1.0")
    import shlex
    import sys
    from tfcompress.tune import tune as run_tune
    result = run_tune(args[0], budget=FLAGS.budget,
                      objective=FLAGS.objective, out_dir=FLAGS.out,
                      max_candidates=FLAGS.max_candidates,
                      val_samples=FLAGS.val_samples,
                      finetune_epochs=FLAGS.finetune_epochs,
                      overrides=FLAGS.set, command="tfcompress " + " ".join(
                          shlex.quote(a) for a in sys.argv[1:]))
    print(f"tfcompress: report in {result.report_md} (and report.json, "
          f"pareto.png); rerun the chosen model with "
          f"`tfcompress run {result.recipe_path}`")
    return 0
