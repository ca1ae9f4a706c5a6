"""Reader for the IDX file format used by MNIST and Fashion-MNIST.

An IDX file starts with a 4-byte magic number: two zero bytes, a type code
(0x08 = uint8, ...) and the number of dimensions, followed by one big-endian
uint32 per dimension, then the data. Files may be gzip-compressed.

Example:

>>> from tfcompress.data.idx import read_idx
>>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
>>> images.shape  # doctest: +SKIP
(10000, 28, 28)
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from tfcompress.errors import InputError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxFormatError(InputError):
    """Raised when a file is not a valid, complete IDX file."""


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IdxFormatError(
                f"{path}: gzip stream is truncated or corrupt ({e}); "
                "delete the file and fetch it again") from None
    return raw


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parses IDX bytes into a numpy array, validating header and size.

    >>> import struct
    >>> # magic: two zero bytes, type 0x08 (uint8), 2 dimensions; then 2 x 3
    >>> header = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2, 3)
    >>> parse_idx(header + bytes(range(6)))
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    >>> parse_idx(header + bytes(5))
    Traceback (most recent call last):
    ...
    tfcompress.data.idx.IdxFormatError: <bytes>: ... the file has 5; ...
    """
    if len(raw) < 4:
        raise IdxFormatError(
            f"{name}: {len(raw)} bytes is too short for an IDX header; "
            "the file is truncated, fetch it again")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _DTYPES or not 1 <= ndim <= 4:
        raise IdxFormatError(
            f"{name}: bad IDX magic number 0x{raw[:4].hex()} (expected "
            "0x0000 + type code + 1-4 dims, e.g. 0x00000803); this is not "
            "an IDX file or it is corrupt")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(
            f"{name}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        raise IdxFormatError(
            f"{name}: IDX header declares shape {tuple(dims)} "
            f"({expected} data bytes) but the file has {got}; "
            "the file is truncated or corrupt, fetch it again")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX (optionally gzip) file into a numpy array.

    Raises:
      IdxFormatError: if the file is truncated, corrupt or not IDX.

    >>> import gzip, os, struct, tempfile
    >>> import numpy as np
    >>> labels = np.array([3, 1, 4, 1, 5], np.uint8)
    >>> raw = (bytes([0, 0, 0x08, 1]) + struct.pack(">I", len(labels))
    ...        + labels.tobytes())
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "labels-idx1-ubyte.gz")
    ...     with gzip.open(path, "wb") as f:
    ...         _ = f.write(raw)
    ...     y = read_idx(path)
    >>> y.shape, y.dtype, bool((y == labels).all())
    ((5,), dtype('uint8'), True)
    """
    path = os.fspath(path)
    return parse_idx(_read_bytes(path), name=path)
