import gzip
import os
import struct

import numpy as np
import pytest

from tfcompress.data import (DatasetNotFoundError, IdxFormatError,
                             load_fashion_mnist, load_idx_dataset,
                             load_mnist, parse_idx, read_idx)
from tfcompress.data.datasets import FILES


def _idx_bytes(arr):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.tobytes()


def _write_dataset(folder, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28)),
        "y_train": rng.integers(0, 10, n_train),
        "x_test": rng.integers(0, 256, (n_test, 28, 28)),
        "y_test": rng.integers(0, 10, n_test),
    }
    for key, stem in FILES.items():
        raw = _idx_bytes(arrays[key])
        path = os.path.join(folder, stem + (".gz" if gz else ""))
        with open(path, "wb") as f:
            f.write(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_roundtrip_good_files(tmp_path, gz):
    arrays = _write_dataset(tmp_path, gz=gz)
    (xt, yt), (xv, yv) = load_idx_dataset(str(tmp_path))
    np.testing.assert_array_equal(xt, arrays["x_train"])
    np.testing.assert_array_equal(yv, arrays["y_test"])
    assert xt.dtype == np.uint8 and xt.shape == (6, 28, 28)


def test_env_var_is_searched_first(tmp_path, monkeypatch):
    arrays = _write_dataset(tmp_path)
    monkeypatch.setenv("TFCOMPRESS_DATA", str(tmp_path))
    (xt, _), (_, yv) = load_fashion_mnist(download=False)
    assert xt.shape == (6, 28, 28)
    np.testing.assert_array_equal(yv, arrays["y_test"])


DEBIAN = "/usr/share/datasets"


def test_env_subfolder_comes_before_the_env_folder_itself(tmp_path,
                                                          monkeypatch):
    (tmp_path / "fashion-mnist").mkdir()
    _write_dataset(tmp_path / "fashion-mnist", n_train=6)
    _write_dataset(tmp_path, n_train=5)
    monkeypatch.setenv("TFCOMPRESS_DATA", str(tmp_path))
    (xt, _), _ = load_fashion_mnist(download=False)
    assert len(xt) == 6


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(DEBIAN, "fashion-mnist")),
    reason="Debian package dataset-fashion-mnist not installed")
def test_debian_folder_comes_before_the_keras_cache(tmp_path, monkeypatch):
    cache = tmp_path / ".keras" / "datasets" / "fashion-mnist"
    cache.mkdir(parents=True)
    _write_dataset(cache)
    monkeypatch.delenv("TFCOMPRESS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (xt, _), _ = load_fashion_mnist(download=False)
    assert len(xt) == 60000          # the Debian copy, not the 6 cached


@pytest.mark.skipif(os.path.exists(os.path.join(DEBIAN, "mnist")),
                    reason="MNIST is installed in /usr/share/datasets")
def test_keras_cache_is_searched_when_nothing_else_has_it(tmp_path,
                                                          monkeypatch):
    cache = tmp_path / ".keras" / "datasets" / "mnist"
    cache.mkdir(parents=True)
    arrays = _write_dataset(cache)
    monkeypatch.delenv("TFCOMPRESS_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (xt, _), _ = load_mnist(download=False)
    np.testing.assert_array_equal(xt, arrays["x_train"])


@pytest.mark.skipif(os.path.exists(os.path.join(DEBIAN, "mnist")),
                    reason="MNIST is installed in /usr/share/datasets")
def test_missing_everywhere_lists_every_place_in_lookup_order(tmp_path,
                                                              monkeypatch):
    monkeypatch.setenv("TFCOMPRESS_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetNotFoundError) as e:
        load_mnist(download=False)
    msg = str(e.value)
    places = [tmp_path / "env" / "mnist", tmp_path / "env",
              os.path.join(DEBIAN, "mnist"),
              tmp_path / "home" / ".keras" / "datasets" / "mnist"]
    at = [msg.index(f"{p} (") for p in places]
    assert at == sorted(at), msg
    assert msg.index("keras download (disabled)") > at[-1]
    assert "apt-get install dataset-mnist" in msg
    assert "TFCOMPRESS_DATA" in msg


def test_missing_one_file(tmp_path):
    _write_dataset(tmp_path)
    os.remove(tmp_path / (FILES["y_test"] + ".gz"))
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        load_idx_dataset(str(tmp_path))


@pytest.mark.parametrize("cut", [0, 3, 7, 16, 100, 783])
def test_truncated_idx_rejected(tmp_path, cut):
    raw = _idx_bytes(np.zeros((2, 28, 28)))
    p = tmp_path / "x.idx"
    p.write_bytes(raw[:cut] if cut < 16 else raw[:-cut])
    with pytest.raises(IdxFormatError, match="truncated|too short|magic"):
        read_idx(p)


def test_truncated_gzip_rejected(tmp_path):
    raw = gzip.compress(_idx_bytes(np.ones((50, 28, 28))))
    p = tmp_path / "x.idx.gz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IdxFormatError, match="gzip"):
        read_idx(p)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x03", b"\x00\x00\x07\x03",
                                   b"\x00\x00\x08\x00", b"\x00\x00\x08\x09",
                                   b"PK\x03\x04"])
def test_bad_magic_rejected(magic):
    raw = magic + _idx_bytes(np.zeros((2, 28, 28)))[4:]
    with pytest.raises(IdxFormatError, match="magic"):
        parse_idx(raw)


def test_extra_bytes_rejected():
    raw = _idx_bytes(np.zeros((2, 3))) + b"\x00"
    with pytest.raises(IdxFormatError, match=r"declares shape \(2, 3\)"):
        parse_idx(raw)


def test_mismatched_counts_rejected(tmp_path):
    _write_dataset(tmp_path)
    (tmp_path / (FILES["y_train"] + ".gz")).write_bytes(
        gzip.compress(_idx_bytes(np.zeros(5))))
    with pytest.raises(IdxFormatError, match="do not match"):
        load_idx_dataset(str(tmp_path))


def test_corrupt_file_is_not_silently_skipped(tmp_path, monkeypatch):
    _write_dataset(tmp_path)
    (tmp_path / (FILES["x_test"] + ".gz")).write_bytes(b"\x1f\x8bgarbage")
    monkeypatch.setenv("TFCOMPRESS_DATA", str(tmp_path))
    with pytest.raises(IdxFormatError):
        load_fashion_mnist(download=False)


@pytest.mark.skipif(
    not os.path.exists("/usr/share/datasets/fashion-mnist/"
                       "t10k-labels-idx1-ubyte.gz"),
    reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("TFCOMPRESS_DATA", raising=False)
    (xt, yt), (xv, yv) = load_fashion_mnist(download=False)
    assert xt.shape == (60000, 28, 28) and xv.shape == (10000, 28, 28)
    assert sorted(np.unique(yt)) == list(range(10))
    assert np.bincount(yv).tolist() == [1000] * 10


def test_prepare_images_scales_integers_and_keeps_floats():
    from tfcompress.data import prepare_images
    assert prepare_images(np.full((1, 2, 2), 255, np.uint8)).max() == 1.0
    floats = np.full((1, 2, 2, 1), 0.75, np.float32)
    np.testing.assert_array_equal(prepare_images(floats), floats)
