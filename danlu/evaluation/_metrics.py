"""Metrics for classification and regression, written in numpy.

They run after every validation pass, so they are plain vectorised numpy rather than calls
into scikit-learn (whose input validation costs more than the arithmetic). The tests check
every value against scikit-learn on many random cases.

Choices where scikit-learn leaves room, all documented here once:

* Macro precision / recall / F1 average over the classes that occur in ``y_true`` or in the
  predictions (scikit-learn's default label set). A class that never occurs and is never
  predicted says nothing about the model and would only drag the average down. A class
  with no predictions scores precision 0, a class with no true rows recall 0
  (``zero_division=0``).
* Binary precision / recall / F1 / ROC AUC are about one positive class: class id ``positive``
  (default 1). A run picks it with ``data.positive_class``; without it, the second class in
  sorted order of the labels, as scikit-learn's ``pos_label`` defaults do (see
  :func:`positive_class_id`), and summary.json names it (``positive_class``).
* ROC AUC is one-vs-rest per class (binary: on the probability of the positive class), averaged over
  the classes that have both positive and negative rows in ``y_true``. When every class
  occurs this equals ``roc_auc_score(multi_class='ovr', average='macro')``; when a split lacks
  a class, scikit-learn returns NaN and we average the classes that are defined instead. With
  fewer than two classes in ``y_true`` AUC is undefined and the key is left out.
* Log loss uses all ``n_classes`` labels and clips probabilities to ``[eps, 1 - eps]`` with
  ``eps`` the machine epsilon of the scores' own dtype (1.2e-7 for float32), like scikit-learn.
* Non-finite scores (a diverged model) give NaN for ``roc_auc`` / ``log_loss`` / regression
  errors instead of raising: the training loop's diagnostics report the divergence.
* Multi-output regression averages each output's value uniformly, so ``rmse`` is the mean of
  the per-output RMSEs (scikit-learn's ``root_mean_squared_error``), not ``sqrt(mse)``.
* R² of a constant target follows scikit-learn's ``force_finite``: 1.0 for perfect predictions,
  otherwise 0.0; NaN with fewer than two rows. "Constant" means all values are equal, so
  rounding in the mean cannot turn ``[0.1] * 7`` into R² = -5e29 (scikit-learn 1.9 does).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UserError, did_you_mean

PRIMARY_METRIC = {"classification": "accuracy", "regression": "r2", "multilabel": "accuracy"}

METRICS = {
    "classification": ("accuracy", "precision_macro", "recall_macro", "f1_macro",
                       "precision_micro", "recall_micro", "f1_micro",
                       "precision", "recall", "f1", "roc_auc", "log_loss"),
    "regression": ("mse", "rmse", "mae", "r2"),
    # multilabel: accuracy is subset accuracy (every label of a row right); f1_<label> per label besides
    "multilabel": ("accuracy", "hamming_loss", "precision_micro", "recall_micro", "f1_micro",
                   "precision_macro", "recall_macro", "f1_macro", "roc_auc"),
}

_HIGHER_IS_BETTER = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro",
                     "recall_micro", "f1_micro", "precision", "recall", "f1", "roc_auc", "r2",
                     "silhouette", "adjusted_rand",  # k-means
                     "variance_explained",  # pca
                     "mean_return", "mean_return_100", "best_mean_return_100"}  # agents (danlu.rl)
_LOWER_IS_BETTER = {"loss", "log_loss", "mse", "rmse", "mae", "inertia",
                    "reconstruction", "reconstruction_mse", "kl"}  # generative and reduction models
_SPLIT_PREFIXES = ("train_", "val_", "validation_", "test_")


def compute_metrics(task: str, y_true, scores, *, n_classes: int | None = None, positive: int = 1,
                    extra: Iterable["Metric"] = (), label_names: list | None = None) -> dict[str, float]:
    """Metrics of one split: the built-in ones, the registered ones of this task (see
    :func:`register_metric`) and ``extra`` metrics (e.g. from :func:`metrics_from_callables`).

    ``task="classification"``: ``y_true`` holds class ids ``(N,)``; ``scores`` holds class
    probabilities ``(N, n_classes)``, or ``(N,)`` / ``(N, 1)`` probabilities of class 1 for a
    binary model; binary ``precision``, ``recall``, ``f1`` and ``roc_auc`` are about the class
    id ``positive``. ``task="regression"``: ``y_true`` and ``scores`` (the predictions) are
    ``(N,)`` or ``(N, k)``. ``task="multilabel"``: ``y_true`` is the 0/1 indicator matrix ``(N, K)``,
    ``scores`` each label's probability ``(N, K)`` (a label is predicted when it is >= 0.5), and
    ``label_names`` name the per-label ``f1_<label>`` (default the column numbers). numpy arrays and
    torch tensors (any device) are accepted.
    """
    y_true = _to_numpy(y_true)
    scores = _to_numpy(scores)
    if task == "classification":
        metrics = _classification_metrics(y_true, scores, n_classes, positive)
    elif task == "regression":
        metrics = _regression_metrics(y_true, scores)
    elif task == "multilabel":
        metrics = _multilabel_metrics(y_true, scores, label_names)
    else:
        raise UserError(f"unknown task {task!r}{did_you_mean(task, PRIMARY_METRIC)}; "
                        f"use one of {', '.join(PRIMARY_METRIC)}")
    own = [m for m in (*_REGISTERED.values(), *extra) if m.task in (None, task)]
    if own:
        metrics.update(_own_metrics(own, task, y_true, scores, n_classes, positive))
    return metrics


def _label_order(label):
    # numbers in numeric order (2 before 10), anything else by its text
    return (0, float(label), "") if isinstance(label, (int, float)) and not isinstance(label, bool) \
        else (1, 0.0, str(label))


def positive_class_id(classes, chosen=None, where: str = "data.positive_class") -> int:
    """The class id that binary precision, recall, F1 and ROC AUC are about.

    ``chosen`` is a label (``malignant``, ``1``); None picks the second class in sorted order of
    the labels, as scikit-learn does (``pos_label=1`` of labels 0/1, the later name of two
    names). A choice is only meaningful for two classes: with more (or a label that is not a
    class) it is a :class:`UserError`.
    """
    classes = list(classes)
    if chosen is None:
        return classes.index(sorted(classes, key=_label_order)[1]) if len(classes) == 2 else 1
    if len(classes) != 2:
        raise UserError(f"{where} applies to binary classification; the data has {len(classes)} classes "
                        f"(per-class figures are in the macro averages); remove it")
    for i, label in enumerate(classes):
        if label == chosen or str(label) == str(chosen):
            return i
    names = [str(c) for c in classes]
    raise UserError(f"{where} must be one of the classes {', '.join(names)}; got {chosen!r}"
                    f"{did_you_mean(str(chosen), names)}")


def metric_direction(name: str) -> str:
    """``"max"`` if a larger value of the metric is better, ``"min"`` if a smaller one is.

    Split prefixes are ignored (``val_accuracy`` is ``accuracy``); any name containing
    ``loss`` is minimised (``train_loss_running_mean``, ``kd_loss``).
    """
    base = name
    for prefix in _SPLIT_PREFIXES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    if base in _REGISTERED:
        return "max" if _REGISTERED[base].greater_is_better else "min"
    if base in _HIGHER_IS_BETTER:
        return "max"
    if base.startswith("f1_"):   # a multilabel run's F1 of one label, f1_<label>
        return "max"
    if base in _LOWER_IS_BETTER or "loss" in base:
        return "min"
    known = sorted(_HIGHER_IS_BETTER | _LOWER_IS_BETTER | set(_REGISTERED))
    raise UserError(f"unknown metric {name!r}{did_you_mean(base, known)}; "
                    f"known metrics: {', '.join(known)} (optionally prefixed by val_, train_ or test_)")


def _to_numpy(x) -> np.ndarray:
    # Duck-typed so this module never imports torch.
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


# --- metrics of your own ----------------------------------------------------------------------

_NEEDS = ("labels", "scores")
_TASKS = ("classification", "regression")


@dataclass(frozen=True)
class Metric:
    """A metric of your own: ``fn(y_true, y_pred) -> number``, scikit-learn's argument order.

    ``y_true`` holds class ids ``(N,)`` (int64) for classification, targets ``(N,)`` or ``(N, k)``
    for regression. ``needs="labels"``: ``y_pred`` holds predicted class ids ``(N,)`` (regression:
    the predictions). ``needs="scores"``: ``y_pred`` holds class probabilities ``(N, n_classes)``, or
    for two classes the probability of class id 1 ``(N,)`` — ``predict_proba(X)[:, 1]``, what
    scikit-learn's binary metrics take with their default ``pos_label=1`` (regression: the
    predictions). ``task`` None means either task.
    """

    name: str
    fn: Callable
    task: str | None = None
    greater_is_better: bool = True
    needs: str = "labels"


_REGISTERED: dict[str, Metric] = {}


def register_metric(name: str, fn: Callable | None = None, *, task: str | None, greater_is_better: bool = True,
                    needs: str = "labels", replace: bool = False):
    """Register a metric under ``name`` for ``task`` (``classification``, ``regression`` or None for
    both): :func:`compute_metrics` then reports it for every split of that task, so it appears as
    ``val_<name>`` in the training figures, in summary.json and in ``danlu eval``, and can be the
    monitor of early stopping. See :class:`Metric` for what ``fn`` receives. A value that is not a
    finite number is a one-line :class:`UserError` naming the metric. Without ``fn`` this returns a
    decorator: ``@register_metric("balanced_accuracy", task="classification")``.
    """
    if fn is None:
        def decorator(f: Callable) -> Callable:
            register_metric(name, f, task=task, greater_is_better=greater_is_better, needs=needs, replace=replace)
            return f

        return decorator
    metric = Metric(name, fn, task, bool(greater_is_better), needs)
    _check_metric(metric, ValueError)
    if name in _REGISTERED and not replace:
        raise ValueError(f"metric {name!r} is already registered; pass replace=True to override it")
    _REGISTERED[name] = metric
    return fn


def unregister_metric(name: str) -> None:
    """Remove a registered metric (for plugins and tests); unknown names raise KeyError."""
    del _REGISTERED[name]


def registered_metrics(task: str | None = None) -> tuple[str, ...]:
    """Names of the registered metrics (of ``task``, with those for either task, when given)."""
    return tuple(n for n, m in _REGISTERED.items() if task is None or m.task in (None, task))


def metric_names(task: str) -> tuple[str, ...]:
    """Every metric :func:`compute_metrics` can report for ``task``: built-in, then registered."""
    return METRICS[task] + registered_metrics(task)


def metrics_from_callables(metrics: Mapping[str, Callable | Metric], *, task: str | None = None) -> list[Metric]:
    """Metrics given in Python (``danlu.train(..., metrics={"name": fn})``): each value is a callable
    ``fn(y_true, y_pred)`` on labels, higher is better, or a :class:`Metric` for other choices.
    Bad names or values are a one-line :class:`UserError`."""
    if not isinstance(metrics, Mapping):
        raise UserError(f"metrics must be a mapping of name -> fn(y_true, y_pred), got {type(metrics).__name__}; "
                        f"e.g. metrics={{'balanced_accuracy': balanced_accuracy_score}}")
    out = []
    for name, fn in metrics.items():
        metric = fn if isinstance(fn, Metric) else Metric(name, fn, task)
        if metric.name != name:
            raise UserError(f"metrics: the key {name!r} names a Metric called {metric.name!r}; use the same name")
        _check_metric(metric, UserError)
        out.append(metric)
    return out


@contextmanager
def metrics_in_use(metrics: Iterable[Metric]):
    """Register ``metrics`` for the duration of a ``with`` block (one run of the Python API), so that
    every figure, summary and early-stopping monitor of that run sees them like registered ones."""
    metrics = list(metrics)
    taken = [m.name for m in metrics if m.name in _REGISTERED]
    if taken:
        raise UserError(f"metric {taken[0]!r} is already registered; give the run's metric another name")
    added = []
    try:
        for m in metrics:
            _REGISTERED[m.name] = m
            added.append(m.name)
        yield metrics
    finally:
        for name in added:
            _REGISTERED.pop(name, None)


def check_metric(metric: str | Metric) -> None:
    """Conformance check of a metric of your own (a registered name or a :class:`Metric`): called on
    tiny data of every task it is for — three classes, two classes, one and two regression targets —
    and must give a finite number each time; otherwise a one-line :class:`UserError` naming it."""
    if isinstance(metric, str):
        if metric not in _REGISTERED:
            raise UserError(f"metric {metric!r} is not registered; registered: {', '.join(_REGISTERED) or 'none'}")
        metric = _REGISTERED[metric]
    _check_metric(metric, UserError)
    rng = np.random.default_rng(0)
    n = 24
    for task, width in (("classification", 3), ("classification", 2), ("regression", 1), ("regression", 2)):
        if metric.task not in (None, task):
            continue
        if task == "classification":
            y = np.arange(n) % width
            scores = rng.dirichlet(np.ones(width), size=n)
        else:
            y = rng.normal(size=(n, width)).squeeze(1) if width == 1 else rng.normal(size=(n, width))
            scores = y + rng.normal(scale=0.5, size=y.shape)
        _own_metrics([metric], task, y, scores, width if task == "classification" else None, 1)


def _check_metric(metric: Metric, error) -> None:
    name = metric.name
    if not isinstance(name, str) or not name.isidentifier():
        raise error(f"a metric name must be an identifier such as 'balanced_accuracy', got {name!r}")
    if name == "loss" or name in _HIGHER_IS_BETTER or name in _LOWER_IS_BETTER \
            or any(name in names for names in METRICS.values()):
        raise error(f"metric {name!r} is a built-in metric; give yours another name")
    if name.startswith(_SPLIT_PREFIXES):
        raise error(f"metric {name!r} starts with a split prefix ({', '.join(_SPLIT_PREFIXES)}); the splits add "
                    f"it themselves (val_{name[name.index('_') + 1:]}); drop the prefix")
    if not callable(metric.fn):
        raise error(f"metric {name!r} must be a callable fn(y_true, y_pred) -> number, got {metric.fn!r}")
    if metric.task not in (None, *_TASKS):
        raise error(f"metric {name!r}: task must be classification, regression or None, got {metric.task!r}")
    if metric.needs not in _NEEDS:
        raise error(f"metric {name!r}: needs must be 'labels' or 'scores', got {metric.needs!r}")


def _own_metrics(metrics: list[Metric], task: str, y_true: np.ndarray, scores: np.ndarray,
                 n_classes: int | None, positive: int) -> dict[str, float]:
    """The values of metrics of your own; NaN for scores of a diverged model, as the built-in ones."""
    if task == "classification":
        proba = _as_probability_matrix(scores, n_classes)
        labels = _as_class_ids(y_true, proba.shape[1], len(proba))
        inputs = {"labels": (labels, np.argmax(proba, axis=1)),
                  "scores": (labels, proba[:, 1] if proba.shape[1] == 2 else proba)}
        finite = {"labels": True, "scores": bool(np.all(np.isfinite(proba)))}
    elif task == "multilabel":   # indicator matrices, as scikit-learn's multilabel metrics take them
        y, proba = _as_indicator(y_true, scores)
        inputs = {"labels": (y, (proba >= 0.5).astype(np.int64)), "scores": (y, proba)}
        finite = {"labels": True, "scores": bool(np.all(np.isfinite(proba)))}
    else:
        y, p = _as_output_columns(y_true, scores)
        pair = (y[:, 0], p[:, 0]) if y.shape[1] == 1 else (y, p)
        inputs = {"labels": pair, "scores": pair}
        ok = bool(np.all(np.isfinite(p)))
        finite = {"labels": ok, "scores": ok}
    out = {}
    for m in metrics:
        out[m.name] = _call_metric(m, *inputs[m.needs]) if finite[m.needs] else float("nan")
    return out


def _call_metric(metric: Metric, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    label = f"metric {metric.name!r} ({_describe(metric.fn)})"
    try:
        value = metric.fn(y_true, y_pred)
    except Exception as err:   # noqa: BLE001 - user code: any failure is theirs to fix
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UserError(f"{label} fails on {len(y_true)} rows: {type(err).__name__}{': ' + text if text else ''}; "
                        f"fix the function") from None
    if hasattr(value, "item") and _size(value) == 1:
        value = value.item()   # numpy scalars, 0-d arrays and one-element tensors
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{label} must return a number, got {type(value).__name__}; return a float")
    value = float(value)
    if not math.isfinite(value):
        raise UserError(f"{label} returned {value} on {len(y_true)} rows; it must be a finite number — "
                        f"guard its divisions (e.g. a class no row predicts)")
    return value


def _size(value) -> int:
    numel = getattr(value, "numel", None)
    return int(numel()) if callable(numel) else int(getattr(value, "size", 1))


def _describe(fn) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module and module not in ("__main__", "builtins") else name


# --- classification ---------------------------------------------------------------------------

def _classification_metrics(y_true: np.ndarray, scores: np.ndarray, n_classes: int | None,
                            positive: int = 1) -> dict[str, float]:
    proba = _as_probability_matrix(scores, n_classes)
    n_classes = proba.shape[1]
    labels = _as_class_ids(y_true, n_classes, len(proba))
    predicted = np.argmax(proba, axis=1)
    if n_classes == 2 and positive not in (0, 1):
        raise DataError(f"the positive class of a binary model is class id 0 or 1, got {positive!r}")

    metrics = {"accuracy": float(np.mean(predicted == labels))}
    metrics.update(_precision_recall_f1(labels, predicted, n_classes, positive))
    if np.all(np.isfinite(proba)):
        auc = _roc_auc(labels, proba, positive)
        if auc is not None:
            metrics["roc_auc"] = auc
        metrics["log_loss"] = _log_loss(labels, proba, _clip_eps(scores.dtype))
    else:  # a diverged model: say so rather than rank NaNs
        metrics.update(roc_auc=float("nan"), log_loss=float("nan"))
    return metrics


def _as_probability_matrix(proba: np.ndarray, n_classes: int | None) -> np.ndarray:
    """Return float64 ``(N, C)`` probabilities; one column means P(class 1) of a binary model."""
    if proba.ndim == 2 and proba.shape[1] == 1:
        proba = proba[:, 0]
    if proba.ndim == 1:
        if n_classes not in (None, 2):
            raise DataError(f"scores have one column but n_classes={n_classes}; give one probability "
                            f"column per class, shape (N, {n_classes})")
        proba = np.stack([1 - proba, proba], axis=1)
    if proba.ndim != 2:
        raise DataError(f"classification scores must have shape (N, n_classes), got {proba.shape}")
    if n_classes is not None and proba.shape[1] != n_classes:
        raise DataError(f"scores have {proba.shape[1]} columns but n_classes={n_classes}; "
                        "the model's outputs must match the number of classes")
    if len(proba) == 0:
        raise DataError("cannot compute metrics of an empty split; give the split at least one row")
    return proba.astype(np.float64)


def _clip_eps(dtype) -> float:
    """Machine epsilon of the scores' own float type: what scikit-learn clips log loss with."""
    return float(np.finfo(dtype if np.issubdtype(dtype, np.floating) else np.float64).eps)


