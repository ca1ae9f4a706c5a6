"""How the arm64 runtimes execute a flatbuffer: delegate partitions and the
ops left outside XNNPACK, counted in the emulated root of :mod:`arm_root`.

The emulated root cannot time (qemu's timings are not a board's), but the
runtimes make the same delegation decisions there as on a board, so it can
count partitions: tflite-runtime 2.14 may hand a model to XNNPACK
differently from LiteRT 2.3. Runs ``runner.py --delegation-only`` in the
root with tflite-runtime 2.14 and, when its wheel installs, LiteRT's
aarch64 wheel.

>>> rows = arm_delegation({"mnv3": "mnv3_int8.tflite"})     # doctest: +SKIP
>>> print(format_rows(rows))                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile

from tfcompress.bench import arm_root
from tfcompress.bench.delegation import outside_summary

ARM_RUNTIMES = arm_root.ARM_RUNTIMES


def _row(name, runtime, **fields):
    row = {"model": name, "runtime": runtime, "runtime_version": None,
           "machine": None, "xnnpack": True, "partitions": None,
           "total_ops": None, "ops_outside": None,
           "delegated_mac_share": None, "outside_op_types": None,
           "error": None}
    row.update(fields)
    return row


def arm_delegation(models, root=None, runtimes=ARM_RUNTIMES, xnnpack=True,
                   threads=1, cpu=arm_root.DEFAULT_CPU, timeout=1800,
                   log=None):
    """Delegation report of each flatbuffer on each emulated arm64 runtime.

    Args:
      models: ``{name: path}`` or a list of ``.tflite`` paths.
      root: the arm64 root (default :func:`arm_root.build_root`, which
        builds it the first time: minutes, and needs the network).
      runtimes: from ``ARM_RUNTIMES``.
      xnnpack, threads: as for :func:`tfcompress.bench.delegation.
        delegation_report`.
      cpu: the arm64 CPU qemu emulates.

    Returns:
      One dict per (model, runtime): ``partitions``, ``total_ops``,
      ``ops_outside``, ``delegated_mac_share``, ``outside_op_types``,
      ``runtime_version``, ``machine``, ``error`` (one line, or None).
    """
    models = arm_root.arm_request(models, runtimes)
    log = log or (lambda *a: None)
    root = root or arm_root.build_root()
    sites, site_errors = arm_root.runtime_sites(root, runtimes)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in models.items():
            for rt in runtimes:
                if rt in site_errors:
                    rows.append(_row(name, rt, error=site_errors[rt]))
                    continue
                out = os.path.join(tmp, f"{name}.{rt}.json")
                args = [os.path.abspath(path), "--delegation-only",
                        "--runtime", rt, "--threads", str(threads),
                        "--json", out]
                if not xnnpack:
                    args.append("--no-xnnpack")
                try:
                    r = arm_root.run_runner(root, args, timeout=timeout,
                                            site=sites.get(rt), cpu=cpu)
                except arm_root.ArmRootError as e:
                    rows.append(_row(name, rt, error=str(e)))
                    continue
                if r.returncode != 0:
                    msg = arm_root.runner_error(r)
                    rows.append(_row(name, rt, error=msg))
                    log(f"{name} on {rt}: {msg}")
                    continue
                with open(out) as f:
                    rep = json.load(f)
                env = rep["environment"]
                rows.append(_row(
                    name, rt, runtime_version=env["runtime_version"],
                    machine=arm_root.machine_label(env, cpu),
                    xnnpack=rep["xnnpack"], partitions=rep["partitions"],
                    total_ops=rep["total_ops"],
                    ops_outside=rep["ops_outside"],
                    delegated_mac_share=rep["delegated_mac_share"],
                    outside_op_types=rep["outside_op_types"]))
                log(f"{name} on {rt} {env['runtime_version']}: "
                    f"{rep['partitions']} partition(s), "
                    f"{len(rep['ops_outside'])} op(s) outside")
    return rows


def format_rows(rows):
    """A Markdown table of :func:`arm_delegation` rows (ops outside
    grouped by type)."""
    lines = ["| model | arm64 runtime | partitions | ops outside / total "
             "| MACs delegated | outside (type x count) |",
             "|---|---|---:|---:|---:|---|"]
    for r in rows:
        rt = arm_root.runtime_label(r)
        if r["error"]:
            lines.append(f"| {r['model']} | {rt} | - | - | - | "
                         f"{r['error'].replace('|', '/')} |")
            continue
        lines.append(f"| {r['model']} | {rt} | {r['partitions']} | "
                     f"{len(r['ops_outside'])} / {r['total_ops']} | "
                     f"{100 * r['delegated_mac_share']:.1f}% | "
                     f"{outside_summary(r['ops_outside'])} |")
    return "\n".join(lines)

