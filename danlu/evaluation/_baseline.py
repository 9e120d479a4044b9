"""Baselines (基线) and whether a model beats them.

A model's figures only mean something beside what a model that ignores the inputs scores:

* ``majority`` (classification): always the most frequent training class, with the training
  class frequencies as its probabilities. Its accuracy is scikit-learn's
  ``DummyClassifier(strategy="most_frequent")``, its probabilities those of ``strategy="prior"``
  (so log loss and AUC are the honest ones of a prior, not of a one-hot guess).
* ``stratified`` (classification): a random class per row drawn with the training class
  frequencies — ``DummyClassifier(strategy="stratified", random_state=seed)``, draw for draw.
* ``mean`` (regression): the training mean of each target — ``DummyRegressor()``.
* ``prior`` (multilabel): each label's training frequency as its probability, for every row
  (so a label is predicted on every row when it is on in at least half the training rows).

:func:`significance` then asks whether the model's edge over a baseline on the same rows could
be luck: McNemar's test on the rows where exactly one of the two is right (classification), and a
paired bootstrap of the metric difference (both tasks).
"""
from __future__ import annotations

import math

import numpy as np

from ._metrics import PRIMARY_METRIC, _to_numpy, compute_metrics, metric_direction

# McNemar: below this many discordant rows the chi-square approximation is poor, so the exact
# binomial test is used (the usual rule of thumb, also statsmodels' advice).
EXACT_BELOW = 25
ALPHA = 0.05


# ---------------------------------------------------------------------------------------------
# Baseline predictions and figures
# ---------------------------------------------------------------------------------------------

def class_prior(y_train, n_classes: int | None = None) -> np.ndarray:
    """Training class frequencies, one entry per class id ``0 .. n_classes-1``."""
    y = np.asarray(_to_numpy(y_train)).reshape(-1).astype(np.int64)
    counts = np.bincount(y, minlength=n_classes or 0).astype(np.float64)
    return counts / counts.sum()


def baseline_scores(task: str, y_train, n_eval: int, n_classes: int | None = None, seed: int = 0) -> dict:
    """The scores each baseline gives ``n_eval`` rows: ``{name: scores}`` in the form
    :func:`compute_metrics` takes (class probabilities, or regression predictions)."""
    if task == "multilabel":
        frequency = np.asarray(_to_numpy(y_train), dtype=np.float64).mean(axis=0)
        return {"prior": np.tile(frequency, (n_eval, 1))}
    if task == "classification":
        prior = class_prior(y_train, n_classes)
        majority = np.tile(prior, (n_eval, 1))
        # the draws of DummyClassifier(strategy="stratified"): one multinomial sample per row
        stratified = np.random.RandomState(seed).multinomial(1, prior, size=n_eval).astype(np.float64)
        return {"majority": majority, "stratified": stratified}
    y = np.asarray(_to_numpy(y_train), dtype=np.float64)
    mean = y.mean(axis=0)  # a scalar for one target, a vector for several
    return {"mean": np.broadcast_to(mean, (n_eval,) + np.shape(mean)).copy()}


def baseline_metrics(task: str, y_train, y_eval, n_classes: int | None = None, seed: int = 0) -> dict:
    """Metrics of every baseline fitted on ``y_train`` and scored on ``y_eval``:
    ``{"majority": {...}, "stratified": {...}}`` or ``{"mean": {...}}``."""
    y_eval = _to_numpy(y_eval)
    if task == "classification" and n_classes is None:
        n_classes = int(max(np.max(_to_numpy(y_train)), np.max(y_eval))) + 1
    scores = baseline_scores(task, y_train, len(y_eval), n_classes, seed)
    return {name: compute_metrics(task, y_eval, s, n_classes=n_classes) for name, s in scores.items()}


def main_baseline(task: str) -> str:
    """The baseline a model is tested against: the strongest trivial one for the primary metric."""
    return {"classification": "majority", "multilabel": "prior"}.get(task, "mean")


# ---------------------------------------------------------------------------------------------
# McNemar
# ---------------------------------------------------------------------------------------------

