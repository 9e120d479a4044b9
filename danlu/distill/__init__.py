"""Knowledge distillation (模型蒸馏, teacher / student): a small student learns from the softened
class probabilities of one or more trained teachers as well as from the labels.

>>> from danlu.distill import distill
>>> result = distill(Recipe.from_yaml("student.yaml"), ["runs/digits_cnn"], temperature=4, alpha=0.7)
>>> result["student"]["test"]["accuracy"], result["baseline"]["test"]["accuracy"]

The loss is in ``_loss`` (documented there); ``_distill`` trains the student, the same student
alone for comparison, and writes distill.json.
"""
from ._distill import RESULT_FILE, distill, table_rows

_LAZY = ("Teacher", "class_logits", "kd_loss", "distillation_loss", "soft_targets")   # in _loss, which needs torch


def __getattr__(name):
    if name in _LAZY:
        from . import _loss

        return getattr(_loss, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RESULT_FILE", "distill", "table_rows", *_LAZY]
