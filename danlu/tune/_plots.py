"""PNG pictures of a learning-rate sweep and of a search (matplotlib, Agg backend).

The search plots are drawn here from the study's trials rather than with
``optuna.visualization``, which needs plotly.
"""
from __future__ import annotations

import math
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, works on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_lr_find(result, path: Path) -> Path:
    """Loss against learning rate (log axis): raw batch losses, the smoothed curve, the suggestion."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    finite = [(lr, v) for lr, v in zip(result.lrs, result.losses) if math.isfinite(v)]
    if finite:
        ax.plot(*zip(*finite), color="0.75", linewidth=0.8, label="batch loss")
    smooth = [(lr, v) for lr, v in zip(result.lrs, result.smoothed) if math.isfinite(v)]
    if smooth:
        ax.plot(*zip(*smooth), color="C0", linewidth=1.8, label="smoothed loss")
        top = 4 * min(v for _, v in smooth)
        low = min(v for _, v in finite) if finite else 0.0
        ax.set_ylim(min(low, min(v for _, v in smooth)) * 0.95, max(top, smooth[0][1] * 1.1))
    ax.axvline(result.suggested, color="C3", linestyle="--",
               label=f"suggested {result.suggested:.3g} ({result.rule})")
    ax.axvline(result.min_loss_lr, color="C2", linestyle=":", label=f"lowest loss at {result.min_loss_lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate finder")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    return _save(fig, path)


def plot_history(rows: list[dict], metric: str, direction: str, path: Path) -> Path:
    """Objective of each trial (pruned and failed marked apart) and the best so far."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    pruned = [r for r in rows if r["state"] == "PRUNED" and r.get("last") is not None]
    if done:
        ax.scatter([r["number"] for r in done], [r["value"] for r in done], color="C0", label="trial", zorder=3)
    if pruned:
        ax.scatter([r["number"] for r in pruned], [r["last"] for r in pruned], marker="x", color="C1",
                   label="pruned (last value)", zorder=3)
    best, xs, ys = None, [], []
    for r in sorted(done, key=lambda r: r["number"]):
        if best is None or (r["value"] > best if direction == "max" else r["value"] < best):
            best = r["value"]
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"search history ({'higher' if direction == 'max' else 'lower'} is better)")
    if done or pruned:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no trial has a value yet", ha="center", va="center", transform=ax.transAxes)
    ax.grid(True, alpha=0.25)
    return _save(fig, path)


def plot_importance(importances: dict[str, float], path: Path) -> Path:
    """Horizontal bars: how much of the objective's variation each parameter explains."""
    plt = _pyplot()
    names = list(importances)[::-1]   # most important on top
    values = [importances[n] for n in names]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)))
    ax.barh(names, values, color="C0")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(values) * 1.15) if values else 1.0)
    ax.set_xlabel("relative importance (sums to 1; Optuna's default evaluator)")
    ax.set_title("parameter importance")
    return _save(fig, path)
