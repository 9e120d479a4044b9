"""Benchmark tables (基准): several runs scored on the same rows, with baselines and references.

Runs are only compared when they were scored on the same rows: same data source, name, path,
label, task, row handling (impute), generated-data size, split fractions and seed, and the same
``rows.json`` for cross-validation folds — and, checked after loading, the same labels. Inputs
that differ on the same rows (features, scaling, shape) are allowed with a warning.

Beside the runs the table shows

* the baselines of :mod:`._baseline`, fitted on the same training rows;
* **sklearn reference** rows: standard scikit-learn models (logistic regression and a random
  forest for classification, ridge regression and a random forest for regression) fitted by
  danlu on the same training rows, with the same transformed inputs, and scored on the same
  split — a reference computed here, not quoted;
* for the data sets that ship with scikit-learn, one **quoted** figure: a 5-fold
  cross-validation score computed once by the danlu authors (see :data:`QUOTED`). It is on
  other rows than this split, so it is a yardstick, not a result.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import UserError, did_you_mean
from ..evaluation._baseline import baseline_scores, format_p, main_baseline, significance
from ..evaluation._metrics import METRICS, PRIMARY_METRIC, compute_metrics, metric_direction
from ._scores import run_split_scores

# Keys of `data` that decide which rows land in which split: they must be equal.
SAME_ROWS = ("source", "name", "path", "label", "task", "impute", "samples", "length", "split")
# Keys that change what the model sees of the same rows: allowed, with a warning.
SAME_INPUTS = ("features", "categorical", "shape", "image_size", "grayscale", "scale")

SHOWN = {"classification": ("accuracy", "f1_macro", "roc_auc", "log_loss"),
         "regression": ("r2", "rmse", "mae")}

# Computed with scikit-learn 1.9.1 on the full data set: StandardScaler + the model named,
# default hyper-parameters, StratifiedKFold (classification) / KFold (regression) with
# n_splits=5, shuffle=True, random_state=0; the mean over the five folds.
QUOTED = {
    "digits": ("SVC (RBF), 5-fold CV", "accuracy", 0.9805),
    "iris": ("SVC (RBF), 5-fold CV", "accuracy", 0.9533),
    "breast_cancer": ("SVC (RBF), 5-fold CV", "accuracy", 0.9771),
    "wine": ("SVC (RBF), 5-fold CV", "accuracy", 0.9830),
    "diabetes": ("Ridge, 5-fold CV", "r2", 0.4896),
}


# ---------------------------------------------------------------------------------------------
# Same data?
# ---------------------------------------------------------------------------------------------

def _rows_file(run_dir: Path):
    path = Path(run_dir) / "rows.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _saved_recipe(run_dir: Path) -> dict:
    """The resolved recipe a run saved, as plain data: reading it needs neither torch nor the
    model registry, so a refusal answers at once."""
    import yaml

    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir}: not a danlu run directory (no recipe.yaml); give the folder that "
                        f"`danlu train` created, e.g. runs/<name>")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a recipe (a mapping of keys was expected)")
    return data


def check_same_data(run_dirs) -> list[str]:
    """Refuse (``UserError``) runs whose rows differ from the first run's; return warnings for
    differences that keep the rows but change the inputs."""
    run_dirs = [Path(p) for p in run_dirs]
    recipes = [_saved_recipe(p) for p in run_dirs]
    first, ref = run_dirs[0], recipes[0]
    warnings = []
    for path, recipe in zip(run_dirs[1:], recipes[1:]):
        why = _row_difference(ref, recipe)
        if why is None and _rows_file(first) != _rows_file(path):
            why = "rows.json (the runs were trained on different cross-validation folds or rows)"
        if why is not None:
            raise UserError(f"{path}: scored on other data than {first} ({why}); compare only runs of the "
                            f"same data, seed and split")
        a, b = ref.get("data") or {}, recipe.get("data") or {}
        for key in SAME_INPUTS:
            if a.get(key) != b.get(key):
                warnings.append(f"{path}: data.{key} is {b.get(key)!r}, {first} has {a.get(key)!r} "
                                f"(same rows, different inputs)")
    return warnings


def _row_difference(a: dict, b: dict) -> str | None:
    if a.get("seed") != b.get("seed"):
        return f"seed {b.get('seed')} vs {a.get('seed')}"
    da, db = a.get("data") or {}, b.get("data") or {}
    for key in SAME_ROWS:
        if da.get(key) != db.get(key):
            return f"data.{key} {_show(db.get(key))} vs {_show(da.get(key))}"
    return None


def _show(value) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else repr(value)


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------

def compare_runs(run_dirs, split: str = "test", metric: str | None = None, *, references: bool = True,
                 n_boot: int = 2000) -> dict:
    """Score each run on ``split`` and put them in one table with baselines and references.

    Returns ``{"split", "task", "metric", "rows": [...], "warnings": [...]}``; each row has
    ``name``, ``kind`` (``run``, ``sklearn reference``, ``baseline``, ``quoted``), ``what``,
    ``metrics`` and, for runs, ``p_value`` / ``verdict`` of the test against the main baseline.
    Rows are sorted best first by ``metric`` (default: the task's primary metric).
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise UserError("give at least one run directory to compare, e.g. danlu compare runs/a runs/b")
    warnings = check_same_data(run_dirs)
    scored = [run_split_scores(p, split) for p in run_dirs]
    _check_same_labels(run_dirs, scored)

    first = scored[0]
    task, n_classes, seed = first.info.task, first.info.n_classes, first.recipe.seed
    metric = _check_metric(metric, task)
    against = main_baseline(task)
    base = baseline_scores(task, first.y_train, len(first.y), n_classes, seed)

    rows = []
    for path, got in zip(run_dirs, scored):
        test = significance(task, got.y, got.scores, base[against], seed, n_boot, n_classes=n_classes)
        rows.append({"name": str(path), "kind": "run", "what": got.recipe.model.kind, "metrics": got.figures,
                     "p_value": test["p_value"], "verdict": test["verdict"]})
    if references:
        rows += sklearn_references(first, seed)
    for name, scores in base.items():
        rows.append({"name": f"baseline: {name}", "kind": "baseline", "what": name,
                     "metrics": compute_metrics(task, first.y, scores, n_classes=n_classes,
                                                positive=getattr(first.info, "positive", 1))})
    rows = _sorted(rows, metric)
    quoted = _quoted_row(first.recipe, metric)
    if quoted is not None:
        rows.append(quoted)
    return {"split": split, "task": task, "metric": metric, "against": against, "rows": rows,
            "warnings": warnings}


def _check_same_labels(run_dirs, scored) -> None:
    y0 = scored[0].y
    for path, got in zip(run_dirs[1:], scored[1:]):
        if got.y.shape != y0.shape or not np.array_equal(got.y, y0):
            raise UserError(f"{path}: its split holds other rows than {run_dirs[0]}'s although the recipes "
                            f"agree (has the data file changed?); retrain the runs on the same data")


def _check_metric(metric: str | None, task: str) -> str:
    if metric is None:
        return PRIMARY_METRIC[task]
    if metric not in METRICS[task]:
        raise UserError(f"--metric {metric!r} is not a {task} metric{did_you_mean(metric, METRICS[task])}; "
                        f"use one of {', '.join(METRICS[task])}")
    return metric


def _sorted(rows: list[dict], metric: str) -> list[dict]:
    sign = -1.0 if metric_direction(metric) == "max" else 1.0

    def key(row):
        value = row["metrics"].get(metric)
        missing = value is None or not math.isfinite(value)
        return (missing, 0.0 if missing else sign * value)

    return sorted(rows, key=key)


def _quoted_row(recipe, metric: str) -> dict | None:
    if recipe.data.source != "sklearn" or recipe.data.name not in QUOTED:
        return None
    what, name, value = QUOTED[recipe.data.name]
    if name != metric:
        return None
    return {"name": "quoted (other rows)", "kind": "quoted", "what": what, "metrics": {name: value},
            "note": "computed once with scikit-learn 1.9.1: StandardScaler + model, default parameters, "
                    "5-fold CV shuffled with random_state=0 over the whole data set"}


def sklearn_references(got, seed: int) -> list[dict]:
    """Standard scikit-learn models fitted on the run's training rows (its transformed inputs)
    and scored on the same split."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge

    X_train, y_train = (t.cpu().numpy() for t in got.prepared.splits["train"])
    X_train = X_train.reshape(len(X_train), -1)
    X_eval = got.prepared.splits[got.split][0].cpu().numpy()
    X_eval = X_eval.reshape(len(X_eval), -1)
    task, n_classes = got.info.task, got.info.n_classes
    if task == "classification":
        models = {"LogisticRegression": LogisticRegression(max_iter=2000),
                  "RandomForestClassifier": RandomForestClassifier(n_estimators=100, random_state=seed)}
    else:
        models = {"Ridge": Ridge(alpha=1.0),
                  "RandomForestRegressor": RandomForestRegressor(n_estimators=100, random_state=seed)}
    rows = []
    for name, model in models.items():
        model.fit(X_train, y_train)
        if task == "classification":
            scores = np.zeros((len(X_eval), n_classes))
            scores[:, model.classes_.astype(np.int64)] = model.predict_proba(X_eval)
        else:
            scores = model.predict(X_eval)
        rows.append({"name": f"sklearn reference: {name}", "kind": "sklearn reference", "what": name,
                     "metrics": compute_metrics(task, got.y, scores, n_classes=n_classes,
                                                positive=getattr(got.info, "positive", 1))})
    return rows


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

def format_comparison(result: dict, metrics=None) -> str:
    """A plain-text benchmark table, best first, then warnings and notes."""
    task, metric = result["task"], result["metric"]
    names = [metric] + [m for m in (metrics or SHOWN[task]) if m != metric]
    header = ["", "kind"] + names + [f"p vs {result['against']}"]
    body = []
    for row in result["rows"]:
        label = f"{row['name']} [{row['what']}]" if row["kind"] == "run" else row["what"]
        cells = [label, row["kind"]]
        cells += [_number(row["metrics"].get(m)) for m in names]
        cells.append(format_p(row["p_value"]).lstrip("=") if row.get("p_value") is not None else "")
        body.append(cells)
    better = "higher" if metric_direction(metric) == "max" else "lower"
    lines = [f"{result['split']} split, sorted by {metric} ({better} is better)", _text_table(header, body)]
    for row in result["rows"]:
        if row.get("verdict"):
            lines.append(f"{row['name']}: {row['verdict']}")
        if row.get("note"):
            lines.append(f"{row['what']} (quoted): {row['note']}")
    lines += [f"warning: {w}" for w in result["warnings"]]
    return "\n".join(lines)


def _number(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if math.isfinite(value) else str(value)


def _text_table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]

    def line(cells):
        text = [str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(text).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in body])
