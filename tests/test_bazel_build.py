"""tests/BUILD and the top-level BUILD stay in step with the code."""

import ast
import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dict_literal(text, name):
    m = re.search(rf"^{name} = (\{{.*?^\}})", text, re.S | re.M)
    return ast.literal_eval(m.group(1))


def test_every_test_file_has_a_bazel_target():
    text = open(os.path.join(ROOT, "tests", "BUILD")).read()
    quick, with_slow = (_dict_literal(text, "QUICK"),
                        _dict_literal(text, "WITH_SLOW"))
    assert not set(quick) & set(with_slow)
    files = {os.path.basename(p)[:-3]
             for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py"))}
    assert files == set(quick) | set(with_slow), (
        "add the missing test files to QUICK or WITH_SLOW in tests/BUILD")
    for name in files:
        src = open(os.path.join(ROOT, "tests", name + ".py")).read()
        has_slow = bool(re.search(r"^@pytest\.mark\.slow", src, re.M))
        assert has_slow == (name in with_slow), (
            f"{name}: files with slow tests belong in WITH_SLOW, others "
            "in QUICK")


def _conftest():
    """tests/conftest.py as a module (Bazel's runner does not put tests/ on
    sys.path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "tests_conftest", os.path.join(ROOT, "tests", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_test_starts_files_by_their_bazel_size():
    build_sizes, largest_first = (_conftest().build_sizes,
                                  _conftest().largest_first)
    sizes = build_sizes(open(os.path.join(ROOT, "tests", "BUILD")).read())
    files = {os.path.basename(p)[:-3]
             for p in glob.glob(os.path.join(ROOT, "tests", "test_*.py"))}
    assert set(sizes) == files
    assert sizes["test_distribute_multi_worker"] == ("large", True)
    assert sizes["test_convert"] == ("large", False)
    assert sizes["test_atomic"] == ("small", False)
    # xdist's own order (most tests first) would leave the two-test
    # multi-worker file for last
    scopes = ["tests/test_atomic.py", "tests/test_convert.py",
              "tests/test_cli.py", "tests/test_distribute_multi_worker.py",
              "tests/test_data.py"]
    assert largest_first(scopes, sizes) == [
        "tests/test_distribute_multi_worker.py", "tests/test_convert.py",
        "tests/test_cli.py", "tests/test_atomic.py", "tests/test_data.py"]


def test_bazel_smoke_targets_are_quick_test_targets():
    text = open(os.path.join(ROOT, "tests", "BUILD")).read()
    quick = _dict_literal(text, "QUICK")
    mk = open(os.path.join(ROOT, "make", "bazel.mk")).read()
    block = re.search(r"^BAZEL_SMOKE \?=(.*?)(?<!\\)\n", mk,
                      re.S | re.M).group(1)
    targets = re.findall(r"//tests:(\w+)", block)
    assert len(targets) >= 3, block
    missing = [t for t in targets if t not in quick]
    assert not missing, (
        f"BAZEL_SMOKE in make/bazel.mk names {missing}, which are not "
        "quick targets in tests/BUILD")


def test_device_runner_target_has_only_the_runner_files():
    text = open(os.path.join(ROOT, "BUILD")).read()
    block = re.search(r'py_library\(\s*name = "bench_runner_lib",(.*?)\n\)',
                      text, re.S).group(1)
    assert re.findall(r'"([^"]+\.py)"', block) == [
        "tfcompress/bench/runner.py", "tfcompress/bench/delegation.py"]
    assert "deps" not in block
    # the runner files import nothing of tfcompress (they are copied to
    # boards) and TensorFlow only as a last-resort runtime, in a function
    for name in ("runner.py", "delegation.py"):
        src = open(os.path.join(ROOT, "tfcompress", "bench", name)).read()
        assert not re.search(r"^\s*(from|import) tfcompress", src, re.M), \
            name
        assert not re.search(r"^(from|import) (tensorflow|keras)", src,
                             re.M), name
