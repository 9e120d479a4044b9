"""Curve points agree with scikit-learn: ROC, precision-recall, AUC, confusion matrix, residuals."""
import numpy as np
import pytest
from sklearn import metrics as skm

from danlu.errors import DataError
from danlu.evaluation import confusion, pr_curve_points, residuals, roc_curve_points


def _binary_cases(n_cases=60):
    rng = np.random.default_rng(0)
    for _ in range(n_cases):
        n = int(rng.integers(4, 80))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        decimals = int(rng.integers(1, 4))  # few decimals: many tied scores
        yield y, np.round(rng.random(n), decimals)


@pytest.mark.parametrize("drop", [True, False])
def test_binary_roc_points_match_sklearn(drop):
    for y, s in _binary_cases():
        got = roc_curve_points(y, s, drop_intermediate=drop)
        assert got["average"] == "binary" and list(got["per_class"]) == [1]
        curve = got["per_class"][1]
        fpr, tpr, thresholds = skm.roc_curve(y, s, drop_intermediate=drop)
        np.testing.assert_allclose(curve["fpr"], fpr, rtol=0, atol=1e-12)
        np.testing.assert_allclose(curve["tpr"], tpr, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(curve["thresholds"], thresholds)
        assert curve["auc"] == pytest.approx(skm.auc(fpr, tpr), abs=1e-12)
        assert got["auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize("drop", [False, True])
def test_binary_pr_points_match_sklearn(drop):
    for y, s in _binary_cases():
        curve = pr_curve_points(y, s, drop_intermediate=drop)["per_class"][1]
        precision, recall, thresholds = skm.precision_recall_curve(y, s, drop_intermediate=drop)
        np.testing.assert_allclose(curve["precision"], precision, rtol=0, atol=1e-12)
        np.testing.assert_allclose(curve["recall"], recall, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(curve["thresholds"], thresholds)
        if not drop:
            assert curve["average_precision"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_two_column_probabilities_are_the_binary_case():
    y, s = next(_binary_cases())
    two = roc_curve_points(y, np.stack([1 - s, s], axis=1), 2)
    one = roc_curve_points(y, s)
    np.testing.assert_array_equal(two["per_class"][1]["tpr"], one["per_class"][1]["tpr"])


def test_multiclass_one_vs_rest_and_macro_auc():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 120)
    proba = rng.dirichlet(np.ones(4), size=120)
    proba[np.arange(120), y] += 0.3  # informative, not perfect
    proba /= proba.sum(axis=1, keepdims=True)
    roc = roc_curve_points(y, proba, 4)
    pr = pr_curve_points(y, proba, 4)
    assert roc["average"] == "macro" and sorted(roc["per_class"]) == [0, 1, 2, 3]
    for c in range(4):
        fpr, tpr, _ = skm.roc_curve(y == c, proba[:, c])
        np.testing.assert_allclose(roc["per_class"][c]["fpr"], fpr)
        np.testing.assert_allclose(roc["per_class"][c]["tpr"], tpr)
        p, r, _ = skm.precision_recall_curve(y == c, proba[:, c])
        np.testing.assert_allclose(pr["per_class"][c]["precision"], p)
        np.testing.assert_allclose(pr["per_class"][c]["recall"], r)
    assert roc["auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-12)
    assert pr["average_precision"] == pytest.approx(
        skm.average_precision_score(np.eye(4)[y], proba, average="macro"), abs=1e-12)


def test_class_without_rows_has_no_curve():
    y = np.array([0, 0, 1, 1, 0, 1])
    proba = np.full((6, 3), 1 / 3)
    proba[:, 0] += np.linspace(-0.1, 0.1, 6)
    proba[:, 1] -= np.linspace(-0.1, 0.1, 6)
    roc = roc_curve_points(y, proba, 3)
    assert sorted(roc["per_class"]) == [0, 1]  # class 2 never occurs: no rates to draw
    assert roc["auc"] == pytest.approx(np.mean([roc["per_class"][c]["auc"] for c in (0, 1)]))


def test_confusion_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 5, 200))
    got = confusion(y, pred, 5)
    np.testing.assert_array_equal(got["matrix"], skm.confusion_matrix(y, pred, labels=range(5)))
    np.testing.assert_allclose(got["normalized"], skm.confusion_matrix(y, pred, labels=range(5), normalize="true"))
    scores = np.eye(5)[pred] * 0.9 + 0.02
    np.testing.assert_array_equal(confusion(y, scores)["matrix"], got["matrix"])
    with pytest.raises(DataError):
        confusion([0, 1, 7], [0, 1, 2], 3)


def test_residuals():
    y = np.array([3.0, -0.5, 2.0, 7.0])
    p = np.array([2.5, 0.0, 2.0, 8.0])
    got = residuals(y, p.reshape(-1, 1))
    np.testing.assert_allclose(got["residual"], y - p)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert got["mean"] == pytest.approx(np.mean(y - p))
    two = residuals(np.stack([y, y], 1), np.stack([p, p + 1], 1))
    assert two["residual"].shape == (4, 2)
    with pytest.raises(DataError):
        residuals(y, p[:3])
