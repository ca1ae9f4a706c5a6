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


TWO_CPUS_PREAMBLE = r'''
import json
import os
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras

keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
'''


class TwoCpus:
    """Runs a script under ``tf.distribute.MirroredStrategy`` on two logical
    CPUs in a fresh interpreter (logical devices must be configured before
    TensorFlow initialises). The script body sees ``strategy``, ``keras``,
    ``tf``, ``np``, ``json``, ``os`` and ``sys``, and ends by printing
    ``"REPORT" + json.dumps(...)``."""

    def __init__(self, folder):
        self.folder = folder

    def run(self, body, *args, timeout=300):
        import subprocess
        import sys
        script = self.folder / "two_cpus_script.py"
        script.write_text(TWO_CPUS_PREAMBLE + body)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        return subprocess.run([sys.executable, str(script)] +
                              [str(a) for a in args], capture_output=True,
                              text=True, env=env, timeout=timeout)

    @staticmethod
    def report(done):
        """The last ``REPORT`` line of a finished run, as a dict."""
        import json
        assert done.returncode == 0, done.stderr[-3000:]
        line = [l for l in done.stdout.splitlines() if l.startswith("REPORT")]
        assert line, "the script printed no REPORT line:\n" + done.stdout[-2000:]
        return json.loads(line[-1][len("REPORT"):])


@pytest.fixture
def two_cpus(tmp_path):
    """A :class:`TwoCpus` runner writing its script under ``tmp_path``."""
    return TwoCpus(tmp_path)


# Under pytest-xdist (make test: -n 2 --dist loadfile) each worker takes
# one whole file at a time. xdist hands out files with the most tests
# first, which leaves the long files of one or two tests (two worker
# processes training together, a killed-and-resumed run) for the end,
# where one worker runs them alone while the other has nothing left.
# Files start instead by their size in tests/BUILD (large, then medium,
# then small; among equal sizes, files holding slow tests first; ties in
# xdist's order), so the run ends on short files.
SIZE_RANK = {"enormous": 3, "large": 2, "medium": 1, "small": 0}


def build_sizes(build_text):
    """``{test file stem: (Bazel size, holds slow tests)}`` from the QUICK
    and WITH_SLOW tables of tests/BUILD."""
    import ast
    import re
    sizes = {}
    for table in ("QUICK", "WITH_SLOW"):
        m = re.search(rf"^{table} = (\{{.*?^\}})", build_text, re.S | re.M)
        if m:
            sizes.update({name: (size, table == "WITH_SLOW") for
                          name, (size, _) in
                          ast.literal_eval(m.group(1)).items()})
    return sizes


def largest_first(scopes, sizes):
    """``scopes`` (file node ids in xdist's order) sorted largest first by
    :func:`build_sizes`; stable among equals."""
    def rank(scope):
        stem = os.path.splitext(os.path.basename(scope))[0]
        size, slow = sizes.get(stem, ("small", False))
        return (-SIZE_RANK.get(size, 0), not slow)
    return sorted(scopes, key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling
    build = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "BUILD")
    if not os.path.exists(build):
        return None
    with open(build) as f:
        sizes = build_sizes(f.read())

    class LargestFileFirst(LoadFileScheduling):
        def _assign_work_unit(self, node):
            first = largest_first(list(self.workqueue), sizes)[0]
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)

    return LargestFileFirst(config, log)
