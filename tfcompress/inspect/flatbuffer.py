"""A bounds-checked reader for FlatBuffers tables (no TensorFlow).

Every offset and vector length is checked against the buffer before it is
used, so malformed input raises :class:`FlatbufferError` instead of
crashing, reading out of bounds or looping over a huge declared length.

>>> import struct
>>> Table.root(b"\\x00" * 3)
Traceback (most recent call last):
...
tfcompress.inspect.flatbuffer.FlatbufferError: buffer of 3 bytes is too short for a FlatBuffer root (need 8)
"""

from __future__ import annotations

import struct

from tfcompress.errors import InputError


class FlatbufferError(InputError):
    """The bytes are not a well-formed FlatBuffer of the expected schema."""


class Buffer:
    """Bytes plus checked little-endian reads."""

    def __init__(self, data: bytes):
        self.data = memoryview(bytes(data))
        self.size = len(self.data)

    def check(self, offset, length, what):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise FlatbufferError(
                f"{what} at offset {offset} (+{length} bytes) lies outside "
                f"the {self.size}-byte buffer; the file is truncated or "
                "corrupt")

    def read(self, fmt, offset, what):
        n = struct.calcsize(fmt)
        self.check(offset, n, what)
        return struct.unpack_from("<" + fmt, self.data, offset)[0]


class Table:
    """A FlatBuffers table at ``pos`` in ``buf``."""

    def __init__(self, buf: Buffer, pos: int, name: str = "table"):
        self.buf, self.pos, self.name = buf, pos, name
        soffset = buf.read("i", pos, f"{name} vtable offset")
        self.vtable = pos - soffset
        self.vtable_size = buf.read("H", self.vtable, f"{name} vtable")
        if self.vtable_size < 4 or self.vtable_size % 2:
            raise FlatbufferError(f"{name}: bad vtable size "
                                  f"{self.vtable_size}")
        buf.check(self.vtable, self.vtable_size, f"{name} vtable")
        self.table_size = buf.read("H", self.vtable + 2, f"{name} vtable")
        buf.check(pos, max(self.table_size, 4), f"{name} object")

    @classmethod
    def root(cls, data: bytes, identifier: bytes = None, name="root"):
        if len(data) < 8:
            raise FlatbufferError(
                f"buffer of {len(data)} bytes is too short for a FlatBuffer "
                "root (need 8)")
        buf = Buffer(data)
        if identifier is not None and bytes(buf.data[4:8]) != identifier:
            raise FlatbufferError(
                f"file identifier is {bytes(buf.data[4:8])!r}, expected "
                f"{identifier!r}: this is not a TFLite flatbuffer")
        return cls(buf, buf.read("I", 0, "root offset"), name)

    def _field(self, slot):
        entry = 4 + 2 * slot
        if entry + 2 > self.vtable_size:
            return 0
        off = self.buf.read("H", self.vtable + entry, f"{self.name} field")
        if off and off + 1 > max(self.table_size, 1):
            raise FlatbufferError(f"{self.name}: field {slot} offset {off} "
                                  f"beyond table size {self.table_size}")
        return off

    def scalar(self, slot, fmt, default=0):
        off = self._field(slot)
        if not off:
            return default
        return self.buf.read(fmt, self.pos + off, f"{self.name}.{slot}")

    def _indirect(self, slot):
        off = self._field(slot)
        if not off:
            return None
        at = self.pos + off
        return at + self.buf.read("I", at, f"{self.name}.{slot} offset")

    def table(self, slot, name=None):
        at = self._indirect(slot)
        return None if at is None else Table(self.buf, at, name or
                                             f"{self.name}.{slot}")

    def string(self, slot):
        at = self._indirect(slot)
        if at is None:
            return None
        n = self.buf.read("I", at, f"{self.name}.{slot} string length")
        self.buf.check(at + 4, n, f"{self.name}.{slot} string")
        return bytes(self.buf.data[at + 4:at + 4 + n]).decode(
            "utf-8", errors="replace")

    def _vector(self, slot, elem_size, max_items=None, what=None):
        at = self._indirect(slot)
        if at is None:
            return None, 0
        n = self.buf.read("I", at, f"{self.name}.{slot} vector length")
        if max_items is not None and n > max_items:
            raise FlatbufferError(
                f"{what or f'{self.name}.{slot}'}: {n} items declared, more "
                f"than the limit of {max_items}; the file is corrupt")
        self.buf.check(at + 4, n * elem_size, f"{self.name}.{slot} vector "
                       f"of {n} elements")
        return at + 4, n

    def vector_bytes(self, slot):
        start, n = self._vector(slot, 1)
        return b"" if start is None else self.buf.data[start:start + n]

    def vector_scalars(self, slot, fmt, max_items=None, what=None):
        """The vector's numbers; ``max_items`` bounds the declared length
        before anything is read."""
        size = struct.calcsize(fmt)
        start, n = self._vector(slot, size, max_items, what)
        if start is None:
            return []
        return list(struct.unpack_from(f"<{n}{fmt}", self.buf.data, start))

    def vector_tables(self, slot, name, max_items=None):
        """The vector's tables, named ``name[i]``; ``max_items`` bounds the
        declared length before any table is read."""
        start, n = self._vector(slot, 4, max_items, name)
        if start is None:
            return []
        out = []
        for i in range(n):
            at = start + 4 * i
            out.append(Table(self.buf, at + self.buf.read("I", at, name),
                             f"{name}[{i}]"))
        return out
