"""The combination rules on plain arrays, against brute force and textbook formulas."""
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression, Ridge

from danlu.combine import (bayes_weights, classification_log_likelihood, fit_simplex_weights, gaussian_log_likelihood,
                           mix, vote, weighted_classification, weighted_regression)
from danlu.combine._methods import (fit_stack_classifier, fit_stack_regressor, log_loss_and_grad, mse_and_grad,
                                    stack_classifier_proba)


def _random_probas(rng, m, n, c, sharp=2.0):
    z = rng.normal(size=(m, n, c)) * sharp
    p = np.exp(z)
    return list(p / p.sum(-1, keepdims=True))


def test_vote_is_the_majority_and_ties_go_to_the_higher_mean_probability():
    a = np.array([[0.6, 0.4, 0.0], [0.1, 0.5, 0.4]])
    b = np.array([[0.7, 0.3, 0.0], [0.1, 0.1, 0.8]])
    c = np.array([[0.2, 0.8, 0.0], [0.0, 0.45, 0.55]])
    scores = vote([a, b, c])
    assert scores.argmax(1).tolist() == [0, 2]                      # 2 votes beat 1
    assert np.allclose(scores.sum(1), 1.0)
    # a 1-1 tie between classes 1 and 2: class 2 has the higher mean probability (0.35 vs 0.3)
    tie = vote([np.array([[0.2, 0.5, 0.3]]), np.array([[0.0, 0.1, 0.9]])])
    assert tie.argmax(1).tolist() == [2]
    assert tie[0, 1] == pytest.approx(0.5, abs=1e-5) and tie[0, 2] == pytest.approx(0.5, abs=1e-5)


def test_gradients_of_the_weight_objectives_match_finite_differences():
    rng = np.random.default_rng(0)
    picked = rng.uniform(0.05, 1, size=(3, 40))
    preds, y = rng.normal(size=(3, 40, 2)), rng.normal(size=(40, 2))
    w = np.array([0.2, 0.5, 0.3])
    for fn in (lambda v: log_loss_and_grad(v, picked), lambda v: mse_and_grad(v, preds, y)):
        _, grad = fn(w)
        numeric = [(fn(w + 1e-6 * e)[0] - fn(w - 1e-6 * e)[0]) / 2e-6 for e in np.eye(3)]
        assert np.allclose(grad, numeric, atol=1e-6)


def test_fitted_weights_are_as_good_as_a_brute_force_search_of_the_simplex():
    rng = np.random.default_rng(1)
    probas = _random_probas(rng, 3, 200, 4)
    y = rng.integers(0, 4, size=200)
    w = weighted_classification(probas, y)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    picked = np.stack([p[np.arange(200), y] for p in probas])
    found = log_loss_and_grad(w, picked)[0]
    grid = [np.array([a, b, 1 - a - b]) for a in np.linspace(0, 1, 101) for b in np.linspace(0, 1, 101) if a + b <= 1]
    assert found <= min(log_loss_and_grad(g, picked)[0] for g in grid) + 1e-9
    for j in range(3):                                                   # never worse than one member alone
        assert found <= log_loss_and_grad(np.eye(3)[j], picked)[0] + 1e-12


def test_regression_weights_are_constrained_least_squares():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(300, 1))
    preds = [y + rng.normal(scale=s, size=y.shape) for s in (0.3, 0.6, 2.0)]
    w = weighted_regression(preds, y)
    # independent errors: the optimum is proportional to 1/variance
    inv = np.array([1 / 0.09, 1 / 0.36, 1 / 4.0])
    assert np.allclose(w, inv / inv.sum(), atol=0.08)
    assert np.mean((mix(preds, w) - y) ** 2) <= min(np.mean((p - y) ** 2) for p in preds)


def test_when_one_member_is_best_everywhere_it_gets_all_the_weight():
    y = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[y] * 0.98 + 0.01 / 1.5
    noisy = np.full((6, 3), 1 / 3)
    w, _ = fit_simplex_weights(lambda v: log_loss_and_grad(v, np.stack([perfect[np.arange(6), y],
                                                                        noisy[np.arange(6), y]])), 2)
    assert w[0] == pytest.approx(1.0, abs=1e-6)


def test_bayes_weights_are_the_posterior_over_members():
    ll = np.array([-10.0, -11.0, -14.0])
    w = bayes_weights(ll)
    assert np.allclose(w, np.exp(ll) / np.exp(ll).sum())
    assert np.allclose(bayes_weights(ll + 1000.0), w)                  # no overflow: shift-invariant
    assert np.allclose(bayes_weights(ll, temperature=1e9), 1 / 3)      # hot: uniform
    warm = bayes_weights(ll, temperature=4.0)
    assert warm[2] > w[2] and warm[0] < w[0]
    probas = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.5, 0.5], [0.5, 0.5]])]
    assert np.allclose(classification_log_likelihood(probas, np.array([0, 1])),
                       [math.log(0.9) + math.log(0.8), 2 * math.log(0.5)])


def test_gaussian_log_likelihood_uses_each_members_own_error_variance():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(50, 1))
    f = y + rng.normal(scale=0.5, size=y.shape)
    sigma = math.sqrt(np.mean((f - y) ** 2))
    assert gaussian_log_likelihood([f], y)[0] == pytest.approx(norm.logpdf(y, loc=f, scale=sigma).sum())


def test_stacking_is_a_logistic_regression_on_validation_probabilities():
    rng = np.random.default_rng(4)
    probas = _random_probas(rng, 2, 120, 3)
    y = rng.integers(0, 3, size=120)
    meta = fit_stack_classifier(probas, y, 3, c=1.0, seed=0)
    oracle = LogisticRegression(C=1.0, max_iter=5000).fit(np.concatenate(probas, 1), y)
    assert np.allclose(stack_classifier_proba(meta, probas, 3), oracle.predict_proba(np.concatenate(probas, 1)))
    # a class never seen in validation gets probability 0 and the columns still line up
    meta = fit_stack_classifier(probas, np.where(y == 2, 1, y), 3, c=1.0, seed=0)
    out = stack_classifier_proba(meta, probas, 3)
    assert out.shape == (120, 3) and np.all(out[:, 2] == 0)
    preds, target = [rng.normal(size=(80, 1)) for _ in range(2)], rng.normal(size=(80, 1))
    ridge = fit_stack_regressor(preds, target, alpha=2.0)
    assert np.allclose(ridge.coef_, Ridge(alpha=2.0).fit(np.concatenate(preds, 1), target).coef_)
