"""The runnable examples in the cluster, quantize, convert options, recipe
schema and atomic-write docstrings stay correct."""

import doctest
import importlib

import pytest

MODULES = ["tfcompress.cluster.api", "tfcompress.cluster.centroids",
           "tfcompress.convert.frozen", "tfcompress.convert.inputs",
           "tfcompress.convert.recurrent",
           "tfcompress.convert.options",
           "tfcompress.quantize.api", "tfcompress.quantize.shared_ranges",
           "tfcompress.recipes.schema", "tfcompress.utils.atomic"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name),
                             optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