def _as_class_ids(y_true: np.ndarray, n_classes: int, n_rows: int) -> np.ndarray:
    y = y_true.reshape(-1) if y_true.ndim == 2 and y_true.shape[1] == 1 else y_true
    if y.shape != (n_rows,):
        raise DataError(f"labels have shape {y_true.shape} but scores have {n_rows} rows; "
                        "give one class id per row")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DataError("classification labels must be integer class ids 0..n_classes-1; "
                            "encode text or float labels as class ids first")
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= n_classes)
    if np.any(bad):
        raise DataError(f"label {y[bad][0]} is outside the {n_classes} classes 0..{n_classes - 1}; "
                        "check the label column or the number of model outputs")
    return y


def _precision_recall_f1(labels: np.ndarray, predicted: np.ndarray, n_classes: int,
                         positive: int = 1) -> dict[str, float]:
    true_count = np.bincount(labels, minlength=n_classes)
    pred_count = np.bincount(predicted, minlength=n_classes)
    tp = np.bincount(labels[labels == predicted], minlength=n_classes)
    present = (true_count > 0) | (pred_count > 0)

    precision = _safe_divide(tp, pred_count)
    recall = _safe_divide(tp, true_count)
    f1 = _safe_divide(2 * tp, true_count + pred_count)  # 2tp / (2tp + fp + fn)

    metrics = {
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
    }
    tp_all, pred_all, true_all = tp[present].sum(), pred_count[present].sum(), true_count[present].sum()
    metrics["precision_micro"] = float(_safe_divide(tp_all, pred_all))
    metrics["recall_micro"] = float(_safe_divide(tp_all, true_all))
    metrics["f1_micro"] = float(_safe_divide(2 * tp_all, true_all + pred_all))
    if n_classes == 2:  # binary scores of the positive class
        metrics.update(precision=float(precision[positive]), recall=float(recall[positive]),
                       f1=float(f1[positive]))
    return metrics


