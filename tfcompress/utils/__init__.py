"""Small helpers shared by tfcompress modules (no TensorFlow imports)."""

from tfcompress.utils.atomic import (atomic_path, atomic_write_bytes,
                                     atomic_write_text)

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]
