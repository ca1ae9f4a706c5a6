"""The runnable examples in every tfcompress module's docstrings stay
correct. Modules are found by walking the package, so a new module's
examples run without being listed anywhere."""

import doctest
import importlib
import pkgutil

import pytest

import tfcompress


def _module_names():
    names = ["tfcompress"]
    for info in pkgutil.walk_packages(tfcompress.__path__, "tfcompress.",
                                      onerror=_raise):
        names.append(info.name)
    return sorted(names)


def _raise(name):
    raise ImportError(f"cannot import {name} while collecting doctests")


MODULES = _module_names()


def test_every_module_is_collected():
    # walk_packages finds modules at every depth, packages and leaves
    assert {"tfcompress.prune.api", "tfcompress.inspect.flatbuffer",
            "tfcompress.utils.atomic", "tfcompress.quantize"} <= set(MODULES)
    assert len(MODULES) >= 50


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS,
                             verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) failed in {name}"
