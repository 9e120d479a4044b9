"""k-fold cross-validation (交叉验证) of any recipe, the scikit-learn way.

Folds are scikit-learn's ``StratifiedKFold`` (classification with ``data.split.stratify``) or
``KFold`` (otherwise), shuffled with ``random_state=recipe.seed``, over the usable rows of
``danlu.data.labelled_rows``. For fold *k*:

* test       = fold *k*, held out;
* validation = the share ``data.split.validation`` of the other folds (stratified likewise),
  used for early stopping; ``0`` means no validation rows;
* train      = the rest. Transforms are fitted on these rows only.

Each fold is an ordinary run directory (``<out>/fold-k``, with ``rows.json``, so ``danlu eval``
and ``danlu resume`` see the same rows). The mean and standard deviation of every test metric
run over the folds that finished; the standard deviation is numpy's default (``ddof=0``), what
``cross_val_score(...).std()`` prints. A fold that raises is kept in the table and in
``cv.json`` with its error.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._rundir import holds_something, numbered
from ..errors import DataError, UserError
from ..evaluation._baseline import baseline_metrics
from ..evaluation._metrics import PRIMARY_METRIC
from ..evaluation._table import format_table

SHOWN = {"classification": ("loss", "accuracy", "f1_macro", "roc_auc", "log_loss"),
         "regression": ("loss", "r2", "rmse", "mae"),
         "multilabel": ("loss", "accuracy", "hamming_loss", "f1_micro", "f1_macro", "roc_auc")}


@dataclass
class FoldResult:
    fold: int                      # 1-based
    run_dir: str
    rows: dict                     # split name -> number of rows
    test: dict | None = None       # the run's test metrics (None if the fold failed)
    epochs: int | None = None
    baseline: dict | None = None   # baseline name -> test metrics of that baseline on this fold
    error: str | None = None
    user_error: bool = False       # the error was the user's to fix (a UserError), not a crash
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.error is None


@dataclass
class CVResult:
    """Per-fold and aggregate figures; ``mean`` / ``std`` / ``count`` are over finished folds."""

    task: str
    folds: list[FoldResult]
    out_dir: Path
    mean: dict = field(default_factory=dict)
    std: dict = field(default_factory=dict)
    count: dict = field(default_factory=dict)
    baseline_mean: dict = field(default_factory=dict)   # baseline name -> metric -> mean
    meta: dict = field(default_factory=dict)

    @property
    def n_finished(self) -> int:
        return sum(f.finished for f in self.folds)

    @property
    def failed(self) -> list[FoldResult]:
        return [f for f in self.folds if not f.finished]

    def table(self, metrics=None) -> str:
        """The per-fold rows, mean and std, the baselines' mean, and a line per failed fold."""
        names = list(metrics or [m for m in SHOWN[self.task] if m in self.mean])
        rows = {}
        for f in self.folds:
            label = f"fold-{f.fold}" if f.finished else f"fold-{f.fold} (failed)"
            rows[label] = {m: f.test.get(m) for m in names} if f.finished else {}
        rows["mean"] = {m: self.mean.get(m) for m in names}
        rows["std"] = {m: self.std.get(m) for m in names}
        for name, figures in self.baseline_mean.items():
            rows[f"{name} baseline (mean)"] = {m: figures.get(m) for m in names if m in figures}
        lines = [format_table(rows)]
        for f in self.failed:
            lines.append(f"fold-{f.fold} failed: {f.error}")
        lines.append(f"mean and std (ddof=0) over {self.n_finished} of {len(self.folds)} folds; "
                     f"runs and cv.json in {self.out_dir}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return _finite({
            **self.meta, "task": self.task, "out_dir": str(self.out_dir), "folds": len(self.folds),
            "finished": self.n_finished, "failed": len(self.failed),
            "test": {"mean": self.mean, "std": self.std, "count": self.count},
            "baseline": {name: {"mean": figures} for name, figures in self.baseline_mean.items()},
            "per_fold": [{"fold": f.fold, "run_dir": f.run_dir, "status": "finished" if f.finished else "failed",
                          "rows": f.rows, "epochs": f.epochs, "seconds": round(f.seconds, 3), "test": f.test,
                          "baseline": f.baseline, "error": f.error, "user_error": f.user_error}
                         for f in self.folds],
        })


# ---------------------------------------------------------------------------------------------
# Fold assignment
# ---------------------------------------------------------------------------------------------

