"""Metrics of your own: registered for a task, or given as callables from Python — checked against
scikit-learn, including on a real (tiny) digits model's predictions."""
import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, median_absolute_error, roc_auc_score

from danlu.errors import UserError
from danlu.evaluation._metrics import (
    Metric,
    compute_metrics,
    metric_direction,
    metric_names,
    metrics_from_callables,
    metrics_in_use,
    register_metric,
    registered_metrics,
    unregister_metric,
)


@pytest.fixture(autouse=True)
def clean_registry():
    before = set(registered_metrics())
    yield
    for name in set(registered_metrics()) - before:
        unregister_metric(name)


@pytest.fixture(scope="module")
def digits_predictions():
    """Class probabilities of a softmax regression trained for a moment on digits' training split."""
    from danlu.data import prepare

    prepared = prepare({"source": "sklearn", "name": "digits", "split": {"validation": 0.2, "test": 0.2}}, 0)
    Xtr, ytr = prepared.splits["train"]
    Xte, yte = prepared.splits["test"]
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(15):   # few steps, so the model is good but not perfect
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(Xtr.flatten(1)), ytr).backward()
        opt.step()
    with torch.no_grad():
        proba = torch.softmax(model(Xte.flatten(1)), dim=1)
    return yte.numpy(), proba.numpy()


