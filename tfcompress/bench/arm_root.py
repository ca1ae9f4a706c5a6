"""An emulated Raspberry Pi OS-like userland to run the device-side runner
on arm64 without a board: Debian bookworm arm64 (Python 3.11, as on
Raspberry Pi OS) under qemu user-mode emulation, with the aarch64 wheels
of ``numpy<2`` and ``tflite-runtime==2.14.0``.

Needs Debian's ``debootstrap`` and ``qemu-user-static`` (no binfmt
registration), and network access to the Debian archive and PyPI the first
time; the root is cached (``~/.cache/tfcompress/arm64-bookworm``).
Timings measured this way are emulated, not device timings.

LiteRT (``ai-edge-litert``) needs numpy 2, which tflite-runtime 2.14
cannot import; :func:`build_litert_site` puts LiteRT's aarch64 wheel and
its dependencies (numpy 2 among them) in a second site folder inside the
root, and ``run_runner(..., site=...)`` puts that folder first on the path.

qemu-user 7.2 shows the host's x86 ``/proc/cpuinfo`` to arm64 programs,
and LiteRT's CPU detection (the cpuinfo library) crashes on it while
creating an interpreter (SIGSEGV). qemu looks up absolute paths in the
root first, so the root holds an arm64 ``proc/cpuinfo`` (Cortex-A72
cores, as on a Raspberry Pi 4, one per host core) that it reads instead.

qemu emulates a Cortex-A72 (Raspberry Pi 4) unless told otherwise
(``cpu="cortex-a76"`` for a Raspberry Pi 5). Its default CPU, ``max``,
offers SME, and there LiteRT 2.3's XNNPACK int8 kernels give wrong outputs
under qemu 7.2 (1.5% of a small conv model's outputs equal x86's; all of
them with ``max,sme=off`` or without XNNPACK).

>>> root = build_root()                                      # doctest: +SKIP
>>> run_runner(root, ["model_int8.tflite", "--runtime", "tflite_runtime"])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from tfcompress.errors import InputError

DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "tfcompress",
                            "arm64-bookworm")
WHEELS = ("numpy<2", "tflite-runtime==2.14.0")
PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_17_aarch64",
             "manylinux2014_aarch64")
QEMU = "qemu-aarch64-static"
DEFAULT_CPU = "cortex-a72"
LITERT_WHEELS = ("ai-edge-litert==2.3.0",)
#: the runtimes the root can run a flatbuffer with
ARM_RUNTIMES = ("tflite_runtime", "ai_edge_litert")
LITERT_SITE = "opt/tfcompress/litert-site"
LITERT_PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64",
                    "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                    "manylinux2014_aarch64")


def arm_request(models, runtimes):
    """``{name: path}`` of ``models`` (a mapping, or paths named by their
    file stem) once every path exists and every runtime is one the arm64
    root has; else an :class:`InputError` naming what is wrong."""
    if isinstance(models, dict):
        models = {str(k): os.fspath(v) for k, v in models.items()}
    else:
        models = {os.path.splitext(os.path.basename(os.fspath(p)))[0]:
                  os.fspath(p) for p in models}
    for rt in runtimes:
        if rt not in ARM_RUNTIMES:
            raise InputError(f"arm64 runtime {rt!r} is not one of "
                             f"{', '.join(ARM_RUNTIMES)}")
    for name, path in models.items():
        if not os.path.isfile(path):
            raise InputError(f"flatbuffer {path} ({name}) does not exist; "
                             "give the path of a .tflite file (write one "
                             "with tfcompress convert)")
    return models


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


def write_arm_cpuinfo(root):
    """Writes the root's ``proc/cpuinfo``: one Cortex-A72 entry per host
    core, in the format of an arm64 Linux kernel."""
    entry = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd "
             "evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU "
             "architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\n"
             "CPU revision\t: 3\n\n")
    path = os.path.join(root, "proc", "cpuinfo")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write("".join(entry.format(i=i)
                        for i in range(os.cpu_count() or 1)))
    os.replace(path + ".tmp", path)
    return path


def tools_missing():
    """Names of the host tools that are not installed."""
    return [t for t in ("debootstrap", QEMU, "dpkg")
            if shutil.which(t) is None and
            not os.path.exists(f"/usr/sbin/{t}")]


@contextlib.contextmanager
def _build_lock(path):
    """Holds an exclusive lock on ``path + ".lock"``: two processes asked to
    build the same root (or site) at once build it once, one after the
    other reusing it, instead of both writing ``.partial``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_root(root=DEFAULT_ROOT, suite="bookworm"):
    """Builds (or reuses) the arm64 root; returns its path."""
    marker = os.path.join(root, ".tfcompress-ready")
    if os.path.exists(marker):
        return root
    with _build_lock(root):
        if os.path.exists(marker):   # built while we waited
            return root
        return _build_root(root, suite)


