"""Baselines agree with sklearn.dummy; McNemar with scipy; the paired bootstrap with a hand loop."""
import numpy as np
import pytest
from scipy import stats
from sklearn import datasets
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split

import danlu
from danlu import training as runs
from danlu.experiments import evaluate_with_baseline
from danlu.evaluation import (baseline_metrics, baseline_scores, compute_metrics, mcnemar,
                            paired_bootstrap, significance)


def _split(name, seed=0):
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    strat = y if name != "diabetes" else None
    return train_test_split(X, y, test_size=0.3, random_state=seed, stratify=strat)


@pytest.mark.parametrize("name", ["iris", "breast_cancer", "wine"])
def test_classification_baselines_match_dummy_classifier(name):
    X_tr, X_te, y_tr, y_te = _split(name)
    n_classes = len(np.unique(y_tr))
    got = baseline_metrics("classification", y_tr, y_te, n_classes, seed=3)
    prior = DummyClassifier(strategy="prior").fit(X_tr, y_tr)
    frequent = DummyClassifier(strategy="most_frequent").fit(X_tr, y_tr)
    assert got["majority"]["accuracy"] == pytest.approx(frequent.score(X_te, y_te), abs=1e-12)
    assert got["majority"] == pytest.approx(compute_metrics("classification", y_te, prior.predict_proba(X_te),
                                                            n_classes=n_classes))
    stratified = DummyClassifier(strategy="stratified", random_state=3).fit(X_tr, y_tr)
    draws = baseline_scores("classification", y_tr, len(y_te), n_classes, seed=3)["stratified"]
    np.testing.assert_array_equal(draws, stratified.predict_proba(X_te))  # draw for draw
    assert got["stratified"]["accuracy"] == pytest.approx(
        DummyClassifier(strategy="stratified", random_state=3).fit(X_tr, y_tr).score(X_te, y_te), abs=1e-12)


def test_regression_baseline_matches_dummy_regressor():
    X_tr, X_te, y_tr, y_te = _split("diabetes")
    got = baseline_metrics("regression", y_tr, y_te)
    dummy = DummyRegressor().fit(X_tr, y_tr)
    assert set(got) == {"mean"}
    assert got["mean"] == pytest.approx(compute_metrics("regression", y_te, dummy.predict(X_te)))
    assert got["mean"]["r2"] == pytest.approx(dummy.score(X_te, y_te), abs=1e-12)
    two = baseline_scores("regression", np.stack([y_tr, 2 * y_tr], 1), 5)["mean"]
    np.testing.assert_allclose(two, np.tile([y_tr.mean(), 2 * y_tr.mean()], (5, 1)))


@pytest.mark.parametrize("b,c", [(0, 0), (3, 0), (7, 2), (12, 12), (5, 19), (30, 12), (100, 70), (40, 41)])
def test_mcnemar_matches_scipy(b, c):
    # b rows only the model gets right, c rows only the baseline, plus agreeing rows
    model = np.r_[np.ones(b), np.zeros(c), np.ones(10), np.zeros(6)].astype(bool)
    base = np.r_[np.zeros(b), np.ones(c), np.ones(10), np.zeros(6)].astype(bool)
    got = mcnemar(model, base)
    assert (got["b"], got["c"]) == (b, c)
    n = b + c
    if n == 0:
        assert got["p_value"] == 1.0
    elif n < 25:
        assert got["method"] == "exact"
        assert got["p_value"] == pytest.approx(stats.binomtest(b, n, 0.5).pvalue, rel=1e-12)
    else:
        stat = (abs(b - c) - 1) ** 2 / n
        assert got["method"] == "chi2" and got["statistic"] == pytest.approx(stat)
        assert got["p_value"] == pytest.approx(stats.chi2.sf(stat, 1), rel=1e-9)