def _safe_divide(numerator, denominator):
    """``numerator / denominator`` with 0 where the denominator is 0 (``zero_division=0``)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator != 0)


def _roc_auc(labels: np.ndarray, proba: np.ndarray, positive: int = 1) -> float | None:
    """Macro one-vs-rest AUC over the classes defined in ``labels``; None if none is."""
    n_classes = proba.shape[1]
    classes = [positive] if n_classes == 2 else range(n_classes)
    aucs = []
    for c in classes:
        positive = labels == c
        if 0 < positive.sum() < len(labels):
            aucs.append(_binary_auc(positive, proba[:, c]))
    return float(np.mean(aucs)) if aucs else None


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic.

    With tied scores given their average rank this equals the trapezoidal area under the ROC
    curve, which is what scikit-learn integrates.
    """
    n_pos = positive.sum()
    n_neg = len(positive) - n_pos
    rank_sum = _average_ranks(score)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``; equal values share the mean of their ranks."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    starts_group = np.empty(len(x), dtype=bool)
    starts_group[0] = True
    starts_group[1:] = ordered[1:] != ordered[:-1]
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(x))
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = group_rank[np.cumsum(starts_group) - 1]
    return ranks


def _log_loss(labels: np.ndarray, proba: np.ndarray, eps: float) -> float:
    p_true = np.clip(proba[np.arange(len(labels)), labels], eps, 1 - eps)
    return float(-np.mean(np.log(p_true)))