def fold_rows(y: np.ndarray, task: str, folds: int, seed: int, validation: float = 0.0,
              stratify: bool = True, where: str = "data") -> list[dict[str, np.ndarray]]:
    """Row indices of each fold: ``[{"train": ..., "validation": ..., "test": ...}, ...]``."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    n = len(y)
    if folds < 2:
        raise UserError(f"--folds must be at least 2, got {folds}")
    if folds > n:
        raise DataError(f"{where}: {folds} folds need at least {folds} rows, but there are {n}; lower --folds")
    strata = y if task == "classification" and stratify else None
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if strata is not None
                else KFold(folds, shuffle=True, random_state=seed))
    out = []
    try:
        for rest, test in splitter.split(np.zeros(n), strata):
            rows = {"train": rest, "test": test}
            if validation > 0:
                sub = None if strata is None else strata[rest]
                rows["train"], rows["validation"] = train_test_split(
                    rest, test_size=validation, random_state=seed, shuffle=True, stratify=sub)
            order = ("train", "validation", "test")
            out.append({k: np.sort(rows[k]) for k in order if k in rows})
    except ValueError as err:
        hint = "set data.split.stratify: false, " if strata is not None else ""
        raise DataError(f"{where}: cannot cut {folds} folds from {n} rows ({err}); "
                        f"{hint}lower --folds or data.split.validation") from None
    return out


# ---------------------------------------------------------------------------------------------
# Running the folds
# ---------------------------------------------------------------------------------------------

def cross_validate(recipe, folds: int = 5, out_dir=None, *, progress: str | None = None, callbacks=(),
                   stream=None) -> CVResult:
    """Train ``recipe`` once per fold and collect the held-out figures (see the module doc).

    ``out_dir`` defaults to ``<output.runs_dir>/cv-<name>``; a folder that holds anything gets a
    numbered suffix instead. ``progress`` is passed to each fold's training; one line per fold is
    written to ``stream`` (stderr). ``callbacks`` are added to every fold's run.
    """
    from .. import _rundir
    from .. import training as runs
    from ..data import labelled_rows
    from ..recipe import Recipe

    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    stream = stream or sys.stderr
    y, task = labelled_rows(recipe.data, recipe.seed, recipe.source)
    split = recipe.data.split
    assignment = fold_rows(y, task, folds, recipe.seed, split.validation, split.stratify, recipe.source)
    n_classes = int(y.max()) + 1 if task == "classification" else None

    base = Path(out_dir) if out_dir is not None else Path(recipe.output.runs_dir) / f"cv-{recipe.name or 'run'}"
    root = numbered(base, holds_something)   # new or empty, else base-2, base-3 ...: nothing is overwritten
    if root != base and out_dir is not None:
        print(f"cv: {base} is not empty; writing to {root} instead", file=stream)
    _rundir.plan_dir(root, flag="--out", kind="cv").create()   # made and marked as danlu's (.danlu-run)

    results = []
    for k, rows in enumerate(assignment, start=1):
        counts = {name: int(len(idx)) for name, idx in rows.items()}
        print(f"cv: fold {k}/{folds} ({', '.join(f'{n} {c}' for n, c in counts.items())} rows)",
              file=stream, flush=True)
        fold = FoldResult(fold=k, run_dir=f"fold-{k}", rows=counts)
        fold.baseline = baseline_metrics(task, y[rows["train"]], y[rows["test"]], n_classes, recipe.seed)
        start = time.perf_counter()
        try:
            run = runs.train(recipe, root / fold.run_dir, progress=progress, callbacks=callbacks, rows=rows)
            fold.test = dict(run.summary["test"])
            fold.epochs = run.summary.get("run", {}).get("epochs")
        except Exception as err:  # a failed fold is a result to report, not a reason to lose the others
            fold.user_error = isinstance(err, UserError)
            fold.error = str(err) if fold.user_error else f"{type(err).__name__}: {err}"
        fold.seconds = time.perf_counter() - start
        results.append(fold)
        print(f"cv: fold {k}/{folds} {_fold_line(fold, task)} ({fold.seconds:.1f} s)", file=stream, flush=True)

    result = _aggregate(task, results, root)
    result.meta = {"recipe": recipe.to_dict(), "source": recipe.source, "seed": recipe.seed,
                   "stratified": bool(task == "classification" and split.stratify),
                   "validation_share": split.validation}
    _write_json(root / "cv.json", result.to_dict())
    if result.n_finished == 0 and all(f.user_error for f in results):
        # the same mistake in every fold (a bad model key, say): one line, as for `danlu train`
        raise UserError(f"{results[0].error} (every fold of the cross-validation failed; see {root / 'cv.json'})")
    return result


def _fold_line(fold: FoldResult, task: str) -> str:
    if not fold.finished:
        return f"failed: {fold.error}"
    metric = PRIMARY_METRIC[task]
    return f"test {metric} {fold.test.get(metric, float('nan')):.4f}, {fold.epochs} epochs"


def _aggregate(task: str, folds: list[FoldResult], root: Path) -> CVResult:
    done = [f for f in folds if f.finished]
    result = CVResult(task=task, folds=folds, out_dir=root)
    result.mean, result.std, result.count = _mean_std([f.test for f in done])
    names = list(done[0].baseline) if done else []
    result.baseline_mean = {name: _mean_std([f.baseline[name] for f in done])[0] for name in names}
    return result


def _mean_std(rows: list[dict]) -> tuple[dict, dict, dict]:
    """Per metric: mean, std (ddof=0) and count over the rows that have a finite value of it
    (AUC is absent on a fold whose test rows hold one class)."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    mean, std, count = {}, {}, {}
    for name in names:
        values = np.array([r[name] for r in rows if name in r and r[name] is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        count[name] = int(len(values))
        mean[name] = float(values.mean()) if len(values) else float("nan")
        std[name] = float(values.std()) if len(values) else float("nan")
    return mean, std, count


def _finite(obj):
    """JSON has no NaN: non-finite figures are written as null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, data: dict) -> None:
    from ..training._checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False))
