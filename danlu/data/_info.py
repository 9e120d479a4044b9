"""What the rest of danlu needs to know about the data: task, shapes, classes, columns."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataInfo:
    """Facts about a prepared data set that model builders, losses and metrics rely on.

    ``feature_names`` are the input columns when the data came as a table (csv, sklearn,
    npy); for image folders and generated sequences they name the channel axis instead.
    ``categorical`` lists ``(column, cardinality)`` for columns holding integer codes
    ``0 .. cardinality-1`` stored as floats; the last code stands for "unknown".
    """

    task: str
    kind: str
    input_shape: tuple[int, ...]
    n_classes: int | None
    classes: list
    feature_names: list[str]
    categorical: list[tuple[int, int]] = field(default_factory=list)
    n_targets: int = 1
    positive: int = 1   # binary: the class id precision, recall, F1, ROC AUC are about (data.positive_class)
    class_counts: list[int] | None = None   # classification: training rows per class id (loss.class_weights: auto)

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "n_classes": self.n_classes,
            "classes": list(self.classes),
            "feature_names": list(self.feature_names),
            "categorical": [[int(c), int(k)] for c, k in self.categorical],
            "n_targets": self.n_targets,
        }

    @classmethod
    def from_json(cls, d: dict) -> "DataInfo":
        return cls(
            task=d["task"],
            kind=d["kind"],
            input_shape=tuple(int(s) for s in d["input_shape"]),
            n_classes=d.get("n_classes"),
            classes=list(d.get("classes", [])),
            feature_names=list(d.get("feature_names", [])),
            categorical=[(int(c), int(k)) for c, k in d.get("categorical", [])],
            n_targets=int(d.get("n_targets", 1)),
        )


@dataclass
class InputRows:
    """What :meth:`Pipeline.load_input` read besides the features, for writing output rows.

    ``ids`` holds one identifier per row: the 0-based data row of a CSV or array, or the
    image file's path relative to the folder given. ``labels`` holds the label values when
    the input carried them (a CSV's label column, an npz label array, class sub-folders),
    else ``None``.
    """

    ids: list
    id_name: str
    labels: list | None = None