# --- multilabel -------------------------------------------------------------------------------

def _multilabel_metrics(y_true: np.ndarray, scores: np.ndarray, names: list | None) -> dict[str, float]:
    """Subset accuracy, Hamming loss, micro / macro precision, recall and F1 over the labels
    (``zero_division=0``; macro averages every label, as scikit-learn does for indicator matrices),
    macro ROC AUC over the labels with both values in ``y_true`` (left out when none has), and
    F1 per label; a label is predicted when its probability is >= 0.5."""
    y, proba = _as_indicator(y_true, scores)
    names = [str(j) for j in range(y.shape[1])] if names is None else [str(n) for n in names]
    predicted = proba >= 0.5
    truth = y.astype(bool)
    tp = np.sum(truth & predicted, axis=0).astype(np.float64)
    pred_count = predicted.sum(axis=0).astype(np.float64)
    true_count = truth.sum(axis=0).astype(np.float64)
    precision, recall = _safe_divide(tp, pred_count), _safe_divide(tp, true_count)
    f1 = _safe_divide(2 * tp, true_count + pred_count)
    metrics = {
        "accuracy": float(np.mean(np.all(truth == predicted, axis=1))),
        "hamming_loss": float(np.mean(truth != predicted)),
        "precision_micro": float(_safe_divide(tp.sum(), pred_count.sum())),
        "recall_micro": float(_safe_divide(tp.sum(), true_count.sum())),
        "f1_micro": float(_safe_divide(2 * tp.sum(), true_count.sum() + pred_count.sum())),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
    }
    if not np.all(np.isfinite(proba)):
        metrics["roc_auc"] = float("nan")   # a diverged model: say so rather than rank NaNs
    else:
        aucs = [_binary_auc(truth[:, j], proba[:, j]) for j in range(y.shape[1])
                if 0 < true_count[j] < len(y)]
        if aucs:
            metrics["roc_auc"] = float(np.mean(aucs))
    metrics.update({f"f1_{name}": float(v) for name, v in zip(names, f1)})
    return metrics


