"""Loaders for Fashion-MNIST and MNIST that work offline.

The loaders return numpy arrays shaped like ``keras.datasets`` does:
``(x_train, y_train), (x_test, y_test)`` with uint8 images of shape
``(n, 28, 28)`` and uint8 labels.

They look, in order, at:

1. ``$TFCOMPRESS_DATA`` (a folder with the idx files, or a folder holding a
   ``fashion-mnist``/``mnist`` subfolder),
2. the Debian package folder ``/usr/share/datasets/<name>/``
   (``apt-get install dataset-fashion-mnist``),
3. the Keras cache ``~/.keras/datasets/<name>/``,
4. the Keras download (``keras.datasets.<name>.load_data()``).

Example:

>>> from tfcompress.data import load_fashion_mnist
>>> (x_train, y_train), (x_test, y_test) = load_fashion_mnist()  # doctest: +SKIP
>>> x_train.shape, y_test.shape  # doctest: +SKIP
((60000, 28, 28), (10000,))
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np

from tfcompress.data.idx import IdxFormatError, read_idx
from tfcompress.errors import InputError

FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

_KERAS_CACHE_DIRS = {"fashion-mnist": "fashion-mnist", "mnist": "mnist"}


class DatasetNotFoundError(InputError, FileNotFoundError):
    """Raised when no place holds the data set; the message lists them all."""


def _find(folder: str, stem: str) -> Optional[str]:
    for candidate in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz",
                      stem.replace("-idx", ".idx")):
        p = os.path.join(folder, candidate)
        if os.path.isfile(p):
            return p
    return None


def _candidate_dirs(name: str) -> list[str]:
    dirs = []
    env = os.environ.get("TFCOMPRESS_DATA")
    if env:
        dirs += [os.path.join(env, name), env]
    dirs.append(os.path.join("/usr/share/datasets", name))
    dirs.append(os.path.join(os.path.expanduser("~"), ".keras", "datasets",
                             _KERAS_CACHE_DIRS[name]))
    return dirs


def load_idx_dataset(folder: str):
    """Loads the four idx files of an MNIST-style data set from ``folder``.

    Raises:
      DatasetNotFoundError: if a file is missing (a FileNotFoundError).
      IdxFormatError: if a file is truncated or corrupt, or the image and
        label counts disagree.

    The files may be gzip-compressed (``train-images-idx3-ubyte.gz``) or
    not; here four tiny uncompressed ones (3 train and 2 test images of
    4x4 pixels):

    >>> import os, struct, tempfile
    >>> import numpy as np
    >>> def write_idx(path, array):
    ...     header = bytes([0, 0, 0x08, array.ndim])
    ...     with open(path, "wb") as f:
    ...         f.write(header + struct.pack(">" + "I" * array.ndim,
    ...                                      *array.shape))
    ...         f.write(array.astype(np.uint8).tobytes())
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for split, n in (("train", 3), ("t10k", 2)):
    ...         write_idx(os.path.join(d, split + "-images-idx3-ubyte"),
    ...                   np.zeros((n, 4, 4)))
    ...         write_idx(os.path.join(d, split + "-labels-idx1-ubyte"),
    ...                   np.arange(n))
    ...     (x_train, y_train), (x_test, y_test) = load_idx_dataset(d)
    >>> x_train.shape, y_train.tolist(), x_test.shape, y_test.tolist()
    ((3, 4, 4), [0, 1, 2], (2, 4, 4), [0, 1])
    """
    arrays = {}
    for key, stem in FILES.items():
        path = _find(folder, stem)
        if path is None:
            raise DatasetNotFoundError(
                f"{folder}: missing {stem}[.gz]; put the four idx files of "
                "the data set in that folder")
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise IdxFormatError(
                f"{folder}: {split} images {x.shape} and labels {y.shape} "
                "do not match; the files are corrupt or mixed up")
    return ((arrays["x_train"], arrays["y_train"]),
            (arrays["x_test"], arrays["y_test"]))


def _load(name: str, keras_loader: Optional[Callable], download: bool):
    tried = []
    for folder in _candidate_dirs(name):
        if not os.path.isdir(folder):
            tried.append(f"{folder} (no such folder)")
            continue
        try:
            return load_idx_dataset(folder)
        except FileNotFoundError as e:
            tried.append(f"{folder} ({e})")
        # IdxFormatError propagates: a corrupt file must not be hidden by
        # silently falling back to another copy.
    if download and keras_loader is not None:
        try:
            return keras_loader()
        except Exception as e:  # network errors come in many types
            tried.append(f"keras download ({type(e).__name__}: {e})")
    else:
        tried.append("keras download (disabled)")
    raise DatasetNotFoundError(
        f"{name} not found. Tried: " + "; ".join(tried) + ". Fix: "
        f"`apt-get install dataset-{name}` (Debian), or set TFCOMPRESS_DATA "
        "to a folder with the four idx files.")


def load_fashion_mnist(download: bool = True):
    """Returns Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``.

    Example:

    >>> (x, y), _ = load_fashion_mnist()  # doctest: +SKIP
    >>> x.dtype, int(y.max())  # doctest: +SKIP
    (dtype('uint8'), 9)
    """
    def keras_loader():
        import keras
        return keras.datasets.fashion_mnist.load_data()
    return _load("fashion-mnist", keras_loader, download)


def load_mnist(download: bool = True):
    """Returns MNIST as ``(x_train, y_train), (x_test, y_test)``.

    Looks in the same places as :func:`load_fashion_mnist`, with ``mnist``
    as the folder name. Note the Keras cache holds MNIST as ``mnist.npz``,
    which is read too.
    """
    def keras_loader():
        import keras
        return keras.datasets.mnist.load_data()
    return _load("mnist", keras_loader, download)


def load_npz(path: str):
    """Loads ``x_train, y_train, x_test, y_test`` arrays from an ``.npz``.

    >>> import os, tempfile
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "tiny.npz")
    ...     np.savez(path, x_train=np.zeros((4, 8, 8), np.uint8),
    ...              y_train=np.arange(4), x_test=np.ones((2, 8, 8)),
    ...              y_test=np.arange(2))
    ...     (x_train, y_train), (x_test, y_test) = load_npz(path)
    ...     np.savez(path, x=np.zeros(3))
    ...     load_npz(path)
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: ...: missing arrays ['x_train', ...
    >>> x_train.shape, y_train.tolist(), x_test.shape, y_test.tolist()
    ((4, 8, 8), [0, 1, 2, 3], (2, 8, 8), [0, 1])
    """
    arrays = read_npz(path, FILES)
    missing = [k for k in FILES if k not in arrays]
    if missing:
        raise InputError(
            f"{path}: missing arrays {missing}; an .npz data file needs "
            "x_train, y_train, x_test, y_test")
    return ((arrays["x_train"], arrays["y_train"]),
            (arrays["x_test"], arrays["y_test"]))


def read_npz(path: str, names) -> dict:
    """The arrays of ``names`` that the ``.npz`` at ``path`` holds, by name.
    InputError when the file is no ``.npz`` (or holds pickled objects) or
    an array holds anything but numbers.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = os.path.join(d, "text.npz")
    ...     _ = open(path, "w").write("x,y")
    ...     read_npz(path, ["x"])
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: ...text.npz is not an .npz file of numeric arrays...
    """
    import zipfile
    fix = ("save one with numpy.savez(path, x_train=..., y_train=..., "
           "...)")
    try:
        f = np.load(path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        gist = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise InputError(f"{path} is not an .npz file of numeric arrays "
                         f"({gist}); {fix}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise InputError(f"{path} holds one array, not an .npz of named "
                         f"arrays; {fix}")
    with f:
        try:
            arrays = {k: f[k] for k in names if k in f}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            gist = str(e).splitlines()[0][:120] if str(e) else \
                type(e).__name__
            raise InputError(f"{path}: cannot read its arrays ({gist}); "
                             f"{fix}") from None
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise InputError(f"{path}: array {k} holds {a.dtype} values, "
                             "not numbers; " + fix)
    return arrays


def prepare_images(x: np.ndarray) -> np.ndarray:
    """Scales uint8 images to float32 in [0, 1] with a channel axis;
    float images (already scaled, e.g. from a user's .npz) keep their
    values.

    >>> import numpy as np
    >>> x = np.array([[[0, 51], [102, 255]]], np.uint8)  # one 2x2 image
    >>> out = prepare_images(x)
    >>> out.shape, out.dtype
    ((1, 2, 2, 1), dtype('float32'))
    >>> print(out[0, :, :, 0])
    [[0.  0.2]
     [0.4 1. ]]
    >>> float(prepare_images(np.full((1, 2, 2), 0.5, np.float32)).max())
    0.5
    """
    scaled = np.issubdtype(np.asarray(x).dtype, np.floating)
    x = np.asarray(x).astype("float32")
    if not scaled:
        x = x / 255.0
    return x[..., None] if x.ndim == 3 else x
