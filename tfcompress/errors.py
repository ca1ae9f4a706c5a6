"""Errors tfcompress raises for bad user input.

The CLI turns these into a one-line message and exit code 2.
"""


class InputError(ValueError):
    """Bad user input: the message names the problem and the fix."""


class MissingFileError(InputError, FileNotFoundError):
    """A file the user named does not exist."""
