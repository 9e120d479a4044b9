"""``danlu ensemble RUN... --method M``: combine finished runs and compare them on the same test split.

The members may mix neural and classical runs trained on the same data (see ``_members``). The
fitted methods (weighted, stack, bayes) learn from the validation split and are judged on the
test split; ``ensemble.json`` in the output folder holds each member's and the ensemble's figures
on both splits, the weights and what the method fitted.

The output folder is a run like any other for the verbs that use a model: ``danlu predict``,
``serve`` and ``export`` load the members named in ``ensemble.json`` and combine them with the
stored weights or meta-model (``_model``). Bayesian model averaging is also compared with soft
voting on the same rows, and says whether its likelihoods came from rows the members had already
used for early stopping (then they flatter the members that fit those rows best).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError, did_you_mean
from . import _methods as M
from ._members import check_runs, load_members

RESULT_FILE = "ensemble.json"
FORMAT = "danlu.ensemble"


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
    target = _out_dir(out_dir, method, overwrite)
    recipes = check_runs(run_dirs, reshape=True)   # mistakes answered before any model is loaded
    has_validation = recipes[0].data.split.validation > 0
    splits = ("validation", "test") if method in M.FITTED or has_validation else ("test",)
    members, prepared = load_members(run_dirs, splits, progress=progress, reshape=True)
    info = prepared.info
    if method not in (M.CLASSIFICATION_METHODS if info.task == "classification" else M.REGRESSION_METHODS):
        raise UserError(f"--method {method} needs classes to vote on, but these runs do regression; "
                        f"use one of {', '.join(M.REGRESSION_METHODS)}")
    labels = {s: _labels(prepared.splits[s][1], info) for s in members[0].outputs}
    outputs = [m.outputs for m in members]
    combined, weights, details = combine(method, outputs, labels.get("validation"), info, temperature=temperature,
                                         stack_c=stack_c, ridge_alpha=ridge_alpha, seed=seed)
    compared = {}
    if method == "bayes":
        details.update(_early_stopping_note(members, recipes))
        if progress and details["validation_used_for_early_stopping_by"]:
            print(f"danlu: warning: {details['note']}", file=sys.stderr)
        soft, _, _ = combine("soft-vote", outputs, None, info)
        compared["soft-vote"] = {s: figures(info, labels[s], soft[s]) for s in labels}
    result = {
        "format": FORMAT,
        "version": 1,
        "method": method,
        "task": info.task,
        "fitted_on": "validation" if method in M.FITTED else None,
        "rows": {s: int(len(y)) for s, y in labels.items()},
        "members": [{"run": str(m.path), "resolved": str(Path(m.path).resolve()), "name": m.name, "kind": m.kind,
                     "weights_sha256": weights_digest(m.path),
                     "weight": None if weights is None else float(weights[i]),
                     **{s: figures(info, labels[s], m.outputs[s]) for s in labels}}
                    for i, m in enumerate(members)],
        "ensemble": {s: figures(info, labels[s], combined[s]) for s in labels},
        "compared_with": compared,
        "details": details,
    }
    from ..training._checkpoint import atomic_write_text

    out = target.path
    with target.claim(lock=False):   # created (marked) only now; a failed write leaves nothing
        atomic_write_text(out / RESULT_FILE, json.dumps(result, indent=1))
    result["path"] = str(out)
    return result


WEIGHT_FILES = ("model.safetensors", "model.skops")


def weights_digest(run_dir) -> str | None:
    """SHA-256 of a member's weights file, so that loading the ensemble notices a member trained again."""
    from .._integrity import sha256_file

    for name in WEIGHT_FILES:
        path = Path(run_dir) / name
        if path.is_file():
            return sha256_file(path)
    return None


def _early_stopping_note(members, recipes) -> dict:
    """Which members chose their weights on the validation split that bayes weighs them on."""
    from .. import classical

    used = [m.name for m, r in zip(members, recipes)
            if not classical.is_classical(r.model.kind) and r.train.early_stopping.enabled
            and r.data.split.validation > 0]
    if not used:
        note = "no member used the validation rows for early stopping: the log-likelihoods are fair"
    else:
        note = (f"the bayes weights come from the validation rows, which {', '.join(used)} also used for early "
                f"stopping (picking the epoch that fits them best), so their likelihoods are optimistic; compare "
                f"with soft-vote on the test split, or train members with train.early_stopping.enabled: false")
    return {"weights_from": "validation", "validation_used_for_early_stopping_by": used, "note": note}


def _check_method(method: str) -> None:
    if method not in M.CLASSIFICATION_METHODS:
        raise UserError(f"--method must be one of {', '.join(M.CLASSIFICATION_METHODS)}; got {method!r}"
                        f"{did_you_mean(method, M.CLASSIFICATION_METHODS)}")


def _out_dir(out_dir, method: str, overwrite: bool):
    """The output folder, checked now and created once the result is ready (``.claim()``): the
    same rule as a run directory (danlu._rundir) — a folder that holds anything is refused unless
    ``overwrite``, and then only one danlu created is replaced."""
    from .._rundir import plan_dir

    return plan_dir(out_dir, default=Path("runs") / f"ensemble-{method}", overwrite=overwrite, flag="-o",
                    kind="ensemble")


def _labels(y, info) -> np.ndarray:
    y = y.detach().cpu().numpy()
    if info.task == "classification":
        return y.astype(np.int64)
    return y.astype(np.float64).reshape(len(y), -1)


def figures(info, y: np.ndarray, scores: np.ndarray) -> dict:
    from ..evaluation import compute_metrics

    return compute_metrics(info.task, y, scores, n_classes=info.n_classes, positive=getattr(info, "positive", 1))


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
    for name, figs in (result.get("compared_with") or {}).items():
        rows[f"for comparison: {name}"] = {"weight": None, **figs[split]}
    return rows
