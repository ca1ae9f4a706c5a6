"""Atomic writes give files normal permissions and make the rename durable."""

import os
import stat

import pytest

from tfcompress.utils import atomic


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640),
                                           (0o002, 0o664)],
                         ids=["022", "027", "002"])
def test_new_file_gets_open_mode_under_umask(tmp_path, umask, mask,
                                             expected):
    umask(mask)
    path = tmp_path / "model.tflite"
    atomic.atomic_write_bytes(path, b"abc")
    assert _mode(path) == expected
    assert atomic.current_umask() == mask


def test_atomic_path_file_made_by_writer_gets_open_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "report.md"
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("x")
    assert _mode(path) == 0o644 and path.read_text() == "x"


def test_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "out.json"
    path.write_text("old")
    os.chmod(path, 0o604)
    atomic.atomic_write_text(path, "new")
    assert _mode(path) == 0o604 and path.read_text() == "new"


def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), path.exists()))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic.atomic_write_bytes(path, b"abc")
    # the file before the rename, then its folder after it
    assert synced == [(False, False), (True, True)]


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path) as tmp:
            open(tmp, "wb").write(b"partial")
            raise RuntimeError("writer failed")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("trailing", ["", "/"])
def test_a_folder_as_output_path_is_refused_before_any_work(tmp_path,
                                                             trailing):
    # convert(..., output_path=<a folder>) converted, then failed with
    # IsADirectoryError (the CLI's "unexpected" exit 1)
    from tfcompress.errors import InputError
    out = str(tmp_path) + trailing
    with pytest.raises(InputError, match="it is a folder; give the path of "
                       "a file in it"):
        atomic.check_writable_folder(out)
    with pytest.raises(InputError, match="it is a folder"):
        atomic.atomic_write_bytes(out, b"x")
    assert os.listdir(tmp_path) == []


def test_an_output_path_below_a_file_says_the_file_is_not_a_folder(
        tmp_path):
    # "folder .../data.npz does not exist" named a file that exists
    from tfcompress.errors import InputError
    taken = tmp_path / "data.npz"
    taken.write_bytes(b"mine")
    with pytest.raises(InputError, match=r"data\.npz is a file, not a "
                       "folder; choose another output path"):
        atomic.check_writable_folder(str(taken / "m.tflite"))
    assert taken.read_bytes() == b"mine"
