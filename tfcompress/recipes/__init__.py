"""YAML recipes: one file describes a whole compression job.

>>> from tfcompress.recipes import load_recipe, run_recipe
>>> result = run_recipe("configs/fashion_mnist_cnn.yaml")  # doctest: +SKIP
"""

from tfcompress.recipes.runner import load_data, run_recipe
from tfcompress.recipes.schema import RecipeError, load_recipe

__all__ = ["RecipeError", "load_data", "load_recipe", "run_recipe"]
