"""The report's pictures: one PNG per function, each returning the path it wrote.

Every function takes plain data (lists of logged rows, label and score arrays), so other
commands can draw the same pictures for their own numbers. Figures are built with
``matplotlib.figure.Figure`` and saved by its Agg canvas: no pyplot, so no global backend is
switched and no figure lingers in a registry when many reports are drawn in one process.
Labels inside the pictures are English only: a Chinese font cannot be assumed on the machine.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ._runfiles import number

_LEGEND_MAX = 12       # classes or layers named in a legend; more are drawn without names
_ANNOTATE_MAX = 20     # confusion matrices up to this many classes get their counts written in
_POINTS_MAX = 5000     # scatter plots thin larger test sets to this many points


def _figure(width: float = 6.4, height: float = 4.0, panels: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    return fig, axes


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # No "Software" tag: the default one carries a URL, and the page promises none.
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _text(label) -> str:
    """A label as matplotlib should show it: ``$`` would otherwise start math mode."""
    return str(label).replace("$", r"\$")


def _series(rows: list[dict], key: str, x_key: str = "epoch") -> tuple[list, list]:
    """(x, y) of ``key`` over the rows that hold it; inf becomes NaN so that it shows as a gap."""
    xs, ys = [], []
    for row in rows:
        if key in row:
            y = number(row[key])
            xs.append(number(row.get(x_key)))
            ys.append(y if math.isfinite(y) else math.nan)
    return xs, ys


def _integer_x(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _maybe_log(ax, values) -> None:
    """Log scale when positive values span more than two decades (a loss that fell a lot)."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        ax.set_yscale("log")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def plot_training_curves(history: list[dict], path, primary: str | None = None) -> Path:
    """Loss per epoch (training running mean and validation), and the validation ``primary``
    metric beside it when it was logged."""
    metric_key = f"val_{primary}" if primary else None
    has_metric = metric_key is not None and any(metric_key in row for row in history)
    fig, axes = _figure(10 if has_metric else 6.4, 4, 2 if has_metric else 1)
    ax = axes[0] if has_metric else axes
    plotted = []
    for key, label in (("train_loss_running_mean", "train (running mean over the epoch)"),
                       ("val_loss", "validation")):
        xs, ys = _series(history, key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
            plotted += ys
    _maybe_log(ax, plotted)
    ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    _integer_x(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    if has_metric:
        xs, ys = _series(history, metric_key)
        axes[1].plot(xs, ys, marker="o", markersize=3, color="tab:green", label="validation")
        axes[1].set(xlabel="epoch", ylabel=primary, title=f"Validation {_text(primary)}")
        _integer_x(axes[1])
        axes[1].grid(alpha=0.3)
        axes[1].legend()
    return _save(fig, path)


def plot_lr(history: list[dict], path, planned: tuple[list, list] | None = None) -> Path:
    """The learning rate against the optimizer step: the rate logged at the end of each epoch,
    over the schedule's planned per-step curve when ``planned = (steps, rates)`` is given."""
    fig, ax = _figure()
    values = []
    if planned is not None:
        steps, rates = planned
        ax.plot(steps, rates, color="tab:blue", linewidth=1.5, label="schedule (per step)")
        values += list(rates)
    xs, ys = _series(history, "lr", x_key="step")
    if xs:
        ax.plot(xs, ys, linestyle="none", marker="o", color="tab:orange", label="logged (end of epoch)")
        values += ys
    _maybe_log(ax, values)
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning rate")
    _integer_x(ax)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_grad_norms(rows: list[dict], path) -> Path:
    """Gradient norms against the optimizer step: the total, and each layer's (from the
    gradient monitor's grad_norms.jsonl rows ``{"step", "total", "layers": {name: norm}}``)."""
    fig, ax = _figure()
    layers = list(dict.fromkeys(name for row in rows for name in (row.get("layers") or {})))
    named = len(layers) <= _LEGEND_MAX
    for name in layers:
        xs = [number(r.get("step")) for r in rows if name in (r.get("layers") or {})]
        ys = [_positive(r["layers"][name]) for r in rows if name in (r.get("layers") or {})]
        ax.plot(xs, ys, linewidth=1, alpha=0.8, marker="." if len(xs) < 30 else None,
                label=_text(name) if named else None)
    xs, ys = _series(rows, "total", x_key="step")
    ys = [_positive(y) for y in ys]
    ax.plot(xs, ys, color="black", linewidth=2, marker="o" if len(xs) < 30 else None, markersize=3, label="total")
    if any(math.isfinite(y) for y in ys):
        ax.set_yscale("log")
    ax.set(xlabel="optimizer step", ylabel="gradient norm", title="Gradient norms")
    _integer_x(ax)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    return _save(fig, path)


def _positive(value) -> float:
    """A norm for a log axis: zero, negative and non-finite values become gaps."""
    x = number(value)
    return x if math.isfinite(x) and x > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------

def _class_name(classes: list, c: int) -> str:
    return _text(classes[c]) if c < len(classes) else str(c)


def plot_roc(y_true, proba, classes: list, path) -> Path:
    """ROC curve with its AUC: of the positive class for a binary task, one-vs-rest per class otherwise
    (a class absent from ``y_true`` has no curve)."""
    from ..evaluation import roc_curve_points

    points = roc_curve_points(y_true, proba, len(classes) or None)["per_class"]
    fig, ax = _figure(5, 4.6)
    named = len(points) <= _LEGEND_MAX
    for c, p in points.items():
        label = f"{_class_name(classes, c)} (AUC {p['auc']:.3f})"
        ax.plot(p["fpr"], p["tpr"], linewidth=1.5, label=label if named else None)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02),
           title="ROC curve" if len(points) == 1 else "ROC curves (one class vs rest)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_pr(y_true, proba, classes: list, path) -> Path:
    """Precision-recall curve with average precision (AP); the dotted line is the no-skill level
    (the fraction of positives) of a binary task."""
    from ..evaluation import pr_curve_points

    points = pr_curve_points(y_true, proba, len(classes) or None)["per_class"]
    fig, ax = _figure(5, 4.6)
    named = len(points) <= _LEGEND_MAX
    for c, p in points.items():
        label = f"{_class_name(classes, c)} (AP {p['average_precision']:.3f})"
        ax.plot(p["recall"], p["precision"], linewidth=1.5, drawstyle="steps-post", label=label if named else None)
    if len(points) == 1:
        (c,) = points
        ax.axhline(float(np.mean(np.asarray(y_true) == c)), linestyle=":", color="grey", label="no skill")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall curve" if len(points) == 1 else "Precision-recall (one class vs rest)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def plot_confusion(y_true, y_pred, classes: list, path) -> Path:
    """Confusion matrix: counts, shaded by the fraction of each true class (row).
    ``y_pred`` holds class ids, or class scores ``(N, C)`` whose arg-max is taken."""
    from ..evaluation import confusion

    cm = confusion(y_true, y_pred, len(classes) or None)
    counts, share = cm["matrix"], cm["normalized"]
    n = len(counts)
    size = min(4 + 0.45 * n, 12)
    fig, ax = _figure(size + 1, size)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="fraction of the true class", shrink=0.8)
    names = [_class_name(classes, i) for i in range(n)]
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), names)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix")
    if n <= _ANNOTATE_MAX:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9,
                        color="white" if share[i, j] > 0.5 else "black")
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------

