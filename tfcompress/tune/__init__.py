"""``tune``: search per-layer sparsity, weight bits, conversion mode and
post-training steps for the smallest (or fastest) TFLite model whose
validation accuracy stays within a budget of the float model's.

>>> from tfcompress.tune import tune
>>> result = tune("configs/fashion_mnist_cnn.yaml", budget=1.0)  # doctest: +SKIP
>>> result.chosen["label"], result.recipe_path                   # doctest: +SKIP
('p3_w4_int8', 'runs/fashion_mnist_cnn/tune/recipe.yaml')
"""

from tfcompress.tune.search import TuneResult, tune
from tfcompress.tune.space import Candidate

__all__ = ["Candidate", "TuneResult", "tune"]
