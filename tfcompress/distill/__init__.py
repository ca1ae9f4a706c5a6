"""Knowledge distillation for Keras 3: ``Distiller``."""

from tfcompress.distill.distiller import Distiller

__all__ = ["Distiller"]
