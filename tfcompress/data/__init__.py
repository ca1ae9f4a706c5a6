"""Data sets that work offline: Fashion-MNIST and MNIST idx loaders."""

from tfcompress.data.datasets import (DatasetNotFoundError, load_fashion_mnist,
                                      load_idx_dataset, load_mnist, load_npz,
                                      prepare_images)
from tfcompress.data.idx import IdxFormatError, parse_idx, read_idx
from tfcompress.data.images import resize_images

__all__ = [
    "DatasetNotFoundError", "IdxFormatError", "load_fashion_mnist",
    "load_idx_dataset", "load_mnist", "load_npz", "parse_idx",
    "prepare_images", "read_idx", "resize_images",
]
