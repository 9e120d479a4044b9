"""Classical kinds: metrics against the same scikit-learn estimator fitted directly, the run
directory, the save/load round trip and the recipe keys."""
import json

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import CalibratedClassifierCV
from sklearn.cluster import KMeans
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import (HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier,
                              RandomForestRegressor)
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import danlu
from danlu import training as runs
from danlu.classical import CLASSICAL_KINDS, load_estimator
from danlu.errors import DataError, RecipeError
from danlu.models import build_model, registered_params

# (kind, data set, recipe keys, the estimator scikit-learn would fit for them)
CLASSIFIERS = [
    ("decision_tree", "iris", {"max_depth": 3}, lambda: DecisionTreeClassifier(max_depth=3, random_state=0)),
    ("random_forest", "breast_cancer", {"n_estimators": 15, "max_depth": 4},
     lambda: RandomForestClassifier(n_estimators=15, max_depth=4, n_jobs=1, random_state=0)),
    ("svm", "iris", {"C": 2.0},
     lambda: CalibratedClassifierCV(SVC(C=2.0, random_state=0), method="sigmoid", cv=5, ensemble=False)),
    ("gradient_boosting", "iris", {"n_estimators": 15},
     lambda: HistGradientBoostingClassifier(max_iter=15, early_stopping=False, random_state=0)),
]
REGRESSORS = [
    ("decision_tree", {"max_depth": 4}, lambda: DecisionTreeRegressor(max_depth=4, random_state=0)),
    ("random_forest", {"n_estimators": 10}, lambda: RandomForestRegressor(n_estimators=10, n_jobs=1, random_state=0)),
    ("svm", {"C": 3.0, "epsilon": 0.2},
     lambda: TransformedTargetRegressor(SVR(C=3.0, epsilon=0.2), transformer=StandardScaler())),
    ("gradient_boosting", {"n_estimators": 20, "learning_rate": 0.05},
     lambda: HistGradientBoostingRegressor(max_iter=20, learning_rate=0.05, early_stopping=False, random_state=0)),
]


def _rows(X):
    return X.numpy().reshape(len(X), -1)


@pytest.mark.parametrize("kind,data,keys,oracle", CLASSIFIERS, ids=[c[0] for c in CLASSIFIERS])
def test_classifier_metrics_agree_with_sklearn_fitted_directly(kind, data, keys, oracle, classical_recipe, tmp_path):
    recipe = classical_recipe(kind, data, **keys)
    run = danlu.train(recipe, tmp_path / "run")
    splits = runs.prepare_run_data(recipe).splits
    Xtr, ytr = splits["train"]
    est = oracle().fit(_rows(Xtr), ytr.numpy())
    for split in ("validation", "test"):
        X, y = splits[split]
        proba = est.predict_proba(_rows(X))
        y = y.numpy()
        labels = list(range(proba.shape[1]))
        got = run.summary[split]
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, est.predict(_rows(X))), abs=1e-12)
        assert got["f1_macro"] == pytest.approx(skm.f1_score(y, proba.argmax(1), average="macro"), abs=1e-9)
        assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=labels), abs=1e-9)
        if proba.shape[1] == 2:
            assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=1e-9)
        else:
            assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=1e-9)
        assert got["loss"] == pytest.approx(got["log_loss"], abs=1e-9)   # the loss of a classifier is its log loss
    # the saved estimator predicts exactly what the one fitted directly does
    model, _pipeline, meta, _recipe = runs.load_model(run.path)
    X = _rows(splits["test"][0])
    np.testing.assert_array_equal(model.estimator.predict_proba(X), est.predict_proba(X))
    assert meta["classical"] is True and meta["kind"] == kind


@pytest.mark.parametrize("kind,keys,oracle", REGRESSORS, ids=[r[0] for r in REGRESSORS])
def test_regressor_metrics_agree_with_sklearn_fitted_directly(kind, keys, oracle, classical_recipe, tmp_path):
    recipe = classical_recipe(kind, "diabetes", **keys)
    run = danlu.train(recipe, tmp_path / "run")
    splits = runs.prepare_run_data(recipe).splits
    est = oracle().fit(_rows(splits["train"][0]), splits["train"][1].numpy().astype(np.float64))
    X, y = splits["test"]
    pred = est.predict(_rows(X))
    y = y.numpy().astype(np.float64)
    got = run.summary["test"]
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), abs=1e-9)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, pred), rel=1e-9)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-9)
    assert got["loss"] == pytest.approx(got["mse"], rel=1e-9)


