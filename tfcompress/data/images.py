"""Resizing images for models that take other sizes than the data set's:
Fashion-MNIST (28x28x1) for a keras.applications model at 32x32x3.

>>> import numpy as np
>>> x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
>>> resize_images(x, 32, 3).shape
(2, 32, 32, 3)
"""

from __future__ import annotations

import numpy as np

from tfcompress.errors import InputError

CHUNK = 2000


def resize_images(x, image_size=None, channels=None):
    """Float images ``(n, h, w, c)`` resized (bilinear) to ``image_size`` x
    ``image_size`` and with ``channels`` channels (a single channel is
    repeated); ``None`` keeps the size or the channels. Values stay in the
    input's range.

    >>> import numpy as np
    >>> x = np.linspace(0, 1, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)
    >>> y = resize_images(x, 16, 3)
    >>> y.shape, y.dtype
    ((2, 16, 16, 3), dtype('float32'))
    >>> bool(y.min() >= 0.0 and y.max() <= 1.0)  # still in the input range
    True
    >>> bool((y[..., 0] == y[..., 2]).all())  # the channel was repeated
    True
    >>> resize_images(x, channels=3).shape  # size kept
    (2, 8, 8, 3)
    """
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise InputError(f"images of shape {x.shape}: expected (n, height, "
                         "width, channels) to resize")
    if image_size is not None and x.shape[1:3] != (image_size, image_size):
        import tensorflow as tf
        low, high = float(x.min(initial=0.0)), float(x.max(initial=0.0))
        x = np.concatenate([
            tf.image.resize(x[i:i + CHUNK], (image_size, image_size)).numpy()
            for i in range(0, len(x), CHUNK)] or
            [np.zeros((0, image_size, image_size, x.shape[-1]), np.float32)])
        x = np.clip(x, low, high)
    have = x.shape[-1]
    if channels is not None and channels != have:
        if have != 1:
            raise InputError(f"data.channels: {channels} asked, but the "
                             f"images have {have} channels; channels can "
                             "only repeat a single-channel image: remove "
                             "data.channels or set it to " + str(have))
        x = np.repeat(x, channels, axis=-1)
    return np.ascontiguousarray(x, np.float32)