def _as_indicator(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as an int64 0/1 matrix ``(N, K)`` and the probabilities as float64 ``(N, K)``."""
    if y_true.ndim != 2 or scores.shape != y_true.shape:
        raise DataError(f"multilabel labels and scores must both be (N, n_labels), got {y_true.shape} and "
                        f"{scores.shape}; give one 0/1 column and one probability column per label")
    if len(y_true) == 0:
        raise DataError("cannot compute metrics of an empty split; give the split at least one row")
    if not np.all(np.isin(y_true, (0, 1))):
        raise DataError("multilabel labels must be 0 or 1 (the indicator matrix of the labels)")
    return y_true.astype(np.int64), scores.astype(np.float64)


# --- regression -------------------------------------------------------------------------------

def _regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    y, p = _as_output_columns(y_true, predicted)
    error = p - y
    mse = np.mean(error ** 2, axis=0)
    return {
        "mse": float(mse.mean()),
        "rmse": float(np.sqrt(mse).mean()),
        "mae": float(np.mean(np.abs(error), axis=0).mean()),
        "r2": _r2(y, error),
    }


def _as_output_columns(y_true: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 ``(N, k)``; ``(N,)`` and ``(N, 1)`` are the same single output."""
    if y_true.ndim not in (1, 2) or predicted.ndim not in (1, 2):
        raise DataError(f"regression targets and predictions must be (N,) or (N, k), got {y_true.shape} "
                        f"and {predicted.shape}")
    if len(y_true) == 0:
        raise DataError("cannot compute metrics of an empty split; give the split at least one row")
    y = y_true.reshape(len(y_true), -1).astype(np.float64)
    p = predicted.reshape(len(predicted), -1).astype(np.float64)
    if p.shape != y.shape:
        raise DataError(f"predictions have shape {predicted.shape} but targets have {y_true.shape}; "
                        "the model needs one output per target column")
    return y, p


def _r2(y: np.ndarray, error: np.ndarray) -> float:
    if len(y) < 2:
        return float("nan")  # undefined: no variance to explain
    residual = np.sum(error ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    total[np.all(y == y[0], axis=0)] = 0.0  # exactly constant, whatever rounding in the mean says
    # scikit-learn's force_finite: perfect predictions score 1, a constant target otherwise 0.
    score = np.where(residual == 0, 1.0, 0.0)
    defined = (residual != 0) & (total != 0)
    score[defined] = 1 - residual[defined] / total[defined]
    score[np.isnan(residual)] = np.nan
    return float(score.mean())
