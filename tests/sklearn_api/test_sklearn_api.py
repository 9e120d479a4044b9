"""DanluClassifier / DanluRegressor in scikit-learn's tools, against scikit-learn's own models."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from danlu.sklearn import DanluClassifier, DanluRegressor

QUICK = dict(model__hidden=[16], train__epochs=10)


def test_overrides_are_parameters_that_clone_and_set_params_keep():
    clf = DanluClassifier(optimizer__lr=0.01, model__hidden=[32, 16], seed=3)
    assert clf.get_params() == {"recipe": None, "optimizer__lr": 0.01, "model__hidden": [32, 16], "seed": 3}
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    twin.set_params(optimizer__lr=0.1, train__epochs=5)
    recipe = twin.resolved_recipe()
    assert recipe.optimizer.lr == 0.1 and recipe.train.epochs == 5 and recipe.model.hidden == [32, 16]
    assert recipe.seed == 3
    assert "optimizer__lr=0.01" in repr(clf)


def test_bad_parameters_fail_in_fit_with_a_clear_message():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="did you mean 'optimizer'"):
        DanluClassifier(optimiser__lr=0.1).fit(X, y)
    with pytest.raises(ValueError, match="optimizer.lr must be > 0"):
        DanluClassifier(optimizer__lr=-1.0).fit(X, y)


def test_pipeline_cross_val_score_and_grid_search():
    X, y = load_iris(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("net", DanluClassifier(**QUICK))])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    search = GridSearchCV(pipe, {"net__optimizer__lr": [1e-4, 0.03]}, cv=3).fit(X, y)
    assert search.best_params_ == {"net__optimizer__lr": 0.03}     # 10 epochs at 1e-4 learn little
    assert search.best_estimator_.named_steps["net"].resolved_recipe().optimizer.lr == 0.03


def test_classifier_outputs_and_string_labels():
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    clf = DanluClassifier(**QUICK).fit(X, names)
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert (clf.predict(X) == clf.classes_[proba.argmax(axis=1)]).all()
    assert clf.n_features_in_ == 4 and clf.n_iter_ == 10 and len(clf.history_) == 10
    assert clf.score(X, names) > 0.85


def test_same_seed_same_model():
    X, y = load_iris(return_X_y=True)
    a = DanluClassifier(**QUICK).fit(X, y).predict_proba(X)
    b = DanluClassifier(**QUICK).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_logistic_recipe_agrees_with_scikit_learn_logistic_regression():
    X, y = load_breast_cancer(return_X_y=True)
    ours = DanluClassifier({"model": {"kind": "logistic"}, "loss": {"kind": "bce"},
                            "optimizer": {"kind": "adam", "lr": 0.02}, "data": {"split": {"validation": 0.0}},
                            "train": {"epochs": 60, "batch_size": 64, "early_stopping": {"enabled": False}}})
    ours.fit(X, y)
    oracle = LogisticRegression(C=1e4, max_iter=5000).fit(StandardScaler().fit_transform(X), y)
    theirs = oracle.predict(StandardScaler().fit(X).transform(X))
    assert (ours.predict(X) == theirs).mean() > 0.97
    assert abs(ours.score(X, y) - (theirs == y).mean()) < 0.02


def test_linear_recipe_agrees_with_least_squares_and_regressor_outputs():
    X, y = load_diabetes(return_X_y=True)
    ours = DanluRegressor({"model": {"kind": "linear"}, "optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9},
                           "schedule": {"kind": "cosine"}, "data": {"split": {"validation": 0.0}},
                           "train": {"epochs": 80, "batch_size": 64, "early_stopping": {"enabled": False}}})
    ours.fit(X, y)
    oracle = LinearRegression().fit(X, y)
    assert ours.score(X, y) == pytest.approx(oracle.score(X, y), abs=0.002)
    np.testing.assert_allclose(ours.predict(X), oracle.predict(X), atol=0.03 * y.std())
    two = DanluRegressor(**QUICK).fit(X, np.c_[y, -y])
    assert two.predict(X).shape == (len(X), 2) and two.n_outputs_ == 2


def test_early_stopping_holds_out_the_validation_fraction():
    X, y = load_iris(return_X_y=True)
    clf = DanluClassifier(model__hidden=[16], train__epochs=200, data__split__validation=0.2,
                          train__early_stopping__enabled=True, train__early_stopping__patience=3)
    clf.fit(X, y)
    assert "val_loss" in clf.history_[0]
    assert clf.n_iter_ < 200 and clf.stop_reason_ is not None


def test_a_recipe_file_is_a_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: digits, shape: [4]}\nmodel: {kind: mlp, hidden: [4]}\n"
                    "train: {epochs: 2, early_stopping: {enabled: false}}\n")
    X, y = load_iris(return_X_y=True)
    clf = DanluClassifier(str(path)).fit(X, y)
    assert clf.input_shape_ == (4,) and clf.predict(X).shape == (150,)
    with pytest.raises(ValueError, match="data.shape"):
        DanluClassifier(str(path)).fit(X[:, :3], y)