def _thin(*arrays):
    """Every k-th point, so a scatter of a big test set stays readable and small."""
    arrays = [np.asarray(a, dtype=float).ravel() for a in arrays]
    step = max(1, len(arrays[0]) // _POINTS_MAX)
    return [a[::step] for a in arrays]


def plot_residuals(y_true, y_pred, path) -> Path:
    """Residual (true - predicted) against the prediction; a good fit scatters evenly around 0."""
    from ..evaluation import residuals

    r = residuals(y_true, y_pred)
    y_pred, residual = _thin(r["y_pred"], r["residual"])
    fig, ax = _figure()
    ax.scatter(y_pred, residual, s=12, alpha=0.6)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="predicted", ylabel="residual (true - predicted)", title="Residuals")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_predicted_vs_true(y_true, y_pred, path) -> Path:
    """Predicted against true values; the dashed diagonal is a perfect prediction."""
    y_true, y_pred = _thin(y_true, y_pred)
    fig, ax = _figure(5, 4.6)
    ax.scatter(y_true, y_pred, s=12, alpha=0.6)
    both = np.concatenate([y_true, y_pred])
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="perfect")
        ax.legend(loc="upper left")
    ax.set(xlabel="true", ylabel="predicted", title="Predicted vs true")
    ax.grid(alpha=0.3)
    return _save(fig, path)
