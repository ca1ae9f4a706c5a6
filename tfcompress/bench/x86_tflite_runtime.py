"""tflite-runtime 2.14 on this x86_64 host, in a venv of its own.

The arm64 root of :mod:`arm_root` runs tflite-runtime 2.14; this venv runs
the same version on x86_64, so a cross-check can tell an ARM difference
from a runtime-version difference. tflite-runtime 2.14 needs ``numpy<2``
and has x86_64 wheels for CPython 3.8 to 3.11 only, so it cannot share the
main environment (numpy 2, LiteRT); :func:`build_venv` creates the venv
from PyPI the first time (cached in ``~/.cache/tfcompress``) and
:func:`run_runner` runs the device-side runner with its Python.

>>> python = build_venv()                                   # doctest: +SKIP
>>> run_runner(python, ["m.tflite", "--runtime", "tflite_runtime"])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tfcompress.bench import arm_root

DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "tfcompress",
                            "x86_64-tflite-runtime-2.14")
PACKAGES = ("numpy<2", "tflite-runtime==2.14.0")
#: the label of this runtime in reports
LABEL = "tflite_runtime 2.14.0 (x86_64)"


class VenvError(RuntimeError):
    """The venv could not be created or its runner could not start."""


def venv_python(path=DEFAULT_VENV):
    """The venv's Python if the venv is complete, else None.

    >>> venv_python("/nonexistent/venv") is None
    True
    """
    python = os.path.join(path, "bin", "python")
    ready = os.path.exists(os.path.join(path, ".tfcompress-ready"))
    return python if ready and os.path.exists(python) else None


def build_venv(path=DEFAULT_VENV, python=None):
    """Creates (or reuses) the venv with ``PACKAGES`` from PyPI; returns
    its Python. ``python`` (default: this interpreter; a venv's Python
    makes a venv of its base Python) must be CPython 3.8 to 3.11, the
    versions tflite-runtime 2.14 has x86_64 wheels for."""
    ready = venv_python(path)
    if ready:
        return ready
    with arm_root._build_lock(path):
        ready = venv_python(path)   # built while we waited
        if ready:
            return ready
        _build_venv(path, python or sys.executable)
    return venv_python(path)


def _build_venv(path, python):
    # a venv's scripts name its folder, so it is built in place (not in a
    # temporary folder renamed after); the marker is written last
    shutil.rmtree(path, ignore_errors=True)
    try:
        arm_root._run([python, "-m", "venv", path], f"{python} -m venv")
        arm_root._run([os.path.join(path, "bin", "python"), "-m", "pip",
                       "install", "--quiet", "--only-binary=:all:",
                       *PACKAGES],
                      f"pip install {' '.join(PACKAGES)} (x86_64 wheels of "
                      "tflite-runtime 2.14 exist for CPython 3.8 to 3.11)")
    except arm_root.ArmRootError as e:
        shutil.rmtree(path, ignore_errors=True)
        raise VenvError(str(e)) from None
    open(os.path.join(path, ".tfcompress-ready"), "w").close()


def run_runner(python, args, timeout=900):
    """Runs ``runner.py`` with the venv's ``python`` (numpy<2 and
    tflite-runtime 2.14 only, nothing of the calling environment)."""
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "runner.py")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("TFCOMPRESS_EMULATED", None)
    try:
        return subprocess.run([python, runner, *args], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VenvError(f"x86_64 tflite-runtime runner: {e}") from None
