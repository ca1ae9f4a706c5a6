"""tfcompress: compress Keras 3 models for edge devices.

Usage:
  tfcompress run RECIPE.yaml [--out DIR] [--set key.path=value ...]
  tfcompress tune RECIPE.yaml [--budget 1.0] [--objective size|latency]
  tfcompress --help

Commands:
  run      Run a recipe from configs/ (train, compress, convert, benchmark).
  tune     Find the smallest (or fastest) model within an accuracy budget.

Exit codes: 0 success, 2 usage or input error, 1 unexpected failure.
"""

from __future__ import annotations

import errno
import logging as _logging
import os
import sys

# Before anything imports TensorFlow: its C++ INFO/WARNING lines off,
# unless the user chose a level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

FLAGS = flags.FLAGS

from tfcompress.commands import COMMANDS, UsageError, load_commands
from tfcompress.quiet import native_stderr_filtered, wants_native_logs

load_commands()


def _input_error_types():
    from tfcompress.errors import InputError
    types = [InputError, UsageError, FileNotFoundError, PermissionError,
             IsADirectoryError]
    try:
        from tfcompress.data import DatasetNotFoundError, IdxFormatError
        types += [DatasetNotFoundError, IdxFormatError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


class _NoRetracingWarnings(_logging.Filter):
    """Drops tf.function's retracing warnings: a run trains and evaluates
    many models, each with its own functions, which is expected."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _verbose():
    return FLAGS.is_parsed() and getattr(FLAGS, "verbosity", 0) > 0


def main(argv):
    from absl import logging
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)   # TensorFlow's INFO chatter
        _logging.getLogger("tensorflow").addFilter(_NoRetracingWarnings())
    args = argv[1:]
    if not args:
        print(__doc__.strip())
        return 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        import difflib
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"tfcompress: unknown command {name!r}{hint}; commands: "
              f"{', '.join(sorted(COMMANDS))}", file=sys.stderr)
        return 2
    fn, _ = COMMANDS[name]
    try:
        with native_stderr_filtered(
                enabled=not (_verbose() or wants_native_logs()),
                user_errors=_input_error_types()):
            return fn(rest) or 0
    except KeyboardInterrupt:
        print("tfcompress: interrupted", file=sys.stderr)
        return 130
    except _input_error_types() as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"tfcompress: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:  # unexpected: keep a short message, exit 1
        if isinstance(e, OSError) and e.errno in _USER_OS_ERRORS:
            # a read-only file system, a full disk: the user's to fix
            print(f"tfcompress: error: {e}; choose another output path or "
                  "free the space", file=sys.stderr)
            return 2
        if _verbose():
            raise
        print(f"tfcompress: unexpected {type(e).__name__}: {e} "
              "(rerun with --verbosity=1 for the traceback)", file=sys.stderr)
        return 1


_USER_OS_ERRORS = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES)


def _usage_doc():
    lines = [__doc__.strip(), "", "All commands:"]
    for name, (_, text) in sorted(COMMANDS.items()):
        lines.append(f"  {name:<8} {text}")
    return "\n".join(lines)


def _full_help():
    lines = [_usage_doc(), "", "Flags:"]
    for module in sorted(FLAGS.flags_by_module_dict()):
        if module.startswith("tfcompress."):
            lines.append(FLAGS.module_help(module))
    return "\n".join(lines)


def _command_help(name):
    """``tfcompress NAME --help``: the command's usage and its own flags.

    >>> print(_command_help("inspect").splitlines()[0])
    Usage: tfcompress inspect MODEL.tflite [--json]: what a flatbuffer holds.
    """
    fn, text = COMMANDS[name]
    module = sys.modules[fn.__module__]
    usage = (module.__doc__ or "").strip().replace("``", "")
    lines = [f"Usage: {usage}" if usage else f"Usage: tfcompress {name}",
             "", text]
    if fn.__module__ in FLAGS.flags_by_module_dict():
        lines += ["", "Flags:", FLAGS.module_help(fn.__module__)]
    lines += ["", "tfcompress --help lists every command."]
    return "\n".join(lines)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"tfcompress: error: {e} (see tfcompress --help)",
              file=sys.stderr)
        sys.exit(2)


def run_main(argv=None):
    """Console-script entry point (``tfcompress``).

    >>> run_main(["tfcompress", "--help"])  # doctest: +SKIP
    """
    argv = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
        named = [a for a in argv[1:] if a in COMMANDS]
        print(_command_help(named[0]) if named else _full_help())
        sys.exit(0)
    sys.modules["__main__"].__doc__ = _usage_doc()
    app.run(lambda a: sys.exit(main(a)), argv=argv,
            flags_parser=_parse_flags)


if __name__ == "__main__":
    run_main()
