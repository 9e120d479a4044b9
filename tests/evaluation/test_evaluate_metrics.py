"""compute_metrics against scikit-learn on many seeded random cases, plus the edge cases."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from danlu.errors import DataError, UserError
from danlu.evaluation import METRICS, PRIMARY_METRIC, compute_metrics, metric_direction


def _ours(task, y, scores, **kw):
    # Our metrics must be quiet: a warning every epoch would flood the log.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return compute_metrics(task, y, scores, **kw)


def _close(a, b, tol=1e-6):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _assert_same(ours: dict, expected: dict):
    assert set(ours) == set(expected), (sorted(ours), sorted(expected))
    for name, value in expected.items():
        assert isinstance(ours[name], float), name
        assert _close(ours[name], value), f"{name}: ours {ours[name]!r}, scikit-learn {value!r}"


# --- the classification oracle ------------------------------------------------------------------

def _sklearn_classification(y, proba):
    """Every classification metric from scikit-learn, with our documented AUC choice."""
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"accuracy": skm.accuracy_score(y, pred)}
        for average in ("macro", "micro"):
            p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=0)
            out.update({f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f})
        if n_classes == 2:
            p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average="binary", pos_label=1,
                                                             zero_division=0)
            out.update(precision=p, recall=r, f1=f)
        present = np.unique(y)
        if len(present) == n_classes:
            if n_classes == 2:
                out["roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
            else:
                out["roc_auc"] = skm.roc_auc_score(y, proba, multi_class="ovr", average="macro",
                                                   labels=list(range(n_classes)))
        elif len(present) >= 2 and n_classes > 2:
            # scikit-learn says NaN here; we average the one-vs-rest AUCs that are defined.
            out["roc_auc"] = np.mean([skm.roc_auc_score(y == c, proba[:, c]) for c in present])
        out["log_loss"] = skm.log_loss(y, proba, labels=list(range(n_classes)))
    return {k: float(v) for k, v in out.items()}


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _random_case(rng):
    """A random split: imbalanced, sometimes tied, perfect, or with a class never predicted."""
    n_classes = int(rng.integers(2, 7))
    n = int(rng.integers(1, 80))
    class_weights = rng.dirichlet(np.full(n_classes, 0.7))  # often very imbalanced
    y = rng.choice(n_classes, size=n, p=class_weights)
    kind = rng.choice(["plain", "ties", "perfect", "never_predicted"])
    if kind == "ties":
        # Rows drawn from a small pool of distinct rows: many tied scores in every column.
        pool = _softmax(rng.normal(size=(int(rng.integers(1, 4)), n_classes)))
        proba = pool[rng.integers(0, len(pool), size=n)]
    else:
        logits = rng.normal(scale=2.0, size=(n, n_classes))
        if kind == "perfect":
            logits[np.arange(n), y] += 20.0
        if kind == "never_predicted":
            logits[:, rng.integers(n_classes)] -= 50.0
        proba = _softmax(logits)
    return kind, y, proba


def test_classification_agrees_with_sklearn_on_random_cases():
    rng = np.random.default_rng(0)
    seen = {"ties": 0, "perfect": 0, "never_predicted": 0, "binary": 0, "missing_class": 0, "one_class": 0}
    for _ in range(250):
        kind, y, proba = _random_case(rng)
        ours = _ours("classification", y, proba, n_classes=proba.shape[1])
        _assert_same(ours, _sklearn_classification(y, proba))
        if kind in seen:
            seen[kind] += 1
        n_present = len(np.unique(y))
        seen["binary"] += proba.shape[1] == 2
        seen["missing_class"] += 2 <= n_present < proba.shape[1]
        seen["one_class"] += n_present == 1
    # The loop must really have visited every awkward case it claims to cover.
    assert all(count >= 10 for count in seen.values()), seen


def test_classification_float32_scores_clip_like_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(50):
        _, y, proba = _random_case(rng)
        proba = proba.astype(np.float32)
        proba[rng.random(proba.shape) < 0.2] = 0.0  # exact zeros: the clip decides the loss
        ours = _ours("classification", y, proba)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rows no longer sum to one
            expected = skm.log_loss(y, proba, labels=list(range(proba.shape[1])))
        assert _close(ours["log_loss"], float(expected), tol=1e-5)


def test_perfect_classification():
    y = np.array([0, 1, 2, 2, 1, 0])
    proba = np.eye(3)[y]
    m = _ours("classification", y, proba)
    for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_micro", "roc_auc"):
        assert m[name] == 1.0, name
    # Probability 1 is clipped to 1 - eps, so the loss is tiny but not zero (scikit-learn too).
    assert 0 < m["log_loss"] < 1e-12
    assert _close(m["log_loss"], skm.log_loss(y, proba))


def test_class_never_predicted_scores_zero_precision():
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[.9, .1, 0], [.8, .2, 0], [.1, .9, 0], [.2, .8, 0], [.6, .4, 0], [.3, .7, 0]])
    m = _ours("classification", y, proba)
    # class 2 is never predicted: precision 0, recall 0 for it, no division warning.
    assert _close(m["precision_macro"], (2 / 3 + 2 / 3 + 0) / 3)
    assert _close(m["recall_macro"], (2 / 2 + 2 / 2 + 0) / 3)
    assert _close(m["accuracy"], 4 / 6)
    _assert_same(m, _sklearn_classification(y, proba))


def test_split_without_some_classes():
    # Four classes, but this split holds only 0 and 2.
    y = np.array([0, 2, 2, 0, 2])
    proba = _softmax(np.random.default_rng(3).normal(size=(5, 4)))
    m = _ours("classification", y, proba, n_classes=4)
    per_class = [skm.roc_auc_score(y == c, proba[:, c]) for c in (0, 2)]
    assert _close(m["roc_auc"], float(np.mean(per_class)))
    assert _close(m["log_loss"], skm.log_loss(y, proba, labels=[0, 1, 2, 3]))


def test_single_class_split_omits_roc_auc():
    y = np.array([1, 1, 1])
    proba = np.array([[.2, .8], [.6, .4], [.5, .5]])
    m = _ours("classification", y, proba)
    assert "roc_auc" not in m
    assert _close(m["log_loss"], skm.log_loss(y, proba, labels=[0, 1]))
    assert _close(m["recall"], 1 / 3)
    assert _close(m["precision"], 1.0)


def test_all_scores_tied_gives_auc_one_half():
    y = np.array([0, 1, 0, 1, 1])
    m = _ours("classification", y, np.full((5, 2), 0.5))
    assert m["roc_auc"] == 0.5
    assert m["accuracy"] == 0.4  # argmax of a tie is class 0


def test_binary_scores_may_be_one_column():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=40)
    p1 = rng.random(40)
    two_columns = _ours("classification", y, np.stack([1 - p1, p1], axis=1))
    assert _ours("classification", y, p1) == two_columns
    assert _ours("classification", y, p1[:, None], n_classes=2) == two_columns
    assert _close(two_columns["roc_auc"], skm.roc_auc_score(y, p1))


def test_torch_tensors_are_accepted():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=30)
    proba = _softmax(rng.normal(size=(30, 3)))
    expected = _ours("classification", y, proba)
    from_torch = _ours("classification", torch.tensor(y), torch.tensor(proba, requires_grad=True))
    assert from_torch == expected
    from_bf16 = _ours("classification", torch.tensor(y), torch.tensor(proba).bfloat16())
    assert set(from_bf16) == set(expected)  # bfloat16 has no numpy type: it goes through float32
    assert _close(from_bf16["roc_auc"], expected["roc_auc"], tol=0.05)

    target = rng.normal(size=(30, 2))
    prediction = rng.normal(size=(30, 2))
    assert _ours("regression", torch.tensor(target), torch.tensor(prediction)) == \
        _ours("regression", target, prediction)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_are_accepted():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, size=30)
    proba = _softmax(rng.normal(size=(30, 3)))
    on_gpu = _ours("classification", torch.tensor(y, device="cuda"), torch.tensor(proba, device="cuda"))
    assert on_gpu == _ours("classification", y, proba)


def test_nonfinite_scores_give_nan_not_an_error():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[.9, .1], [np.nan, np.nan], [.2, .8], [.7, .3]])
    m = _ours("classification", y, proba)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["log_loss"])
    assert 0.0 <= m["accuracy"] <= 1.0

    r = _ours("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, np.nan, 3.0]))
    assert all(math.isnan(value) for value in r.values())


@pytest.mark.parametrize("y, proba, n_classes, words", [
    ([0, 3], np.full((2, 3), 1 / 3), None, "label 3 is outside"),
    ([0, -1], np.full((2, 3), 1 / 3), None, "label -1 is outside"),
    ([0, 1.5], np.full((2, 3), 1 / 3), None, "integer class ids"),
    (["a", "b"], np.full((2, 3), 1 / 3), None, "integer class ids"),
    ([0, 1], np.full((2, 3), 1 / 3), 4, "n_classes=4"),
    ([0, 1], np.full(2, 0.5), 3, "one column"),
    ([0, 1, 1], np.full((2, 3), 1 / 3), None, "one class id per row"),
    ([], np.zeros((0, 3)), None, "empty split"),
])
def test_bad_classification_input_is_a_data_error(y, proba, n_classes, words):
    with pytest.raises(DataError, match=words) as caught:
        compute_metrics("classification", np.array(y), proba, n_classes=n_classes)
    assert "\n" not in str(caught.value)


def test_integral_float_and_bool_labels_are_accepted():
    proba = np.array([[.9, .1], [.2, .8], [.4, .6]])
    expected = _ours("classification", [0, 1, 0], proba)
    assert _ours("classification", np.array([0.0, 1.0, 0.0]), proba) == expected
    assert _ours("classification", np.array([False, True, False]), proba) == expected


def test_unknown_task_suggests_the_right_one():
    with pytest.raises(UserError, match="did you mean 'classification'"):
        compute_metrics("clasification", [0], [[1.0]])


# --- regression -------------------------------------------------------------------------------

def _sklearn_regression(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "mse": float(skm.mean_squared_error(y, p)),
            "rmse": float(skm.root_mean_squared_error(y, p)),
            "mae": float(skm.mean_absolute_error(y, p)),
            "r2": float(skm.r2_score(y, p)),
        }


def test_regression_agrees_with_sklearn_on_random_cases():
    rng = np.random.default_rng(10)
    seen = {"multi_output": 0, "constant": 0, "perfect": 0, "single_row": 0}
    for _ in range(300):
        n = int(rng.choice([1, 2, 3, rng.integers(4, 60)]))  # few rows are where formulas break
        k = int(rng.integers(1, 4))
        y = rng.normal(loc=rng.normal(scale=5), scale=rng.uniform(0.1, 10), size=(n, k))
        if rng.random() < 0.25:
            # Constant targets, with values a float holds exactly (see the test below for 0.1).
            y[:, rng.integers(k)] = float(rng.integers(-3, 4))
            seen["constant"] += 1
        p = y + rng.normal(scale=rng.uniform(0.01, 5), size=(n, k))
        if rng.random() < 0.2:
            p = y.copy()
            seen["perfect"] += 1
        if k == 1 and rng.random() < 0.5:
            y, p = y[:, 0], p[:, 0]
        seen["multi_output"] += k > 1
        seen["single_row"] += n == 1
        _assert_same(_ours("regression", y, p), _sklearn_regression(y, p))
    assert all(count >= 3 for count in seen.values()), seen


def test_regression_r2_of_constant_target_follows_sklearn():
    y = np.full(6, 3.0)
    assert _ours("regression", y, y)["r2"] == skm.r2_score(y, y) == 1.0
    assert _ours("regression", y, y + 1)["r2"] == skm.r2_score(y, y + 1) == 0.0
    # Multi-output: a perfect constant column (1.0) averaged with a fitted one.
    y2 = np.stack([np.full(6, 2.0), np.arange(6.0)], axis=1)
    p2 = np.stack([np.full(6, 2.0), np.arange(6.0) + 0.5], axis=1)
    assert _close(_ours("regression", y2, p2)["r2"], skm.r2_score(y2, p2))


def test_regression_r2_of_constant_target_ignores_rounding_of_the_mean():
    # The mean of seven 0.1s is not exactly 0.1, and scikit-learn 1.9 then divides by ~1e-33
    # (R² about -5e29). A target whose values are all equal is constant: R² is 0.0 here.
    y = np.full(7, 0.1)
    assert _ours("regression", y, y + 0.01)["r2"] == 0.0
    assert _ours("regression", y, y)["r2"] == 1.0


def test_regression_single_output_shapes_are_interchangeable():
    rng = np.random.default_rng(11)
    y = rng.normal(size=20)
    p = rng.normal(size=20)
    flat = _ours("regression", y, p)
    assert _ours("regression", y, p[:, None]) == flat
    assert _ours("regression", y[:, None], p) == flat


def test_regression_rmse_averages_per_output():
    y = np.array([[0.0, 0.0], [0.0, 0.0]])
    p = np.array([[1.0, 3.0], [1.0, 3.0]])
    m = _ours("regression", y, p)
    assert m["mse"] == 5.0
    assert m["rmse"] == 2.0  # mean(1, 3), not sqrt(5): scikit-learn's uniform average
    assert m["mae"] == 2.0


@pytest.mark.parametrize("y, p, words", [
    (np.zeros((4, 2)), np.zeros((4, 3)), "one output per target column"),
    (np.zeros(4), np.zeros(5), "one output per target column"),
    (np.zeros((4, 2, 2)), np.zeros((4, 2, 2)), r"\(N,\) or \(N, k\)"),
    (np.zeros(0), np.zeros(0), "empty split"),
])
def test_bad_regression_input_is_a_data_error(y, p, words):
    with pytest.raises(DataError, match=words):
        compute_metrics("regression", y, p)


# --- names and directions -----------------------------------------------------------------------

def test_every_metric_has_a_direction():
    assert metric_direction("accuracy") == "max"
    assert metric_direction("r2") == "max"
    assert metric_direction("roc_auc") == "max"
    for name in ("loss", "log_loss", "mse", "rmse", "mae"):
        assert metric_direction(name) == "min", name
    for names in METRICS.values():
        for name in names:
            assert metric_direction(name) in ("max", "min")


def test_direction_ignores_split_prefix_and_knows_losses():
    assert metric_direction("val_accuracy") == "max"
    assert metric_direction("test_f1_macro") == "max"
    assert metric_direction("val_loss") == "min"
    assert metric_direction("train_loss_running_mean") == "min"
    assert metric_direction("validation_mae") == "min"


def test_unknown_metric_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserError, match="did you mean 'accuracy'"):
        metric_direction("val_acuracy")


def test_primary_metrics_are_computed_and_maximised():
    y = np.array([0, 1, 1])
    cls = _ours("classification", y, np.array([[.6, .4], [.3, .7], [.5, .5]]))
    reg = _ours("regression", np.array([1.0, 2.0, 3.0]), np.array([1.1, 1.9, 3.2]))
    assert PRIMARY_METRIC["classification"] in cls and PRIMARY_METRIC["regression"] in reg
    assert set(cls) <= set(METRICS["classification"]) and set(reg) == set(METRICS["regression"])
    assert {metric_direction(m) for m in PRIMARY_METRIC.values()} == {"max"}


def test_module_does_not_import_torch():
    code = "import sys, danlu.evaluation; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