def mcnemar(model_correct, baseline_correct) -> dict:
    """McNemar's test of equal accuracy on paired rows.

    ``b`` rows only the model gets right, ``c`` rows only the baseline gets right. With fewer
    than :data:`EXACT_BELOW` such rows the exact two-sided binomial test of ``b`` out of ``b + c``
    at 1/2 is used (what ``scipy.stats.binomtest`` gives), otherwise the chi-square statistic
    with continuity correction ``(|b - c| - 1)^2 / (b + c)`` on one degree of freedom.
    """
    m = np.asarray(model_correct, dtype=bool)
    base = np.asarray(baseline_correct, dtype=bool)
    b = int(np.sum(m & ~base))
    c = int(np.sum(~m & base))
    n = b + c
    if n == 0:
        return {"test": "mcnemar", "method": "exact", "b": 0, "c": 0, "statistic": 0.0, "p_value": 1.0}
    if n < EXACT_BELOW:
        # symmetric null (p = 1/2): the two-sided p-value is twice the smaller tail, capped at 1
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2.0 ** n
        return {"test": "mcnemar", "method": "exact", "b": b, "c": c, "statistic": float(min(b, c)),
                "p_value": min(1.0, 2.0 * tail)}
    stat = (abs(b - c) - 1.0) ** 2 / n
    # survival function of chi-square with 1 degree of freedom: P(Z^2 > s) = erfc(sqrt(s / 2))
    return {"test": "mcnemar", "method": "chi2", "b": b, "c": c, "statistic": float(stat),
            "p_value": float(math.erfc(math.sqrt(stat / 2.0)))}


# ---------------------------------------------------------------------------------------------
# Paired bootstrap
# ---------------------------------------------------------------------------------------------

def paired_bootstrap(task: str, y_true, model_scores, baseline_scores_, metric: str | None = None,
                     seed: int = 0, n_boot: int = 2000, n_classes: int | None = None,
                     confidence: float = 0.95) -> dict:
    """Bootstrap the difference ``metric(model) - metric(baseline)`` over rows drawn with
    replacement, the same rows for both (paired).

    The interval is the percentile interval of the resampled differences. The p-value tests
    "no difference" by centring the resampled differences on zero:
    ``(1 + #{|d* - d| >= |d|}) / (n_boot + 1)``.
    """
    metric = metric or PRIMARY_METRIC[task]
    y = _to_numpy(y_true)
    ms, bs = _to_numpy(model_scores), _to_numpy(baseline_scores_)
    observed = _metric(task, y, ms, metric, n_classes) - _metric(task, y, bs, metric, n_classes)
    diffs = _resampled_differences(task, y, ms, bs, metric, seed, n_boot, n_classes)
    diffs = diffs[np.isfinite(diffs)]
    if len(diffs) == 0 or not np.isfinite(observed):
        return {"test": "paired_bootstrap", "metric": metric, "difference": float(observed),
                "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan"), "n_boot": 0}
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    extreme = np.sum(np.abs(diffs - observed) >= abs(observed) - 1e-12)
    p = float((1 + extreme) / (len(diffs) + 1)) if observed != 0 else 1.0
    return {"test": "paired_bootstrap", "metric": metric, "difference": float(observed),
            "ci_low": float(low), "ci_high": float(high), "confidence": confidence,
            "p_value": p, "n_boot": int(len(diffs))}


def _metric(task, y, scores, metric, n_classes) -> float:
    return float(compute_metrics(task, y, scores, n_classes=n_classes).get(metric, float("nan")))


def _resampled_differences(task, y, ms, bs, metric, seed, n_boot, n_classes) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(y)
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))  # bounds the (chunk, n) index matrix
    fast = _fast_statistic(task, y, ms, bs, metric)
    out = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        if fast is not None:
            out.append(fast(idx))
        else:  # any other metric: compute it on each resample (slower, still exact)
            out.append(np.array([_metric(task, y[i], ms[i], metric, n_classes)
                                 - _metric(task, y[i], bs[i], metric, n_classes) for i in idx]))
    return np.concatenate(out) if out else np.empty(0)


