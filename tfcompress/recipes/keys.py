"""Content keys of recipe artifacts: what each one was built from.

A key is a short sha256 over JSON parts (recipe settings, upstream keys,
content hashes). Input files are hashed by content; the hash is cached in
``input_hashes.json`` of the run folder under the file's (size, mtime_ns,
ctime_ns, inode), so a big file is read again only when it changed.

>>> key({"epochs": 1}, "abc") == key({"epochs": 1}, "abc")
True
>>> key({"epochs": 1}) == key({"epochs": 2})
False
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from tfcompress.utils import atomic_write_text

# bumped when what goes into the keys changes, so old caches are not reused
KEY_SCHEME = 2


def key(*parts):
    """16 hex digits of sha256 over the JSON of ``parts``."""
    h = hashlib.sha256()
    for p in (KEY_SCHEME,) + parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# settings added to a stage after its keys were first written; at these
# values the stage does what it did before the setting existed, so they are
# left out of its key and artifacts cached then stay valid
ADDED_SETTINGS = {"qat": {"layer_bits": None},
                  "convert": {"per_channel": True, "float_layers": []},
                  "train": {"batchnorm_momentum": None},
                  "cluster": {"gradient_aggregation": "sum"}}


def stage_settings(kind, params):
    """The settings of a ``kind`` stage that go into its key: all of
    ``params`` but the :data:`ADDED_SETTINGS` left at their old meaning.

    >>> stage_settings("convert", {"mode": "int8", "per_channel": True})
    {'mode': 'int8'}
    >>> stage_settings("convert", {"mode": "int8", "per_channel": False})
    {'mode': 'int8', 'per_channel': False}

    A prune stage's ``m_by_n`` once counted the weights kept; it counts
    the zeros now (tfmot's meaning), so a pattern whose meaning changed
    gets a key of its own ([2, 4] means the same both ways):

    >>> stage_settings("prune", {"granularity": "n_of_m", "m_by_n": [1, 4]})
    {'granularity': 'n_of_m', 'm_by_n': [1, 4], 'm_by_n_counts': 'zeros'}
    """
    added = ADDED_SETTINGS.get(kind, {})
    settings = {k: v for k, v in params.items()
                if not (k in added and v == added[k])}
    if kind == "prune" and params.get("granularity") == "n_of_m":
        zeros, group = params.get("m_by_n", (2, 4))
        if 2 * zeros != group:
            settings["m_by_n_counts"] = "zeros"
    return settings


def arrays_sha256(*arrays):
    """sha256 of arrays' dtypes, shapes and bytes (in memory data sets)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class InputHashes:
    """Content hashes of input files, cached in ``<run_dir>/input_hashes.json``.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "m.bin")
    >>> _ = open(p, "wb").write(b"abc")
    >>> InputHashes(d).sha256(p)[:12]
    'ba7816bf8f01'
    """

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, "input_hashes.json")
        try:
            with open(self.path) as f:
                self.cache = json.load(f)
        except (OSError, ValueError):
            self.cache = {}
        if not isinstance(self.cache, dict):
            self.cache = {}

    def sha256(self, path):
        """sha256 of a file, or of a folder's files (names and contents)."""
        path = os.path.abspath(path)
        if os.path.isdir(path):
            h = hashlib.sha256()
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    p = os.path.join(folder, name)
                    h.update(os.path.relpath(p, path).encode() + b"\0")
                    h.update(self.sha256(p).encode())
            return h.hexdigest()
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = self.cache.get(path)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            return entry["sha256"]
        digest = _file_sha256(path)
        self.cache[path] = {"stamp": stamp, "sha256": digest}
        return digest

    def save(self):
        atomic_write_text(self.path, json.dumps(self.cache, indent=1,
                                                sort_keys=True))
