"""``tfcompress bench MODEL.tflite [...] [--data eval.npz] [--host H]``."""

import sys

from absl import flags

from tfcompress.commands import UsageError, command
from tfcompress.errors import InputError

FLAGS = flags.FLAGS
flags.DEFINE_string("eval_data", None, "bench: .npz with x (inputs) and "
                    "optionally y (labels) and reference (outputs).")
flags.DEFINE_string("host", None, "bench: run on user@host over SSH.")
flags.DEFINE_integer("port", None, "bench: SSH port.", lower_bound=1,
                     upper_bound=65535)
flags.DEFINE_enum("runtime", "auto", ["auto", "ai_edge_litert",
                                      "tflite_runtime", "tensorflow"],
                  "bench: TFLite runtime on the device.")
flags.DEFINE_integer("threads", 1, "bench: interpreter threads.",
                     lower_bound=1)
flags.DEFINE_integer("runs", 50, "bench: timed runs per model.",
                     lower_bound=1)
flags.DEFINE_integer("warmup_runs", 5, "bench: warm-up runs per model.",
                     lower_bound=0)
flags.DEFINE_bool("xnnpack", True, "bench: use the XNNPACK delegate.")
flags.DEFINE_string("report_dir", None, "bench: write JSON/CSV/Markdown/PNG "
                    "reports to this folder.")


@command("bench", "Benchmark .tflite models (latency, memory, accuracy), "
                  "locally or on a device over SSH.")
def bench_command(args):
    if not args:
        raise UsageError("bench takes one or more .tflite files: tfcompress "
                         "bench a.tflite b.tflite [--eval_data eval.npz]")
    from tfcompress.bench import (BenchError, benchmark_models, markdown,
                                  write_reports)
    where = f" on {FLAGS.host}" if FLAGS.host else ""
    print(f"bench: timing {len(args)} model(s){where}, {FLAGS.runs} runs "
          "each", file=sys.stderr, flush=True)
    try:
        results = benchmark_models(
            args, data=FLAGS.eval_data, host=FLAGS.host,
            runtime=FLAGS.runtime, threads=FLAGS.threads, runs=FLAGS.runs,
            warmup_runs=FLAGS.warmup_runs, xnnpack=FLAGS.xnnpack,
            **({"port": FLAGS.port} if FLAGS.host and FLAGS.port else {}))
    except BenchError as e:
        raise InputError(str(e)) from None
    print(markdown(results))
    if FLAGS.report_dir:
        paths = write_reports(results, FLAGS.report_dir)
        print("reports: " + ", ".join(paths.values()))
    return 0
