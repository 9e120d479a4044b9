"""The learning-rate finder (找最优学习率): one short sweep instead of guessing.

A fresh model (the recipe's seed, so the same start as ``danlu train``) takes one optimizer step
per training batch while the learning rate grows geometrically from ``min_lr`` to ``max_lr``.
The loss is smoothed by an exponential moving average (bias-corrected, so the first points are
not dragged towards zero), and the sweep stops early once the smoothed loss exceeds ``diverge``
times the best seen — the rate has blown the training up (炸炉), so larger ones tell nothing new.

The suggested rate (``rule``):

* ``steepest`` (default): where the smoothed loss falls fastest per decade of learning rate,
  looked for between the start and the lowest smoothed loss, the slope being measured across a
  window of about 5 % of the sweep on each side (one noisy batch cannot win). That rate still learns quickly and
  is well below the edge where the loss turns up. When the curve never falls (too few steps or
  a range that starts too high), the ``min10`` rule answers instead.
* ``min10``: the rate at the lowest smoothed loss, divided by 10.

Nothing is trained for real: the weights of the sweep are thrown away. The recipe's schedule and
``train.accumulate`` are not used (one optimizer step per batch at the sweep's rate); gradient
clipping and augmentation are, as in training.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._rundir import holds_something, numbered
from ..errors import UserError

LR_FIND_KIND = "lr-find"   # the kind in the .danlu-run marker of the folders lr-find creates

RULES = ("steepest", "min10")
FULL_SWEEP = "swept the whole range"
SKIP_START = 3      # the first smoothed points rest on one or two batches: too noisy to rank


@dataclass
class LRFindResult:
    """The sweep: learning rates, raw and smoothed losses, and the suggested rate."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float
    rule: str                       # the rule that produced ``suggested``
    steepest_lr: float | None       # the steepest-descent rate, when the curve falls
    min_loss_lr: float              # the rate at the lowest smoothed loss
    stopped_early: bool
    reason: str
    out_dir: Path | None = field(default=None)

    def to_json(self) -> dict:
        d = asdict(self)
        d["out_dir"] = str(self.out_dir) if self.out_dir is not None else None
        return d

    def set_line(self) -> str:
        return f"--set optimizer.lr={self.suggested:.3g}"

    def plot(self, path: str | Path) -> Path:
        from ._plots import plot_lr_find

        return plot_lr_find(self, Path(path))

    def save(self, out_dir: str | Path) -> Path:
        """Write ``lr_find.png`` and ``lr_find.json`` into ``out_dir``: a new or empty folder,
        created and marked as danlu's, or one an earlier save made (marked)."""
        from .. import _rundir
        from ..training._checkpoint import atomic_write_text

        out = Path(out_dir)
        if (_rundir.read_marker(out) or {}).get("kind") != LR_FIND_KIND:
            if out.is_dir() and any(out.iterdir()):
                raise UserError(f"{out}: already exists and is not empty; lr-find writes into a new or empty "
                                f"folder — choose another -o")
            _rundir.plan_dir(out, flag="-o", kind=LR_FIND_KIND).create()
        self.out_dir = out
        self.plot(out / "lr_find.png")
        atomic_write_text(out / "lr_find.json", json.dumps(self.to_json(), indent=1))
        return out


def lr_find(recipe, *, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100, smooth: float = 0.9,
            diverge: float = 4.0, rule: str = "steepest", out_dir: str | Path | None = None,
            progress: bool = False) -> LRFindResult:
    """Sweep the learning rate over training batches and suggest one.

    ``recipe`` is a :class:`~danlu.recipe.Recipe` or a dict. ``out_dir``, when given, receives the
    plot and the numbers (see :meth:`LRFindResult.save`); nothing else is written.
    """
    from ..recipe import Recipe

    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    _check_args(min_lr, max_lr, steps, smooth, diverge, rule)
    lrs, losses, smoothed, reason = _sweep(recipe, min_lr, max_lr, steps, smooth, diverge, progress)
    result = suggest(lrs, losses, smoothed, rule)
    result.stopped_early, result.reason = reason != FULL_SWEEP, reason
    if out_dir is not None:
        result.save(out_dir)
    return result


def _check_args(min_lr, max_lr, steps, smooth, diverge, rule) -> None:
    if not 0 < min_lr < max_lr:
        raise UserError(f"the sweep needs 0 < --min < --max, got --min {min_lr:g} --max {max_lr:g}")
    if steps < 2 * SKIP_START + 2:
        raise UserError(f"--steps must be at least {2 * SKIP_START + 2}, got {steps}")
    if not 0 <= smooth < 1:
        raise UserError(f"smoothing must be in [0, 1), got {smooth}")
    if not diverge > 1:
        raise UserError(f"the divergence factor must be > 1, got {diverge}")
    if rule not in RULES:
        raise UserError(f"--rule must be one of {', '.join(RULES)}; got {rule!r}")


class _FixedRate:
    """The sweep sets every rate itself: the recipe's schedule (and its momentum cycling) stays out."""

    def step(self) -> None:
        pass

    def epoch_end(self, value=None) -> None:
        pass


