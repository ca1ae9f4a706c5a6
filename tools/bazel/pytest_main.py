"""Runs one pytest file as a Bazel test.

Bazel gives a test its shard through ``TEST_TOTAL_SHARDS`` and
``TEST_SHARD_INDEX`` and asks for a JUnit file at ``XML_OUTPUT_FILE``; this
runner honours both, so a long test file can be split with ``shard_count``.

    python pytest_main.py tests/test_prune_masks.py [-m "not slow"]
"""

from __future__ import annotations

import os
import sys

import pytest


class _Shard:
    """Keeps every ``total``-th collected test, starting at ``index``."""

    def __init__(self, index, total):
        self.index, self.total = index, total

    def pytest_collection_modifyitems(self, config, items):
        keep = [t for i, t in enumerate(items)
                if i % self.total == self.index]
        drop = [t for t in items if t not in keep]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep


def main(argv):
    args = ["-q", "-p", "no:cacheprovider", *argv]
    plugins = []
    total = int(os.environ.get("TEST_TOTAL_SHARDS", "1"))
    if total > 1:
        status = os.environ.get("TEST_SHARD_STATUS_FILE")
        if status:
            open(status, "w").close()
        plugins.append(_Shard(int(os.environ["TEST_SHARD_INDEX"]), total))
    if os.environ.get("XML_OUTPUT_FILE"):
        args.append(f"--junitxml={os.environ['XML_OUTPUT_FILE']}")
    code = pytest.main(args, plugins=plugins)
    # a shard that happens to hold only deselected tests is a pass
    return 0 if code == pytest.ExitCode.NO_TESTS_COLLECTED else int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
