"""How members' predictions are combined (模型融合): plain numpy on arrays, no run directories.

Classification members give probabilities ``P[m]`` of shape ``(N, C)``; regression members give
predictions ``F[m]`` of shape ``(N, k)``. Each method returns the ensemble's scores in the same
form, and the fitted methods also what they learned from the validation split:

* ``vote`` (classification only): each member votes for its most probable class; the class with
  most votes wins, ties go to the class with the higher mean probability. The scores are the
  vote shares mixed with ``TIE_BREAK`` of the mean probability, so their argmax is the winner.
* ``soft-vote`` / ``average``: the mean of the members' probabilities (regression: predictions).
* ``weighted``: weights on the simplex (>= 0, summing to 1) that minimise the validation log
  loss (regression: validation MSE) of the weighted mean. The objective is convex in the
  weights; SLSQP finds them, and each single member and the uniform mix are candidates too, so
  the result is never worse on validation than the best member.
* ``stack``: a meta-model fitted on the members' validation outputs and judged on the test split:
  a multinomial logistic regression (L2, ``C``, default 10) on their concatenated probabilities,
  or a ridge regression (``alpha``) on their predictions for regression. Probabilities lie in
  [0, 1], so a confident meta-model needs coefficients near 10: scikit-learn's usual C = 1
  shrank them too far (digits, three members: validation log loss 0.16 with C = 1, 0.06 with
  C = 10; test 0.20 and 0.13). Log-probabilities as features would let the meta-model reproduce
  any member exactly, but a confident member's log(0), clipped to -36, dominates them and the
  meta-model overfits the validation rows (test accuracy fell from 0.98 to 0.88).
* ``bayes``: Bayesian model averaging with weights ``softmax(LL / T)``, where ``LL[m]`` is member
  m's total log-likelihood of the validation labels (classification: ``sum log p_m(y_i)``, clipped
  at the float64 epsilon; regression: Gaussian with the member's own validation MSE as variance).
  With ``T = 1`` this is the posterior over members under a uniform prior given the validation
  rows; it concentrates on the best member as rows accumulate. A larger T spreads the weights.
"""
from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)
TIE_BREAK = 1e-6

CLASSIFICATION_METHODS = ("vote", "soft-vote", "average", "weighted", "stack", "bayes")
REGRESSION_METHODS = ("soft-vote", "average", "weighted", "stack", "bayes")
FITTED = ("weighted", "stack", "bayes")   # methods that learn from the validation split


def uniform(m: int) -> np.ndarray:
    return np.full(m, 1.0 / m)


def mix(outputs: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The weighted sum of members' outputs (probabilities or predictions)."""
    return np.tensordot(np.asarray(weights, dtype=np.float64), np.stack(outputs), axes=1)


def vote(probas: list[np.ndarray]) -> np.ndarray:
    n, c = probas[0].shape
    votes = np.zeros((n, c))
    for p in probas:
        votes[np.arange(n), p.argmax(1)] += 1
    share = votes / len(probas)
    return (1 - TIE_BREAK) * share + TIE_BREAK * mix(probas, uniform(len(probas)))


# ---------------------------------------------------------------------------------------------
# Weights on the simplex
# ---------------------------------------------------------------------------------------------

def log_loss_and_grad(weights: np.ndarray, picked: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log loss of the mixture and its gradient; ``picked[m, i]`` = member m's p(y_i)."""
    p = np.clip(weights @ picked, EPS, None)
    return float(-np.mean(np.log(p))), -np.mean(picked / p, axis=1)


def mse_and_grad(weights: np.ndarray, preds: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """MSE of the weighted prediction and its gradient; ``preds`` is (M, N, k), ``y`` is (N, k)."""
    err = np.tensordot(weights, preds, axes=1) - y
    return float(np.mean(err ** 2)), 2 * np.mean(err[None] * preds, axis=(1, 2))


def fit_simplex_weights(objective, m: int) -> tuple[np.ndarray, float]:
    """Minimise ``objective(w) -> (value, gradient)`` over the simplex; returns (weights, value)."""
    from scipy.optimize import minimize

    result = minimize(lambda w: objective(w)[0], uniform(m), jac=lambda w: objective(w)[1], method="SLSQP",
                      bounds=[(0.0, 1.0)] * m,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(m)}],
                      options={"maxiter": 500, "ftol": 1e-12})
    candidates = [np.eye(m)[j] for j in range(m)] + [uniform(m)]
    if np.all(np.isfinite(result.x)):
        candidates.insert(0, _on_simplex(result.x))
    values = [objective(w)[0] for w in candidates]
    best = int(np.argmin(values))   # the first (the optimiser's) wins ties
    return candidates[best], float(values[best])


def _on_simplex(w: np.ndarray) -> np.ndarray:
    w = np.clip(w, 0.0, None)
    return w / w.sum() if w.sum() > 0 else uniform(len(w))


def weighted_classification(val_probas: list[np.ndarray], y_val: np.ndarray) -> np.ndarray:
    picked = np.stack([p[np.arange(len(y_val)), y_val] for p in val_probas])
    weights, _ = fit_simplex_weights(lambda w: log_loss_and_grad(w, picked), len(val_probas))
    return weights


def weighted_regression(val_preds: list[np.ndarray], y_val: np.ndarray) -> np.ndarray:
    preds = np.stack(val_preds)
    weights, _ = fit_simplex_weights(lambda w: mse_and_grad(w, preds, y_val), len(val_preds))
    return weights


# ---------------------------------------------------------------------------------------------
# Bayesian model averaging
# ---------------------------------------------------------------------------------------------

def classification_log_likelihood(probas: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    return np.array([np.sum(np.log(np.clip(p[np.arange(len(y)), y], EPS, None))) for p in probas])


def gaussian_log_likelihood(preds: list[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Per member: the Gaussian log-likelihood of y with the member's own MSE (per target) as variance."""
    out = []
    for f in preds:
        var = np.clip(np.mean((f - y) ** 2, axis=0), EPS, None)   # (k,)
        out.append(float(np.sum(-0.5 * len(y) * (np.log(2 * np.pi * var) + 1.0))))
    return np.array(out)


def bayes_weights(log_likelihood: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(log_likelihood, dtype=np.float64) / temperature
    z = z - z.max()   # the softmax is shift-invariant; this keeps exp() in range
    w = np.exp(z)
    return w / w.sum()


# ---------------------------------------------------------------------------------------------
# Stacking
# ---------------------------------------------------------------------------------------------

def stack_features(probas: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(probas, axis=1)


def fit_stack_classifier(val_probas: list[np.ndarray], y_val: np.ndarray, n_classes: int, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    meta = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    meta.fit(stack_features(val_probas), y_val)
    return meta


def stack_classifier_proba(meta, probas: list[np.ndarray], n_classes: int) -> np.ndarray:
    proba = meta.predict_proba(stack_features(probas))
    full = np.zeros((len(proba), n_classes))
    full[:, np.asarray(meta.classes_, dtype=np.int64)] = proba   # a class absent from validation gets 0
    return full


def fit_stack_regressor(val_preds: list[np.ndarray], y_val: np.ndarray, alpha: float):
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(np.concatenate(val_preds, axis=1), y_val)


def stack_regressor_predict(meta, preds: list[np.ndarray]) -> np.ndarray:
    return np.asarray(meta.predict(np.concatenate(preds, axis=1)), dtype=np.float64).reshape(len(preds[0]), -1)
