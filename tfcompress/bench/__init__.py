"""Benchmark TFLite models where they run: latency, memory, size, accuracy.

``runner.py`` is the device side (numpy + a TFLite runtime only); the rest
runs on the host and drives it locally or over SSH.

>>> from tfcompress.bench import benchmark_models, write_reports
>>> results = benchmark_models(["float.tflite", "int8.tflite"],
...                            data="eval.npz")              # doctest: +SKIP
>>> write_reports(results, "bench_out")                      # doctest: +SKIP
"""

from tfcompress.bench.host import (benchmark_model, benchmark_models,
                                   benchmark_remote)
from tfcompress.bench.report import markdown, plot, rows, write_reports
from tfcompress.bench.runner import BenchError, benchmark

__all__ = ["BenchError", "benchmark", "benchmark_model", "benchmark_models",
           "benchmark_remote", "markdown", "plot", "rows", "write_reports"]
