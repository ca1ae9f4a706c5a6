"""YAML recipes: one file describes a whole compression job.

>>> from tfcompress.recipes import run_recipe
>>> result = run_recipe("configs/fashion_mnist_cnn.yaml")  # doctest: +SKIP
"""

from tfcompress.recipes.runner import run_recipe

__all__ = ["run_recipe"]