def test_registered_metric_equals_sklearn_on_a_digits_models_predictions(digits_predictions):
    y, proba = digits_predictions
    register_metric("balanced_accuracy", balanced_accuracy_score, task="classification")
    figures = compute_metrics("classification", y, proba, n_classes=10)
    expected = balanced_accuracy_score(y, proba.argmax(axis=1))
    assert 0.5 < expected < 1.0   # a real model, neither trivial nor perfect
    assert figures["balanced_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert figures["accuracy"] == pytest.approx(float(np.mean(proba.argmax(axis=1) == y)))   # built-ins stay
    assert metric_direction("val_balanced_accuracy") == "max"   # an early-stopping monitor
    assert "balanced_accuracy" in metric_names("classification")
    assert "balanced_accuracy" not in metric_names("regression")
    assert "balanced_accuracy" not in compute_metrics("regression", np.arange(4.0), np.arange(4.0) + 1)


def test_scores_metrics_get_probabilities_as_sklearn_scorers_take_them(digits_predictions):
    y, proba = digits_predictions
    register_metric("auc_ovo", lambda t, p: roc_auc_score(t, p, multi_class="ovo"), task="classification",
                    needs="scores")
    figures = compute_metrics("classification", y, proba, n_classes=10)
    assert figures["auc_ovo"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovo"), abs=1e-12)
    # binary: the probability of class id 1, (N,), as predict_proba(X)[:, 1]
    rng = np.random.default_rng(0)
    yb, pb = rng.integers(0, 2, 80), rng.random(80)
    register_metric("auc_binary", roc_auc_score, task="classification", needs="scores")
    for scores in (pb, np.stack([1 - pb, pb], axis=1)):
        figures = compute_metrics("classification", yb, scores)
        assert figures["auc_binary"] == pytest.approx(roc_auc_score(yb, pb), abs=1e-12)
        assert figures["auc_binary"] == pytest.approx(figures["roc_auc"], abs=1e-12)


def test_regression_metric_with_lower_is_better():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=50), rng.normal(size=50)
    register_metric("median_ae", median_absolute_error, task="regression", greater_is_better=False)
    assert compute_metrics("regression", y, p)["median_ae"] == pytest.approx(median_absolute_error(y, p))
    assert metric_direction("val_median_ae") == "min"
    y2, p2 = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    assert compute_metrics("regression", y2, p2)["median_ae"] == pytest.approx(median_absolute_error(y2, p2))


def test_callables_from_python_count_only_where_given():
    metrics = metrics_from_callables({"bacc": balanced_accuracy_score})
    y = np.array([0, 0, 1, 1, 1, 2])
    proba = np.eye(3)[[0, 1, 1, 1, 2, 2]]
    assert "bacc" not in compute_metrics("classification", y, proba)
    assert compute_metrics("classification", y, proba, extra=metrics)["bacc"] == pytest.approx(
        balanced_accuracy_score(y, proba.argmax(axis=1)))
    with metrics_in_use(metrics):
        assert "bacc" in compute_metrics("classification", y, proba)
        assert metric_direction("val_bacc") == "max"
    assert "bacc" not in compute_metrics("classification", y, proba)
    with pytest.raises(UserError, match="unknown metric 'val_bacc'"):
        metric_direction("val_bacc")


def test_a_metric_object_carries_its_options():
    worst = Metric("max_error", lambda t, p: float(np.max(np.abs(t - p))), task="regression", greater_is_better=False)
    with metrics_in_use(metrics_from_callables({"max_error": worst})):
        assert metric_direction("test_max_error") == "min"
        assert compute_metrics("regression", np.zeros(3), np.array([0.5, -2.0, 1.0]))["max_error"] == 2.0


@pytest.mark.parametrize("fn, message", [
    (lambda t, p: float("nan"), r"metric 'bad' \(.*<lambda>\) returned nan on 6 rows; it must be a finite number"),
    (lambda t, p: "0.9", "must return a number, got str"),
    (lambda t, p: [1.0, 2.0], "must return a number, got list"),
    (lambda t, p: True, "must return a number, got bool"),
    (lambda t, p: 1 / 0, r"fails on 6 rows: ZeroDivisionError: division by zero; fix the function"),
])
def test_a_bad_metric_value_is_a_one_line_error_naming_it(fn, message):
    y = np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(UserError, match=message) as err:
        compute_metrics("classification", y, np.eye(3)[y], extra=metrics_from_callables({"bad": fn}))
    assert "\n" not in str(err.value)


def test_numpy_and_tensor_scalars_are_numbers():
    y = np.array([0, 1, 1, 0])
    extra = metrics_from_callables({"a": lambda t, p: np.float32(0.25), "b": lambda t, p: torch.tensor([0.5]),
                                    "c": lambda t, p: np.array(3)})
    figures = compute_metrics("classification", y, np.array([0.1, 0.9, 0.8, 0.3]), extra=extra)
    assert (figures["a"], figures["b"], figures["c"]) == (0.25, 0.5, 3.0)


def test_a_diverged_model_gets_nan_for_scores_metrics_without_calling_them():
    calls = []
    register_metric("auc_mine", lambda t, p: calls.append(1) or 0.5, task="classification", needs="scores")
    figures = compute_metrics("classification", np.array([0, 1, 1]), np.array([np.nan, 0.2, 0.3]))
    assert np.isnan(figures["auc_mine"]) and np.isnan(figures["roc_auc"]) and not calls


@pytest.mark.parametrize("name, kwargs, message", [
    ("accuracy", {"task": "classification"}, "is a built-in metric"),
    ("loss", {"task": None}, "is a built-in metric"),
    ("val_bacc", {"task": "classification"}, "split prefix"),
    ("my metric", {"task": None}, "identifier"),
    ("bacc", {"task": "ranking"}, "task must be"),
    ("bacc", {"task": "classification", "needs": "probabilities"}, "needs must be 'labels' or 'scores'"),
])
def test_bad_registrations_are_refused(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        register_metric(name, balanced_accuracy_score, **kwargs)
    with pytest.raises(UserError, match=message):
        metrics_from_callables({name: Metric(name, balanced_accuracy_score, **kwargs)})


def test_duplicates_and_bad_mappings():
    register_metric("bacc", balanced_accuracy_score, task="classification")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("bacc", balanced_accuracy_score, task="classification")
    with pytest.raises(UserError, match="already registered"):
        with metrics_in_use(metrics_from_callables({"bacc": balanced_accuracy_score})):
            pass
    assert registered_metrics("classification") == ("bacc",)   # the failed block left it as it was
    with pytest.raises(UserError, match="metrics must be a mapping"):
        metrics_from_callables([balanced_accuracy_score])
    with pytest.raises(UserError, match="must be a callable"):
        metrics_from_callables({"x": 3})


def digits_recipe(train=None):
    import danlu

    return danlu.Recipe.from_dict({
        "name": "digits_bacc", "seed": 0, "data": {"source": "sklearn", "name": "digits"},
        "model": {"kind": "logistic"}, "train": {"epochs": 2, "batch_size": 128, **(train or {})},
        "output": {"progress": "none"}})


def test_a_registered_metric_is_in_a_digits_runs_figures_and_equals_sklearn_on_its_predictions(tmp_path):
    import json

    import danlu
    from danlu.data import prepare

    register_metric("balanced_accuracy", balanced_accuracy_score, task="classification")
    recipe = digits_recipe()
    run_dir = tmp_path / "run"
    danlu.train(recipe, run_dir)
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all("val_balanced_accuracy" in e for e in epochs if "val_loss" in e)
    summary = json.loads((run_dir / "summary.json").read_text())
    model, _pipeline, _meta, saved = danlu.load_model(run_dir)
    X, y = prepare(saved.data, saved.seed).splits["test"]
    with torch.no_grad():
        predicted = model(X).argmax(dim=1).numpy()
    expected = balanced_accuracy_score(y.numpy(), predicted)
    assert 0.2 < expected < 1.0
    assert summary["test"]["balanced_accuracy"] == pytest.approx(expected, abs=1e-9)


def test_a_registered_metric_can_be_the_early_stopping_monitor(tmp_path):
    import danlu

    register_metric("balanced_accuracy", balanced_accuracy_score, task="classification")
    recipe = digits_recipe({"early_stopping": {"monitor": "val_balanced_accuracy", "patience": 0}})
    danlu.train(recipe, tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").is_file()


def test_the_conformance_check_tries_every_task_a_metric_is_for():
    from danlu.evaluation._metrics import check_metric

    register_metric("balanced_accuracy", balanced_accuracy_score, task="classification")
    check_metric("balanced_accuracy")
    check_metric(Metric("median_ae", median_absolute_error, task="regression", greater_is_better=False))
    check_metric(Metric("auc_ovr", lambda t, p: roc_auc_score(t, p, multi_class="ovr"), task="classification",
                        needs="scores"))
    # for either task, but only a classification metric
    with pytest.raises(UserError, match=r"metric 'bacc_any' \(.*balanced_accuracy_score\) fails on 24 rows"):
        check_metric(Metric("bacc_any", balanced_accuracy_score))
    with pytest.raises(UserError, match="metric 'nothing' is not registered"):
        check_metric("nothing")
