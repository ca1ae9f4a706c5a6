"""Shared test setup: quiet TensorFlow, tiny deterministic data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture
def tiny_images():
    """64 random 28x28x1 images in [0, 1] and integer labels 0..9."""
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, size=64).astype("int32")
    return x, y
