"""Labels: inferring the task, mapping class labels to ids and back."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

# 'auto' task: integer labels with at most this many distinct values are classes.
MAX_AUTO_CLASSES = 20


def plain(value):
    """A label value as a JSON-able Python scalar (integer-valued floats become ints)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return value


def _integer_valued(raw: np.ndarray) -> bool:
    return raw.dtype.kind in "iub" or bool(np.all(np.mod(raw, 1) == 0))


def _example(raw: np.ndarray):
    """A label value that shows what is wrong: a non-integer number, or the first text."""
    if raw.dtype.kind == "f":
        frac = raw[np.mod(raw, 1) != 0]
        return plain(frac[0]) if frac.size else plain(raw.flat[0])
    for value in raw.flat:
        try:
            float(value)
        except (TypeError, ValueError):
            return value
    return raw.flat[0]


def infer_task(raw: np.ndarray, declared: str, where: str, label: str) -> str:
    text = raw.dtype == object
    if declared == "regression":
        if text:
            raise DataError(f"{where}: label '{label}' holds text (e.g. '{_example(raw)}'), which cannot "
                            f"be a regression target; set data.task: classification or pick a numeric label")
        return "regression"
    if declared == "classification":
        if not text and not _integer_valued(raw):
            raise DataError(f"{where}: label '{label}' holds non-integer numbers (e.g. {_example(raw)}), "
                            f"which are not class labels; set data.task: regression")
        return "classification"
    if text or raw.dtype.kind == "b":
        return "classification"
    if raw.ndim == 1 and _integer_valued(raw) and len(np.unique(raw)) <= MAX_AUTO_CLASSES:
        return "classification"
    return "regression"


@dataclass
class LabelCodec:
    """Maps original labels to targets (class ids or floats) and class ids back."""

    task: str
    classes: list
    n_targets: int = 1

    @classmethod
    def fit(cls, raw: np.ndarray, declared: str, where: str, label: str,
            class_names: list | None = None) -> "LabelCodec":
        if declared == "multilabel":   # the tabular sources call fit_multilabel; other readers take one label
            raise DataError(f"{where}: data.task multilabel needs a table of 0/1 label columns (a CSV file or a "
                            f"DataFrame); set data.task to classification or regression here")
        if class_names is not None and declared == "regression":
            raise DataError(f"{where} is a classification data set; set data.task: classification or auto")
        task = infer_task(raw, declared, where, label)
        if task == "regression":
            return cls("regression", [], 1 if raw.ndim == 1 else int(raw.shape[1]))
        if raw.ndim != 1:
            raise DataError(f"{where}: label '{label}' has {raw.shape[1]} columns; classification needs one "
                            f"label per row (set data.task: regression for several targets)")
        if class_names is not None:
            classes = [plain(c) for c in class_names]
        else:
            classes = [plain(v) for v in sorted(set(raw.tolist()))]
        if len(classes) < 2:
            raise DataError(f"{where}: label '{label}' has a single class ({classes[0]!r}); classification "
                            f"needs at least two classes")
        return cls("classification", classes)

    @classmethod
    def fit_multilabel(cls, raw: np.ndarray, where: str, names: list, lines, line_word: str = "row") -> "LabelCodec":
        """data.task multilabel: ``raw`` is ``(N, K)`` with K >= 2 label columns holding 0 or 1 (a
        label applies to the row or not); ``names`` name the columns, ``lines`` the rows (messages)."""
        if raw.ndim != 2 or raw.shape[1] < 2:
            raise DataError(f"{where}: data.task multilabel needs two or more 0/1 label columns, got one; set "
                            f"data.label to a list of them, e.g. [tag_a, tag_b]")
        if raw.dtype.kind not in "fiub":
            raise DataError(f"{where}: multilabel label columns must hold 0 or 1; set data.label to numeric columns")
        bad = ~np.isin(raw, (0, 1))
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise DataError(f"{where}: label column '{names[j]}' {line_word} {lines[i]}: {plain(raw[i, j])!r} is not "
                            f"0 or 1 ({int(bad.sum())} such cell(s)); multilabel columns hold 1 where the label "
                            f"applies and 0 where it does not")
        return cls("multilabel", [plain(n) for n in names], int(raw.shape[1]))

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Targets for raw labels; class labels not seen in training raise KeyError."""
        if self.task == "multilabel":
            return np.asarray(raw, dtype=np.float32)
        if self.task == "regression":
            return np.asarray(raw, dtype=np.float32)
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[plain(v)] for v in raw.tolist()], dtype=np.int64)

    def decode(self, ids) -> list:
        values = np.asarray(ids.detach().cpu() if hasattr(ids, "detach") else ids)
        if self.task == "multilabel":   # (N, K) 0/1 -> the labels on, joined by '|'
            rows = values.reshape(len(values), -1)
            return ["|".join(str(c) for c, on in zip(self.classes, row) if on) for row in rows]
        if self.task == "regression":
            return values.astype(float).tolist()
        return [self.classes[int(i)] for i in values.ravel()]

    def to_json(self) -> dict:
        return {"task": self.task, "classes": self.classes, "n_targets": self.n_targets}

    @classmethod
    def from_json(cls, d: dict) -> "LabelCodec":
        return cls(d["task"], list(d["classes"]), int(d.get("n_targets", 1)))
