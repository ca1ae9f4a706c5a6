"""Atomic file writes: a temporary file in the same folder, fsync, rename.

An interrupted write never leaves a partial file at the destination. The
file gets the permissions a plain ``open(path, "w")`` would give it: those
of the file it replaces, else ``0o666`` less the process umask.

>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> atomic_write_bytes(os.path.join(d, "x.bin"), b"abc")
>>> open(os.path.join(d, "x.bin"), "rb").read()
b'abc'
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from tfcompress.errors import InputError


class OutputFolderError(InputError, OSError):
    """The folder an output file goes to is missing or not writable."""


def check_writable_folder(path: str) -> str:
    """Raises OutputFolderError (an InputError and an OSError) unless the
    folder that will hold ``path`` exists and is writable; returns it."""
    if os.path.isdir(path) or str(path).endswith(("/", os.sep)):
        raise OutputFolderError(f"cannot write {path}: it is a folder; give "
                                "the path of a file in it")
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputFolderError(f"cannot write {path}: {folder} is a file, "
                                "not a folder; choose another output path")
    if not os.path.isdir(folder):
        raise OutputFolderError(f"cannot write {path}: folder {folder} does "
                                "not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise OutputFolderError(f"cannot write {path}: folder {folder} is "
                                "not writable; choose another output path")
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ""):
    """Yields a temporary path; on success it is renamed onto ``path``.

    For writers that need a file name (``model.save``, ``savefig``).
    Nothing appears at ``path`` until the block ends without an exception.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = os.path.join(d, "weights.npy")
    ...     with atomic_path(out) as tmp:
    ...         _ = open(tmp, "wb").write(b"1234")
    ...         print(os.path.exists(out), tmp.endswith(".npy"))
    ...     print(os.path.getsize(out), sorted(os.listdir(d)))
    False True
    4 ['weights.npy']
    """
    path = os.fspath(path)
    folder = check_writable_folder(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".",
                               suffix=suffix or os.path.splitext(path)[1],
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(path))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(folder)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def current_umask() -> int:
    """The process umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    """Mode ``open(path, "w")`` would leave: the existing file's, else
    0o666 less the umask (mkstemp alone gives 0o600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def _fsync_folder(folder: str) -> None:
    """Makes the rename durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = os.path.join(d, "model.tflite")
    ...     atomic_write_bytes(out, b"TFL3")
    ...     atomic_write_bytes(out, b"TFL3 v2")  # replaces the old file
    ...     print(open(out, "rb").read(), os.listdir(d))
    b'TFL3 v2' ['model.tflite']
    """
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = os.path.join(d, "report.md")
    ...     atomic_write_text(out, "latency: 12 µs")
    ...     print(open(out, encoding="utf-8").read(), os.path.getsize(out))
    latency: 12 µs 15
    """
    atomic_write_bytes(path, text.encode("utf-8"))
