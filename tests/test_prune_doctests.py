"""The runnable examples in the pruning docstrings stay correct."""

import doctest
import importlib

import pytest

MODULES = ["tfcompress.prune", "tfcompress.prune.api",
           "tfcompress.prune.callbacks", "tfcompress.prune.masks",
           "tfcompress.prune.prunable", "tfcompress.prune.schedules",
           "tfcompress.prune.strip", "tfcompress.prune.summary",
           "tfcompress.prune.wrapper", "tfcompress.utils.layer_map"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