class LRSweep:
    """The LR range test as a callback of the ordinary loop: before each optimizer step the rate is
    ``min_lr * growth ** i`` (param groups keep their ratios to the first), after it the batch loss
    is recorded and smoothed; the run stops at ``steps`` or when the smoothed loss diverges."""

    def __init__(self, min_lr: float, max_lr: float, steps: int, smooth: float, diverge: float, progress: bool):
        self.min_lr, self.steps, self.smooth, self.diverge, self.progress = min_lr, steps, smooth, diverge, progress
        self.growth = (max_lr / min_lr) ** (1.0 / (steps - 1))
        self.lrs, self.losses, self.smoothed = [], [], []
        self.average, self.best, self.reason, self.ratios = 0.0, math.inf, FULL_SWEEP, None

    def on_fit_start(self, state) -> None:
        state.schedule = _FixedRate()
        groups = state.optimizer.param_groups
        first = groups[0].get("initial_lr", groups[0]["lr"])
        self.ratios = [g.get("initial_lr", g["lr"]) / first for g in groups]   # see Schedule

    def on_backward_end(self, state) -> None:
        lr = self.min_lr * self.growth ** len(self.lrs)
        for group, ratio in zip(state.optimizer.param_groups, self.ratios):
            group["lr"] = lr * ratio

    def on_batch_end(self, state) -> None:
        i, lr = len(self.lrs), self.min_lr * self.growth ** len(self.lrs)
        value = float(state.batch_loss)
        self.lrs.append(lr)
        self.losses.append(value)
        if not math.isfinite(value):
            self.smoothed.append(math.nan)
            self._stop(state, f"the loss became {value} at lr {lr:.3g}")
            return
        self.average = self.smooth * self.average + (1 - self.smooth) * value
        self.smoothed.append(self.average / (1 - self.smooth ** (i + 1)))
        self.best = min(self.best, self.smoothed[-1])
        if self.progress and (i + 1) % 20 == 0:
            print(f"lr-find: step {i + 1}/{self.steps}  lr {lr:.3g}  loss {self.smoothed[-1]:.4g}", file=sys.stderr)
        if i >= SKIP_START and self.smoothed[-1] > self.diverge * self.best:
            self._stop(state, f"stopped at lr {lr:.3g}: the smoothed loss exceeded {self.diverge:g}x the best")
        elif len(self.lrs) >= self.steps:
            self._stop(state, FULL_SWEEP)

    def _stop(self, state, reason: str) -> None:
        self.reason = reason
        state.request_stop(reason)


def _sweep(recipe, min_lr, max_lr, steps, smooth, diverge, progress):
    """One pass of the training loop with the LRSweep callback: the same batches, augmentation,
    loss and clipping as training, with the run's monitors, early stopping and schedule left out."""
    from ..training import build_session, fit
    from ..training import prepare_run_data as _prepare_data
    from ..training._loop import batch_count

    prepared = _prepare_data(recipe)
    batches = batch_count(len(prepared.splits["train"][0]), recipe.train.batch_size)
    quiet = {f"monitors.{m}.enabled": False for m in ("divergence", "gradients", "fit", "convergence")}
    recipe = recipe.with_overrides({**quiet, "train.accumulate": 1, "train.early_stopping.enabled": False,
                                    "train.epochs": -(-steps // batches) + 1})
    sweep = LRSweep(min_lr, max_lr, steps, smooth, diverge, progress)
    session = build_session(recipe, None, prepared, progress="none", extra_callbacks=[sweep])
    fit(session.state, session.callbacks)
    return sweep.lrs, sweep.losses, sweep.smoothed, sweep.reason


def suggest(lrs, losses, smoothed, rule: str = "steepest") -> LRFindResult:
    """Pick a rate from a sweep (the rules are in the module docstring)."""
    import numpy as np

    values = np.array([v if math.isfinite(v) else np.inf for v in smoothed], dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise UserError(f"lr-find: the loss was not finite even at lr {lrs[0]:.3g}; lower --min, or check the data")
    lowest = int(np.argmin(values))
    min_loss_lr = float(lrs[lowest])
    steepest = None
    if lowest > SKIP_START + 1:
        k = steepest_index(values[:lowest + 1], np.log10(np.asarray(lrs[:lowest + 1], dtype=float)),
                           half=max(2, len(lrs) // 20))
        if k is not None:
            steepest = float(lrs[k])
    if rule == "steepest" and steepest is not None:
        chosen, used = steepest, "steepest"
    else:
        chosen, used = min_loss_lr / 10.0, "min10"
    return LRFindResult(lrs=[float(v) for v in lrs], losses=[float(v) for v in losses],
                        smoothed=[float(v) for v in smoothed], suggested=float(chosen), rule=used,
                        steepest_lr=steepest, min_loss_lr=min_loss_lr, stopped_early=False, reason="")


def steepest_index(values, log_lrs, half: int):
    """Index of the steepest fall per decade. The slope at a point is measured across ``half``
    points on each side, so a single noisy batch cannot win."""
    n = len(values)
    best, where = 0.0, None
    for i in range(SKIP_START, n - 1):
        a, b = max(0, i - half), min(n - 1, i + half)
        slope = (values[b] - values[a]) / (log_lrs[b] - log_lrs[a])
        if slope < best:
            best, where = slope, i
    return where


def default_out_dir(recipe) -> Path:
    """``runs/lr-find-<name>``, with a numbered suffix when taken: a sweep never replaces anything."""
    return numbered(Path(recipe.output.runs_dir) / f"lr-find-{recipe.name or 'run'}", holds_something)