def _fast_statistic(task, y, ms, bs, metric):
    """A vectorised ``idx -> differences`` for accuracy and single-output regression metrics."""
    if task == "classification" and metric == "accuracy":
        labels = y.reshape(-1).astype(np.int64)
        d = (_predicted(ms) == labels).astype(np.float64) - (_predicted(bs) == labels)
        return lambda idx: d[idx].mean(axis=1)
    if task == "multilabel" and metric == "accuracy":   # subset accuracy: every label of the row right
        d = (np.all((ms >= 0.5) == y.astype(bool), axis=1).astype(np.float64)
             - np.all((bs >= 0.5) == y.astype(bool), axis=1))
        return lambda idx: d[idx].mean(axis=1)
    if task != "regression" or (y.ndim > 1 and y.shape[1] > 1):
        return None
    y = y.reshape(-1).astype(np.float64)
    em, eb = y - ms.reshape(-1), y - bs.reshape(-1)
    if metric in ("mse", "rmse"):
        root = np.sqrt if metric == "rmse" else (lambda v: v)
        return lambda idx: root((em[idx] ** 2).mean(axis=1)) - root((eb[idx] ** 2).mean(axis=1))
    if metric == "mae":
        return lambda idx: np.abs(em[idx]).mean(axis=1) - np.abs(eb[idx]).mean(axis=1)
    if metric == "r2":
        def r2_difference(idx):
            yi = y[idx]
            total = ((yi - yi.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):  # a constant resample: NaN, dropped
                return ((eb[idx] ** 2).sum(axis=1) - (em[idx] ** 2).sum(axis=1)) / total
        return r2_difference
    return None


def _predicted(scores: np.ndarray) -> np.ndarray:
    """Class ids from probabilities ``(N, C)`` or P(class 1) ``(N,)``."""
    if scores.ndim == 2 and scores.shape[1] > 1:
        return np.argmax(scores, axis=1)
    return (scores.reshape(-1) > 0.5).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# The verdict
# ---------------------------------------------------------------------------------------------

def significance(task: str, y_true, model_scores, baseline_scores_, seed: int = 0, n_boot: int = 2000, *,
                 metric: str | None = None, n_classes: int | None = None, alpha: float = ALPHA) -> dict:
    """Is the model better than the baseline on these rows, beyond luck?

    Classification: McNemar's test on accuracy decides the verdict, and a paired bootstrap of
    ``metric`` (default accuracy) gives its interval. Regression: the paired bootstrap of
    ``metric`` (default R²) decides. Returns the tests' figures and ``verdict``, a sentence.
    """
    metric = metric or PRIMARY_METRIC[task]
    y = _to_numpy(y_true)
    ms, bs = _to_numpy(model_scores), _to_numpy(baseline_scores_)
    out = {"metric": metric, "alpha": alpha,
           "bootstrap": paired_bootstrap(task, y, ms, bs, metric, seed, n_boot, n_classes)}
    if task == "classification":
        labels = y.reshape(-1).astype(np.int64)
        out["mcnemar"] = mcnemar(_predicted(ms) == labels, _predicted(bs) == labels)
        decisive = out["mcnemar"]
        better = decisive["b"] - decisive["c"]
        name = "McNemar"
    else:
        decisive = out["bootstrap"]
        better = decisive["difference"] if metric_direction(metric) == "max" else -decisive["difference"]
        name = "bootstrap"
    out["p_value"] = decisive["p_value"]
    out["verdict"] = verdict(decisive["p_value"], better, alpha, name)
    return out


def verdict(p_value: float, better: float, alpha: float = ALPHA, test: str = "") -> str:
    """Plain words: "significantly better than the baseline (McNemar p=0.001)"."""
    if not np.isfinite(p_value):
        return "no test possible (the figures are not finite)"
    where = f"{test} p{format_p(p_value)}" if test else f"p{format_p(p_value)}"
    if p_value < alpha and better > 0:
        return f"significantly better than the baseline ({where})"
    if p_value < alpha and better < 0:
        return f"significantly worse than the baseline ({where})"
    return f"not significantly different from the baseline ({where})"


def format_p(p: float) -> str:
    """``=0.032`` or ``<0.001``: the relation and the figure, for text and tables."""
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def compare_to_baseline(task: str, y_train, y_eval, model_scores, n_classes: int | None = None,
                        seed: int = 0, n_boot: int = 2000, positive: int = 1, label_names: list | None = None) -> dict:
    """Everything to show a baseline beside a model's figures on one split, from arrays alone:
    ``{"baseline": {name: metrics}, "against": name, "significance": {...}}`` (binary figures
    about the class id ``positive``)."""
    y_eval = _to_numpy(y_eval)
    if task == "classification" and n_classes is None:
        n_classes = _to_numpy(model_scores).shape[1] if _to_numpy(model_scores).ndim == 2 else 2
    scores = baseline_scores(task, y_train, len(y_eval), n_classes, seed)
    figures = {name: compute_metrics(task, y_eval, s, n_classes=n_classes, positive=positive, label_names=label_names)
               for name, s in scores.items()}
    against = main_baseline(task)
    test = significance(task, y_eval, model_scores, scores[against], seed, n_boot, n_classes=n_classes)
    return {"baseline": figures, "against": against, "significance": test}
