"""RUN/plots/returns.png: the reward curve, drawn in the report's house style."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..report._plots import _figure, _save

WINDOW = 100   # episodes in the moving average, as in "solved: mean return over 100 episodes"


def moving_average(values, window: int = WINDOW) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def plot_returns(steps, returns, path, solved: float | None = None, evaluation: tuple[int, float] | None = None,
                 env: str = "") -> Path:
    """Each training episode's return at the step it ended, their 100-episode moving average,
    the solved threshold and the final greedy evaluation's mean (``(step, mean)``)."""
    fig, ax = _figure(7.5, 4.2)
    if len(returns):
        ax.scatter(steps, returns, s=4, alpha=0.3, color="tab:blue", linewidths=0, label="episode return")
        ax.plot(steps, moving_average(returns), color="tab:blue", lw=2,
                label=f"mean of last {WINDOW} episodes")
    if solved is not None:
        ax.axhline(solved, color="tab:green", ls="--", lw=1.2, label=f"solved ({solved:g})")
    if evaluation is not None:
        ax.scatter([evaluation[0]], [evaluation[1]], marker="*", s=160, color="tab:red", zorder=3,
                   label=f"greedy evaluation ({evaluation[1]:.4g})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(f"Returns during training{' in ' + env if env else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