def test_bootstrap_accuracy_matches_a_hand_loop():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 90)
    model = np.eye(3)[np.where(rng.random(90) < 0.8, y, (y + 1) % 3)]
    base = np.tile([0.5, 0.3, 0.2], (90, 1))
    got = paired_bootstrap("classification", y, model, base, "accuracy", seed=11, n_boot=500)
    idx = np.random.default_rng(11).integers(0, 90, size=(500, 90))
    diffs = np.array([accuracy_score(y[i], model[i].argmax(1)) - accuracy_score(y[i], base[i].argmax(1))
                      for i in idx])
    observed = accuracy_score(y, model.argmax(1)) - accuracy_score(y, base.argmax(1))
    assert got["difference"] == pytest.approx(observed)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))
    expected_p = (1 + np.sum(np.abs(diffs - observed) >= abs(observed) - 1e-12)) / 501
    assert got["p_value"] == pytest.approx(expected_p)
    assert got["p_value"] < 0.01 and got["ci_low"] > 0


def test_bootstrap_r2_matches_a_hand_loop():
    rng = np.random.default_rng(6)
    y = rng.normal(size=60)
    model = y + rng.normal(scale=0.8, size=60)
    base = np.full(60, 0.1)
    got = paired_bootstrap("regression", y, model, base, seed=2, n_boot=300)
    assert got["metric"] == "r2"
    idx = np.random.default_rng(2).integers(0, 60, size=(300, 60))
    diffs = np.array([r2_score(y[i], model[i]) - r2_score(y[i], base[i]) for i in idx])
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])))
    # a metric without a vectorised path takes the generic loop and agrees with it too
    mae = paired_bootstrap("regression", y, model, base, "mae", seed=2, n_boot=300)
    hand = np.array([np.abs(y[i] - model[i]).mean() - np.abs(y[i] - base[i]).mean() for i in idx])
    assert mae["ci_low"] == pytest.approx(np.quantile(hand, 0.025))


def test_significance_verdicts():
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    good = np.eye(2)[y] * 0.8 + 0.1
    prior = np.tile([0.5, 0.5], (100, 1))
    prior[:, 0] += 1e-9  # ties go to class 0, like the majority baseline
    out = significance("classification", y, good, prior, seed=0, n_boot=300)
    assert out["mcnemar"]["b"] == 50 and out["p_value"] < 0.001
    assert out["verdict"] == "significantly better than the baseline (McNemar p<0.001)"
    worse = significance("classification", y, prior, good, seed=0, n_boot=300)
    assert worse["verdict"].startswith("significantly worse than the baseline")
    same = significance("classification", y, good, good, seed=0, n_boot=300)
    assert same["p_value"] == 1.0 and same["verdict"].startswith("not significantly different")
    reg = significance("regression", np.arange(40.0), np.arange(40.0) + 0.1, np.full(40, 20.0), n_boot=300)
    assert reg["bootstrap"]["difference"] > 0.9 and reg["verdict"].startswith("significantly better")


def test_evaluate_with_baseline_on_a_run(tmp_path):
    recipe = danlu.Recipe.from_dict({
        "data": {"source": "sklearn", "name": "breast_cancer"}, "model": {"kind": "logistic"},
        "loss": {"kind": "bce"}, "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
        "train": {"epochs": 3, "batch_size": 32}, "output": {"progress": "none"}})
    run = danlu.train(recipe, tmp_path / "run", progress="none")
    got = evaluate_with_baseline(run.path, "test", n_boot=300)
    assert got["model"] == pytest.approx(runs.evaluate(run.path, "test")["test"])
    from danlu.training import prepare_run_data as _prepare_data

    prepared = _prepare_data(recipe)
    (X_tr, y_tr), (X_te, y_te) = prepared.splits["train"], prepared.splits["test"]
    dummy = DummyClassifier(strategy="most_frequent").fit(X_tr.numpy(), y_tr.numpy())
    assert got["baseline"]["majority"]["accuracy"] == pytest.approx(dummy.score(X_te.numpy(), y_te.numpy()))
    assert got["against"] == "majority"
    assert got["model"]["accuracy"] > got["baseline"]["majority"]["accuracy"]
    assert got["significance"]["verdict"].startswith("significantly better than the baseline (McNemar p")