def _build_root(root, suite):
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
    write_arm_cpuinfo(tmp)
    open(os.path.join(tmp, ".tfcompress-ready"), "w").close()
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return root


def build_litert_site(root=DEFAULT_ROOT):
    """Installs LiteRT's aarch64 wheel and its dependencies (numpy 2) in a
    site folder of the root, apart from tflite-runtime's numpy<2; returns
    the folder (reused when already there).

    >>> site = build_litert_site(build_root())             # doctest: +SKIP
    >>> run_runner(root, ["m.tflite", "--runtime", "ai_edge_litert"],
    ...            site=site)                              # doctest: +SKIP
    """
    if not os.path.exists(os.path.join(root, "proc", "cpuinfo")):
        write_arm_cpuinfo(root)   # roots built before it was written
    site = os.path.join(root, LITERT_SITE)
    marker = os.path.join(site, ".tfcompress-ready")
    if os.path.exists(marker):
        return site
    with _build_lock(site):
        if not os.path.exists(marker):   # else built while we waited
            _build_litert_site(site)
    return site


def _build_litert_site(site):
    tmp = site + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with tempfile.TemporaryDirectory() as wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet",
               "--only-binary=:all:", "--python-version", "3.11",
               "--implementation", "cp", "-d", wheels]
        for p in LITERT_PLATFORMS:
            cmd += ["--platform", p]
        _run(cmd + list(LITERT_WHEELS), "pip download of LiteRT's aarch64 "
             "wheel and its dependencies")
        for whl in glob.glob(os.path.join(wheels, "*.whl")):
            with zipfile.ZipFile(whl) as z:
                z.extractall(tmp)
    open(os.path.join(tmp, ".tfcompress-ready"), "w").close()
    shutil.rmtree(site, ignore_errors=True)
    os.replace(tmp, site)


def runtime_sites(root, runtimes):
    """``(sites, errors)``: the extra site folder each runtime needs in the
    root (None for tflite-runtime, which is installed in the root itself;
    LiteRT's aarch64 site, built on first use) and, per runtime whose site
    could not be built, a one-line reason."""
    sites, errors = {"tflite_runtime": None}, {}
    if "ai_edge_litert" in runtimes:
        try:
            sites["ai_edge_litert"] = build_litert_site(root)
        except ArmRootError as e:
            errors["ai_edge_litert"] = (
                f"LiteRT's aarch64 wheel could not be installed in the "
                f"root: {e}")
    return sites, errors


def runtime_label(row):
    """``"tflite_runtime 2.14.0"``: a row's runtime and, when known, its
    version (the arm64 runtime column of the report tables).

    >>> runtime_label({"runtime": "ai_edge_litert", "runtime_version": None})
    'ai_edge_litert'
    """
    version = row["runtime_version"]
    return row["runtime"] + (f" {version}" if version else "")


def machine_label(environment, cpu):
    """The runner's ``machine``, with the CPU qemu emulated when the run
    was emulated.

    >>> machine_label({"machine": "aarch64", "emulated": True}, "cortex-a72")
    'aarch64 (qemu cortex-a72)'
    """
    return environment["machine"] + (f" (qemu {cpu})"
                                     if environment["emulated"] else "")


def runner_error(result):
    """One line saying why a :func:`run_runner` run failed: the runner's
    last ``runner:`` line (its own errors exit with code 2), else the last
    line it printed, naming a crash's exit code."""
    text = result.stderr or result.stdout or ""
    lines = [l for l in text.splitlines() if l.startswith("runner:")]
    line = lines[-1] if lines else (text.strip().splitlines() or ["?"])[-1]
    msg = " ".join(line.split())[:500]
    if result.returncode != 2:
        msg = f"the runner crashed (exit code {result.returncode}): {msg}"
    return msg


def run_runner(root, args, timeout=900, site=None, cpu=DEFAULT_CPU):
    """Runs ``runner.py`` with the root's Python 3.11 under qemu emulating
    ``cpu``; ``site`` (e.g. from :func:`build_litert_site`) goes first on
    its path."""
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "runner.py")
    qemu = shutil.which(QEMU) or f"/usr/bin/{QEMU}"
    env = dict(os.environ, TFCOMPRESS_EMULATED="qemu-aarch64")
    env.pop("PYTHONPATH", None)
    if site is not None:
        env["PYTHONPATH"] = site
    cmd = [qemu, "-cpu", cpu, "-L", root,
           os.path.join(root, "usr/bin/python3.11"),
           runner, *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise ArmRootError(f"emulated run took over {timeout} s") from None
