"""Keeps TensorFlow's native log lines out of the command line's output.

TensorFlow, its MLIR converter and LiteRT write to file descriptor 2 from
C++ (CUDA probing, CPU-feature notes, ``fully_quantize: 0, ...``,
SavedModel loader lines, the XNNPACK delegate note), bypassing Python.
:func:`native_stderr_filtered` sends descriptor 2 to a temporary file while
Python's own ``sys.stderr`` (progress bars, warnings, errors) keeps writing
to the terminal; at the end the captured lines are shown again without the
known noise (keeping the converter's chatter when the block failed).

>>> import os
>>> with native_stderr_filtered():
...     _ = os.write(2, b"fully_quantize: 0, inference_type: 6\\n")
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings

# Printed by every TensorFlow start on a machine without a GPU.
STARTUP_NOISE = re.compile("|".join([
    r"^WARNING: All log messages before absl::InitializeLog\(\)",
    r"^[IWE]\d{4} \S+ +\d+ "
    r"(cudart_stub|cuda_platform|cuda_executor|cpu_feature_guard)\.cc:",
    r"^To enable the following instructions: .* rebuild TensorFlow",
    r"^[IWE]\d{4} \S+ +\d+ port\.cc:\d+\] oneDNN custom operations are on",
    r"triggered tf\.function retracing",
]))

# Progress chatter of the converter and LiteRT: useful only when a
# conversion fails.
CHATTER = re.compile("|".join([
    r"^[IW]\d{4} \S+ +\d+ \S+\.(cc|cpp|h):\d+\] ",  # C++ INFO/WARNING
    r"^fully_quantize: \d",
    r"^INFO: Created TensorFlow Lite XNNPACK delegate",
    r"^INFO: Initialized TensorFlow Lite runtime",
]))


def without_noise(text: str, keep_chatter: bool = False) -> str:
    """``text`` without the known noise lines (and without the converter's
    chatter unless ``keep_chatter``).

    >>> without_noise("fully_quantize: 0, inference_type: 6\\nkept\\n")
    'kept\\n'
    """
    kept = [line for line in text.splitlines(keepends=True)
            if not STARTUP_NOISE.search(line)
            and (keep_chatter or not CHATTER.search(line))]
    return "".join(kept)


def wants_native_logs() -> bool:
    """True when the user asked for TensorFlow's own log lines
    (``TF_CPP_MIN_LOG_LEVEL`` 0 or 1)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() in ("0", "1")


@contextlib.contextmanager
def native_stderr_filtered(enabled: bool = True, user_errors=()):
    """Captures C++ writes to descriptor 2 during the block; replays them
    without the known noise afterwards (with the converter's chatter if
    the block raised, as it may explain the failure, unless it raised one
    of ``user_errors``: those say all there is to say).

    Python's ``sys.stderr`` is pointed at the real terminal meanwhile, so
    progress output and Python warnings appear live.
    """
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved_fd = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield                  # no usable descriptor 2 (embedded use)
        return
    old_stderr = sys.stderr
    tmp = tempfile.TemporaryFile()
    os.dup2(tmp.fileno(), 2)
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(saved_fd), "wb"),
                                  encoding=getattr(old_stderr, "encoding",
                                                   None) or "utf-8",
                                  errors="backslashreplace",
                                  line_buffering=True)
    live = sys.stderr
    failed = False
    try:
        yield
    except BaseException as e:
        failed = not isinstance(e, tuple(user_errors))
        raise
    finally:
        try:
            live.flush()
            _rebind_log_handlers(live, old_stderr)
            live.close()
        finally:
            sys.stderr = old_stderr
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            tmp.close()
        shown = without_noise(text, keep_chatter=failed)
        if shown:
            sys.stderr.write(shown)
            sys.stderr.flush()


def _rebind_log_handlers(stream, replacement) -> None:
    """Points every logging handler that writes to ``stream`` at
    ``replacement``: a handler made during a filtered block (TensorFlow
    makes its logger's on first use) took the block's ``sys.stderr``."""
    import logging
    loggers = [logging.getLogger()] + [
        l for l in list(logging.Logger.manager.loggerDict.values())
        if isinstance(l, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and \
                    getattr(handler, "stream", None) is stream:
                handler.setStream(replacement)


@contextlib.contextmanager
def converter_output_silenced():
    """Silences the Python-side chatter of a TFLite conversion: Keras'
    export prints the SavedModel signature to stdout, and the converter
    warns about things asked for on purpose (a float input kept, a
    deprecated path). Errors still raise.

    >>> with converter_output_silenced():
    ...     print("Saved artifact at '/tmp/x'.")
    """
    with contextlib.redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def filter_native_stderr_live() -> None:
    """Filters descriptor 2 of this process (and of the processes it
    starts) live, for the rest of its life: TensorFlow's known noise and
    the converter's chatter are dropped line by line, every other line
    is passed on as it comes, in order with Python's own ``sys.stderr``
    (which writes to the same descriptor). For long scripts (the
    benchmarks), where :func:`native_stderr_filtered`'s replay at the end
    would hold back their messages. Does nothing if the user asked for TensorFlow's logs
    or descriptor 2 is unusable; calling it twice is harmless.
    """
    global _live_filter
    if _live_filter is not None or wants_native_logs():
        return
    import atexit
    import threading
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except (OSError, ValueError, AttributeError):
        return

    def pump():
        with os.fdopen(read_end, "rb") as lines:
            for raw in lines:
                try:
                    keep = without_noise(raw.decode("utf-8", "replace"))
                except Exception:   # never block the writers
                    keep = True
                if keep:
                    os.write(real, raw)

    thread = threading.Thread(target=pump, name="stderr-filter",
                              daemon=True)
    thread.start()

    def stop():
        os.dup2(real, 2)        # closes the pipe's last writer here
        thread.join(timeout=2)

    atexit.register(stop)
    _live_filter = thread


_live_filter = None


class _OwnRetracingFilter:
    """Drops TensorFlow's frequent-retracing warning when it names one of
    tfcompress's own functions."""

    def __init__(self):
        self.names = set()

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and any(
            f"<function {name}" in message for name in self.names))


_retracing_filter = None


def expected_retracing(*qualnames: str) -> None:
    """Keeps TensorFlow from warning that the ``tf.function`` s defined by
    the functions named (their ``__qualname__`` prefix) retrace: one made
    for each model (pruning step counters, mask updates) traces once per
    model, and pruning several models with short fits (a sweep, a tuner,
    a notebook) is no reason to warn. Other functions' warnings stay.

    >>> expected_retracing("UpdatePruningStep.")
    """
    import logging
    global _retracing_filter
    if _retracing_filter is None:
        _retracing_filter = _OwnRetracingFilter()
        logging.getLogger("tensorflow").addFilter(_retracing_filter)
    _retracing_filter.names.update(qualnames)
