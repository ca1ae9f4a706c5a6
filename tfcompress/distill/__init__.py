"""Knowledge distillation for Keras 3 on ``keras.distillation``:
``Distiller`` (live teacher, precomputed teacher logits, feature matching
across widths) and ``logits_distillation``."""

from tfcompress.distill.distiller import Distiller, logits_distillation

__all__ = ["Distiller", "logits_distillation"]
