"""CLI commands: one module per command, discovered automatically.

A command module in this folder defines its absl flags at module level
(and imports nothing heavy there) and registers itself::

    from tfcompress.commands import command

    @command("inspect", "Describe a .tflite flatbuffer.")
    def inspect(args):  # args: positional arguments after the command name
        ...
        return 0
"""

import importlib
import pkgutil

# name -> (callable(args: list[str]) -> int, one-line help)
COMMANDS = {}


class UsageError(Exception):
    """Wrong command-line usage; printed as one line, exit code 2."""


def command(name, help_text):
    """Registers a CLI command ``name``."""
    def register(fn):
        COMMANDS[name] = (fn, help_text)
        return fn
    return register


def load_commands():
    """Imports every command module in this package."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return COMMANDS
