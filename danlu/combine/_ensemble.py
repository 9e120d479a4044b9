"""``danlu ensemble RUN... --method M``: combine finished runs and compare them on the same test split.

The members may mix neural and classical runs trained on the same data (see ``_members``). The
fitted methods (weighted, stack, bayes) learn from the validation split and are judged on the
test split; ``ensemble.json`` in the output folder holds each member's and the ensemble's figures
on both splits, the weights and what the method fitted.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import UserError, did_you_mean
from . import _methods as M
from ._members import check_runs, load_members

RESULT_FILE = "ensemble.json"


def ensemble(run_dirs, method: str = "soft-vote", out_dir=None, *, overwrite: bool = False,
             temperature: float = 1.0, stack_c: float = 10.0, ridge_alpha: float = 1.0, seed: int = 0,
             progress: bool = True) -> dict:
    """Combine the runs' predictions with ``method``; write and return the result (see module doc).

    ``temperature``: bayes weights are ``softmax(log-likelihood / temperature)``.
    ``stack_c``: inverse regularisation of the stacking logistic regression; ``ridge_alpha``: the
    penalty of the stacking ridge regression (regression tasks).
    """
    _check_method(method)
    if temperature <= 0:
        raise UserError(f"--temperature must be > 0, got {temperature}")
    out = _out_dir(out_dir, method, overwrite)
    recipes = check_runs(run_dirs)   # mistakes answered before any model is loaded
    has_validation = recipes[0].data.split.validation > 0
    splits = ("validation", "test") if method in M.FITTED or has_validation else ("test",)
    members, prepared = load_members(run_dirs, splits, progress=progress)
    info = prepared.info
    if method not in (M.CLASSIFICATION_METHODS if info.task == "classification" else M.REGRESSION_METHODS):
        raise UserError(f"--method {method} needs classes to vote on, but these runs do regression; "
                        f"use one of {', '.join(M.REGRESSION_METHODS)}")
    labels = {s: _labels(prepared.splits[s][1], info) for s in members[0].outputs}
    outputs = [m.outputs for m in members]
    combined, weights, details = combine(method, outputs, labels.get("validation"), info, temperature=temperature,
                                         stack_c=stack_c, ridge_alpha=ridge_alpha, seed=seed)
    result = {
        "method": method,
        "task": info.task,
        "fitted_on": "validation" if method in M.FITTED else None,
        "rows": {s: int(len(y)) for s, y in labels.items()},
        "members": [{"run": str(m.path), "name": m.name, "kind": m.kind,
                     "weight": None if weights is None else float(weights[i]),
                     **{s: figures(info, labels[s], m.outputs[s]) for s in labels}}
                    for i, m in enumerate(members)],
        "ensemble": {s: figures(info, labels[s], combined[s]) for s in labels},
        "details": details,
    }
    out.mkdir(parents=True, exist_ok=True)
    from ..training._checkpoint import atomic_write_text

    atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=1))
    result["path"] = str(out)
    return result


def _check_method(method: str) -> None:
    if method not in M.CLASSIFICATION_METHODS:
        raise UserError(f"--method must be one of {', '.join(M.CLASSIFICATION_METHODS)}; got {method!r}"
                        f"{did_you_mean(method, M.CLASSIFICATION_METHODS)}")


def _out_dir(out_dir, method: str, overwrite: bool) -> Path:
    if out_dir is not None:
        path = Path(out_dir)
        if (path / RESULT_FILE).exists() and not overwrite:
            raise UserError(f"{path}: already holds an {RESULT_FILE}; choose another -o folder or pass --overwrite")
        return path
    base = Path("runs") / f"ensemble-{method}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def _labels(y, info) -> np.ndarray:
    y = y.detach().cpu().numpy()
    if info.task == "classification":
        return y.astype(np.int64)
    return y.astype(np.float64).reshape(len(y), -1)


def figures(info, y: np.ndarray, scores: np.ndarray) -> dict:
    from ..evaluation import compute_metrics

    return compute_metrics(info.task, y, scores, n_classes=info.n_classes)


def combine(method: str, outputs: list[dict], y_val, info, *, temperature: float = 1.0, stack_c: float = 10.0,
            ridge_alpha: float = 1.0, seed: int = 0):
    """(combined outputs per split, weights or None, details) for members' ``outputs`` per split."""
    classify = info.task == "classification"
    splits = list(outputs[0])
    per = {s: [o[s] for o in outputs] for s in splits}
    m = len(outputs)
    if method == "vote":
        rule = {"rule": "majority of votes, ties by mean probability"}
        return {s: M.vote(per[s]) for s in splits}, M.uniform(m), rule
    if method in ("soft-vote", "average"):
        weights, details = M.uniform(m), {"rule": "mean of the members' outputs"}
    elif method == "weighted":
        fit = M.weighted_classification if classify else M.weighted_regression
        weights = fit(per["validation"], y_val)
        details = {"objective": "validation log loss" if classify else "validation MSE",
                   "constraint": "weights >= 0, summing to 1"}
    elif method == "bayes":
        ll = (M.classification_log_likelihood if classify else M.gaussian_log_likelihood)(per["validation"], y_val)
        weights = M.bayes_weights(ll, temperature)
        details = {"log_likelihood": ll.tolist(), "temperature": temperature,
                   "likelihood": "categorical" if classify else "Gaussian, variance = member's validation MSE",
                   "rule": "weights = softmax(log_likelihood / temperature)"}
    else:
        return _stack(per, y_val, info, stack_c, ridge_alpha, seed)
    return {s: M.mix(per[s], weights) for s in splits}, weights, details


def _stack(per: dict, y_val, info, stack_c: float, ridge_alpha: float, seed: int):
    if info.task == "classification":
        meta = M.fit_stack_classifier(per["validation"], y_val, info.n_classes, stack_c, seed)
        combined = {s: M.stack_classifier_proba(meta, per[s], info.n_classes) for s in per}
        details = {"meta_model": "LogisticRegression", "C": stack_c, "features": "members' probabilities",
                   "classes": [int(c) for c in meta.classes_], "coef": meta.coef_.tolist(),
                   "intercept": meta.intercept_.tolist()}
    else:
        meta = M.fit_stack_regressor(per["validation"], y_val, ridge_alpha)
        combined = {s: M.stack_regressor_predict(meta, per[s]) for s in per}
        details = {"meta_model": "Ridge", "alpha": ridge_alpha, "features": "members' predictions",
                   "coef": np.atleast_2d(meta.coef_).tolist(), "intercept": np.atleast_1d(meta.intercept_).tolist()}
    return combined, None, details


def table_rows(result: dict, split: str) -> dict:
    """{row name: {weight, metrics...}} for ``format_table``: each member, then the ensemble."""
    rows = {}
    for m in result["members"]:
        rows[m["name"]] = {"weight": m["weight"], **m[split]}
    rows[f"ensemble ({result['method']})"] = {"weight": None, **result["ensemble"][split]}
    return rows
