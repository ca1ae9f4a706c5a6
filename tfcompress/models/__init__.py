"""Reference models: the seed CNN, LeNet-300-100 and a small MobileNet."""

from tfcompress.models.reference import (MODELS, compile_classifier, get_model,
                                         lenet_300_100, mobilenet_small,
                                         seed_cnn)

__all__ = ["MODELS", "compile_classifier", "get_model", "lenet_300_100",
           "mobilenet_small", "seed_cnn"]
