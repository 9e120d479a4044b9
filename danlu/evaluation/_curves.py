"""Points of the curves a report draws: ROC, precision-recall, confusion matrix, residuals.

Plain numpy in, plain dicts of numpy arrays out, so plots, HTML reports and JSON dumps can
use them without torch. The points are scikit-learn's, checked in the tests:

* ROC: ``sklearn.metrics.roc_curve`` with its default ``drop_intermediate=True`` (collinear
  points dropped; they change neither the plot nor the area) — pass ``drop_intermediate=False``
  for every threshold. The first threshold is ``inf`` so the curve starts at (0, 0). AUC is the
  trapezoidal area (``sklearn.metrics.auc``), equal to ``roc_auc_score``.
* Precision-recall: ``sklearn.metrics.precision_recall_curve`` with its default
  ``drop_intermediate=False``: recall decreasing, a final point (recall 0, precision 1) with no
  threshold. ``average_precision`` is ``average_precision_score`` (the step-wise sum, not the
  trapezoid, which would be optimistic).
* Multiclass: one-vs-rest per class. A class with no positive or no negative row in
  ``y_true`` has no curve (its rates would divide by zero) and is left out of ``per_class``;
  the macro average runs over the classes that have one, as in ``compute_metrics``.

Both curve functions return ``{"per_class": {class_id: {...arrays..., "auc"/"average_precision"}},
"auc"/"average_precision": float, "average": "binary" | "macro"}``; a binary problem has one
entry, for class 1.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ._metrics import _as_class_ids, _as_probability_matrix, _to_numpy


def _counts_at_thresholds(positive: np.ndarray, score: np.ndarray):
    """False and true positive counts when predicting positive for ``score >= t``, for every
    distinct score ``t`` from the highest down (scikit-learn's ``confusion_matrix_at_thresholds``)."""
    order = np.argsort(score, kind="stable")[::-1]
    score = score[order]
    positive = positive[order].astype(np.float64)
    # the last row of each run of equal scores: ties are decided together
    ends = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(positive)[ends]
    fps = 1.0 + ends - tps
    return fps, tps, score[ends]


def _area(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under ``y(x)`` for ``x`` monotonic (either direction), like ``sklearn.metrics.auc``."""
    area = float(np.trapezoid(y, x) if hasattr(np, "trapezoid") else np.trapz(y, x))
    return -area if len(x) > 1 and x[-1] < x[0] else area


def _binary_roc(positive: np.ndarray, score: np.ndarray, drop_intermediate: bool) -> dict:
    fps, tps, thresholds = _counts_at_thresholds(positive, score)
    if drop_intermediate and len(fps) > 2:
        # keep the corners only: a point on a straight line between its neighbours changes nothing
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    fpr, tpr = fps / fps[-1], tps / tps[-1]
    return {"fpr": fpr, "tpr": tpr, "thresholds": np.r_[np.inf, thresholds.astype(np.float64)],
            "auc": _area(fpr, tpr)}


def _binary_pr(positive: np.ndarray, score: np.ndarray, drop_intermediate: bool) -> dict:
    fps, tps, thresholds = _counts_at_thresholds(positive, score)
    if drop_intermediate and len(fps) > 2:
        # all points with the same recall but the first and last of each run lie on one vertical line
        keep = np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = tps / tps[-1]
    precision, recall = np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]
    average_precision = max(0.0, float(-np.sum(np.diff(recall) * precision[:-1])))
    return {"precision": precision, "recall": recall, "thresholds": thresholds[::-1].astype(np.float64),
            "average_precision": average_precision}


def _one_vs_rest(y_true, scores, n_classes, curve, drop_intermediate: bool, summary: str) -> dict:
    proba = _as_probability_matrix(_to_numpy(scores), n_classes)
    labels = _as_class_ids(_to_numpy(y_true), proba.shape[1], len(proba))
    binary = proba.shape[1] == 2
    per_class = {}
    for c in ([1] if binary else range(proba.shape[1])):
        positive = labels == c
        if 0 < positive.sum() < len(labels):
            per_class[c] = curve(positive, proba[:, c], drop_intermediate)
    value = float(np.mean([p[summary] for p in per_class.values()])) if per_class else float("nan")
    return {"per_class": per_class, summary: value, "average": "binary" if binary else "macro"}


def roc_curve_points(y_true, scores, n_classes: int | None = None, *, drop_intermediate: bool = True) -> dict:
    """ROC curve points (false / true positive rate per threshold) and the area under them.

    ``scores``: class probabilities ``(N, C)`` or P(class 1) ``(N,)``; ``y_true``: class ids.
    Returns ``{"per_class": {c: {"fpr", "tpr", "thresholds", "auc"}}, "auc", "average"}``.
    """
    return _one_vs_rest(y_true, scores, n_classes, _binary_roc, drop_intermediate, "auc")


def pr_curve_points(y_true, scores, n_classes: int | None = None, *, drop_intermediate: bool = False) -> dict:
    """Precision-recall curve points per threshold and the average precision.

    Returns ``{"per_class": {c: {"precision", "recall", "thresholds", "average_precision"}},
    "average_precision", "average"}``.
    """
    return _one_vs_rest(y_true, scores, n_classes, _binary_pr, drop_intermediate, "average_precision")


def confusion(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Confusion matrix: ``matrix[i, j]`` counts rows of true class ``i`` predicted as ``j``
    (``sklearn.metrics.confusion_matrix`` with ``labels=range(n_classes)``).

    ``y_pred`` may be class ids or scores ``(N, C)`` (the arg-max is taken). ``normalized`` divides
    each row by its count (recall per class on the diagonal; a class without rows stays 0).
    """
    pred = _to_numpy(y_pred)
    if pred.ndim == 2 and pred.shape[1] > 1:
        n_classes = n_classes or pred.shape[1]
        pred = np.argmax(pred, axis=1)
    true = _to_numpy(y_true).reshape(-1)
    pred = pred.reshape(-1)
    if n_classes is None:
        n_classes = int(max(true.max(initial=0), pred.max(initial=0))) + 1
    true = _as_class_ids(true, n_classes, len(pred))
    pred = _as_class_ids(pred, n_classes, len(true))
    matrix = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    totals = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    normalized = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals != 0)
    return {"matrix": matrix, "normalized": normalized, "labels": np.arange(n_classes)}


def residuals(y_true, y_pred) -> dict:
    """Regression residuals ``y_true - y_pred`` (observed minus predicted) with their summary.

    Arrays keep the targets' shape: ``(N,)`` for one target, ``(N, k)`` for several.
    """
    y = np.asarray(_to_numpy(y_true), dtype=np.float64)
    p = np.asarray(_to_numpy(y_pred), dtype=np.float64)
    if p.size != y.size:
        raise DataError(f"predictions have shape {p.shape} but targets have {y.shape}; give one prediction "
                        "per target value")
    p = p.reshape(y.shape)
    r = y - p
    return {"y_true": y, "y_pred": p, "residual": r, "mean": r.mean(axis=0), "std": r.std(axis=0),
            "mae": np.abs(r).mean(axis=0)}
