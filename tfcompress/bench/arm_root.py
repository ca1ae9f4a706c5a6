"""An emulated Raspberry Pi OS-like userland to run the device-side runner
on arm64 without a board: Debian bookworm arm64 (Python 3.11, as on
Raspberry Pi OS) under qemu user-mode emulation, with the aarch64 wheels
of ``numpy<2`` and ``tflite-runtime==2.14.0``.

Needs Debian's ``debootstrap`` and ``qemu-user-static`` (no binfmt
registration), and network access to the Debian archive and PyPI the first
time; the root is cached (``~/.cache/tfcompress/arm64-bookworm``).
Timings measured this way are emulated, not device timings.

>>> root = build_root()                                      # doctest: +SKIP
>>> run_runner(root, ["model_int8.tflite", "--runtime", "tflite_runtime"])  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "tfcompress",
                            "arm64-bookworm")
WHEELS = ("numpy<2", "tflite-runtime==2.14.0")
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_17_aarch64",
             "manylinux2014_aarch64")
QEMU = "qemu-aarch64-static"


class ArmRootError(RuntimeError):
    """The emulated root could not be built or run; says why."""


def _run(cmd, what, timeout=900):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ArmRootError(f"{what}: {e}") from None
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        raise ArmRootError(f"{what} failed: {tail[0][:300]}")
    return r


def tools_missing():
    """Names of the host tools that are not installed."""
    return [t for t in ("debootstrap", QEMU, "dpkg")
            if shutil.which(t) is None and
            not os.path.exists(f"/usr/sbin/{t}")]


def build_root(root=DEFAULT_ROOT, suite="bookworm"):
    """Builds (or reuses) the arm64 root; returns its path."""
    marker = os.path.join(root, ".tfcompress-ready")
    if os.path.exists(marker):
        return root
    missing = tools_missing()
    if missing:
        raise ArmRootError(f"missing host tools {missing}: apt-get install "
                           "debootstrap qemu-user-static")
    tmp = root + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    _run([debootstrap, "--foreign", "--arch=arm64", "--variant=minbase",
          "--include=python3.11", suite, tmp], "debootstrap")
    for deb in sorted(glob.glob(os.path.join(tmp, "var/cache/apt/archives",
                                             "*.deb"))):
        _run(["dpkg", "-x", deb, tmp], f"dpkg -x {os.path.basename(deb)}")
    site = os.path.join(tmp, "usr/local/lib/python3.11/dist-packages")
    os.makedirs(site, exist_ok=True)
    with tempfile.TemporaryDirectory() as wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet",
               "--only-binary=:all:", "--no-deps", "--python-version",
               "3.11", "--implementation", "cp", "-d", wheels]
        for p in PLATFORMS:
            cmd += ["--platform", p]
        _run(cmd + list(WHEELS), "pip download of aarch64 wheels")
        for whl in glob.glob(os.path.join(wheels, "*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(site)
    open(os.path.join(tmp, ".tfcompress-ready"), "w").close()
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def run_runner(root, args, timeout=900):
    """Runs ``runner.py`` with the root's Python 3.11 under qemu."""
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "runner.py")
    qemu = shutil.which(QEMU) or f"/usr/bin/{QEMU}"
    env = dict(os.environ, TFCOMPRESS_EMULATED="qemu-aarch64")
    env.pop("PYTHONPATH", None)
    cmd = [qemu, "-L", root, os.path.join(root, "usr/bin/python3.11"),
           runner, *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ArmRootError(f"emulated run took over {timeout} s") from None