def test_kmeans_reports_cluster_figures_that_agree_with_sklearn(classical_recipe, tmp_path):
    recipe = classical_recipe("kmeans", "iris", n_init=3)
    run = danlu.train(recipe, tmp_path / "run")
    splits = runs.prepare_run_data(recipe).splits
    Xtr = _rows(splits["train"][0])
    est = KMeans(n_clusters=3, n_init=3, random_state=0).fit(Xtr)      # n_clusters: the number of classes
    assert run.summary["train"]["inertia"] == pytest.approx(est.inertia_, rel=1e-4)
    X, y = splits["test"]
    clusters = est.predict(_rows(X))
    test = run.summary["test"]
    assert test["adjusted_rand"] == pytest.approx(skm.adjusted_rand_score(y.numpy(), clusters), abs=1e-12)
    assert test["silhouette"] == pytest.approx(skm.silhouette_score(_rows(X), clusters), abs=1e-6)
    assert test["adjusted_rand"] > 0.4          # iris clusters do follow the species
    assert runs.evaluate(run.path, "test")["test"] == test


def test_run_directory_of_a_classical_run(classical_recipe, tmp_path):
    run = danlu.train(classical_recipe("random_forest", n_estimators=5), tmp_path / "run")
    names = {p.name for p in run.path.iterdir()}
    assert {"recipe.yaml", "pipeline.json", "pipeline.safetensors", "model.skops", "model.json", "summary.json",
            "metrics.jsonl"} <= names
    assert not any(name.endswith((".pkl", ".pickle", ".joblib")) for name in names)
    meta = json.loads((run.path / "model.json").read_text())
    assert meta["classical"] is True and meta["estimator"].endswith("RandomForestClassifier")
    lines = (run.path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["val_accuracy"] == run.summary["validation"]["accuracy"]
    summary = json.loads((run.path / "summary.json").read_text())
    assert set(summary) == {"train", "validation", "test", "run"} and summary["run"]["size"]["trees"] == 5
    # eval from disk gives the very figures of the fit
    assert runs.evaluate(run.path, "all") == {k: summary[k] for k in ("train", "validation", "test")}


def test_same_seed_same_model_other_seed_other_model(classical_recipe, tmp_path):
    a = danlu.train(classical_recipe("random_forest", n_estimators=5), tmp_path / "a")
    b = danlu.train(classical_recipe("random_forest", n_estimators=5), tmp_path / "b")
    c = danlu.train(classical_recipe("random_forest", n_estimators=5).with_overrides({"seed": 1}), tmp_path / "c")
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    pa, pb, pc = (load_estimator(r.path / "model.skops").predict_proba(X) for r in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_classical_kinds_and_their_keys_are_in_the_registry(classical_recipe, tmp_path):
    params = registered_params()
    assert CLASSICAL_KINDS <= set(params)
    assert {"max_depth", "n_estimators", "max_features"} <= set(params["random_forest"])
    assert {"C", "kernel", "gamma"} <= set(params["svm"])
    assert {"learning_rate", "n_estimators"} <= set(params["gradient_boosting"])
    assert "n_clusters" in params["kmeans"]
    recipe = classical_recipe("svm", C=0.5)
    assert recipe.model.kernel == "rbf" and recipe.model.C == 0.5
    with pytest.raises(RecipeError, match="did you mean 'n_estimators'"):
        classical_recipe("random_forest", n_estimator=5)
    with pytest.raises(RecipeError, match="model.C must be > 0"):
        classical_recipe("svm", C=0)
    with pytest.raises(RecipeError, match="kernel must be one of"):
        classical_recipe("svm", kernel="rfb")
    with pytest.raises(RecipeError, match="scikit-learn model"):
        build_model(recipe.model, None, 3)


def test_bad_classical_settings_fail_before_anything_is_written(classical_recipe, tmp_path):
    # what the recipe alone refuses (the schema's unions) fails when the recipe is read, before train
    with pytest.raises(RecipeError, match="model.gamma must be scale, auto or a number"):
        classical_recipe("svm", gamma="wide")
    with pytest.raises(RecipeError, match=r"fraction of features, in \(0, 1\]"):
        classical_recipe("random_forest", max_features=1.5)
    cases = [
        (classical_recipe("decision_tree", criterion="squared_error"), RecipeError, "does not fit classification"),
        (classical_recipe("svm", calibration_folds=60), DataError, "fewer than model.calibration_folds"),
        (classical_recipe("random_forest").with_overrides({"data.augment.noise": 0.1}), RecipeError,
         "remove data.augment"),
    ]
    for i, (recipe, error, message) in enumerate(cases):
        with pytest.raises(error, match=message):
            danlu.train(recipe, tmp_path / f"run{i}")
        assert not (tmp_path / f"run{i}").exists()
