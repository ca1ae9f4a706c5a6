"""pytest_test: one pytest file as a Bazel py_test."""

def pytest_test(name, src, deps = [], data = [], args = [], **kwargs):
    """A py_test that runs ``src`` under pytest (see pytest_main.py).

    Extra keyword arguments (size, timeout, shard_count, tags, ...) go to
    py_test unchanged.
    """
    native.py_test(
        name = name,
        srcs = ["//tools/bazel:pytest_main.py", src],
        main = "//tools/bazel:pytest_main.py",
        args = ["$(location %s)" % src] + args,
        deps = deps,
        data = data,
        python_version = "PY3",
        **kwargs
    )
