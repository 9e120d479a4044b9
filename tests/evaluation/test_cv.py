"""Cross-validation: scikit-learn's folds, each fold a real run, mean/std of the per-fold figures,
failed folds reported, and the `danlu cv` command."""
import json

import numpy as np
import pytest
from sklearn import datasets
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import KFold, StratifiedKFold

import danlu
from danlu import training as runs
from danlu.data import labelled_rows
from danlu.errors import DataError, UserError
from danlu.experiments import cross_validate, fold_rows


def _recipe(tmp_path, **extra):
    data = {"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [8]},
            "optimizer": {"lr": 0.02}, "train": {"epochs": 3, "batch_size": 16}, "name": "iris_cv",
            "output": {"progress": "none", "runs_dir": str(tmp_path / "runs")}}
    data.update(extra)
    return danlu.Recipe.from_dict(data)


def test_folds_are_stratified_kfold_with_the_seed():
    _, y = datasets.load_breast_cancer(return_X_y=True)
    got = fold_rows(y, "classification", 4, seed=7)
    expected = StratifiedKFold(4, shuffle=True, random_state=7).split(np.zeros(len(y)), y)
    for rows, (train, test) in zip(got, expected):
        assert set(rows) == {"train", "test"}
        np.testing.assert_array_equal(rows["test"], np.sort(test))
        np.testing.assert_array_equal(rows["train"], np.sort(train))
    # the test folds partition the rows
    np.testing.assert_array_equal(np.sort(np.concatenate([r["test"] for r in got])), np.arange(len(y)))


def test_validation_share_and_regression_folds():
    _, y = datasets.load_iris(return_X_y=True)
    for rows in fold_rows(y, "classification", 3, seed=1, validation=0.2):
        assert len(rows["validation"]) == 20  # 20% of the 100 rows outside the test fold
        per_class = np.bincount(y[rows["validation"]], minlength=3)
        assert per_class.max() - per_class.min() <= 1  # stratified: 7, 7, 6 in some order
        everything = np.concatenate([rows["train"], rows["validation"], rows["test"]])
        np.testing.assert_array_equal(np.sort(everything), np.arange(150))
    target = np.linspace(0, 1, 50)
    got = fold_rows(target, "regression", 5, seed=2)
    for rows, (_, test) in zip(got, KFold(5, shuffle=True, random_state=2).split(target)):
        np.testing.assert_array_equal(rows["test"], np.sort(test))
    with pytest.raises(UserError, match="at least 2"):
        fold_rows(target, "regression", 1, seed=0)
    with pytest.raises(DataError, match="lower --folds"):
        fold_rows(target[:3], "regression", 5, seed=0)


@pytest.fixture(scope="module")
def cv_result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    recipe = _recipe(tmp)
    return recipe, cross_validate(recipe, folds=3, progress="none")


def test_cross_validate_runs_each_fold_on_its_rows(cv_result):
    recipe, result = cv_result
    assert result.out_dir.name == "cv-iris_cv" and result.n_finished == 3
    y, task = labelled_rows(recipe.data, recipe.seed, recipe.source)
    expected = fold_rows(y, task, 3, recipe.seed, recipe.data.split.validation)
    for fold, rows in zip(result.folds, expected):
        run_dir = result.out_dir / f"fold-{fold.fold}"
        saved = json.loads((run_dir / "rows.json").read_text())
        assert saved["test"] == rows["test"].tolist() and saved["validation"] == rows["validation"].tolist()
        assert fold.rows == {"train": len(rows["train"]), "validation": len(rows["validation"]), "test": 50}
        # the figure cross_validate reports is the fold run's own, re-evaluated from disk
        assert fold.test == pytest.approx(runs.evaluate(run_dir, "test")["test"], abs=1e-6)
        # the baseline beside it is DummyClassifier fitted on the fold's training rows
        dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(rows["train"]), 1)), y[rows["train"]])
        assert fold.baseline["majority"]["accuracy"] == pytest.approx(
            dummy.score(np.zeros((50, 1)), y[rows["test"]]))


def test_cross_validate_mean_and_std_are_numpys(cv_result):
    _, result = cv_result
    for name in ("accuracy", "loss", "f1_macro", "log_loss"):
        values = np.array([f.test[name] for f in result.folds])
        assert result.mean[name] == pytest.approx(values.mean())
        assert result.std[name] == pytest.approx(values.std())
        assert result.count[name] == 3
    saved = json.loads((result.out_dir / "cv.json").read_text())
    assert saved["finished"] == 3 and saved["failed"] == 0 and saved["folds"] == 3
    assert saved["test"]["mean"]["accuracy"] == pytest.approx(result.mean["accuracy"])
    assert [f["status"] for f in saved["per_fold"]] == ["finished"] * 3
    assert saved["recipe"]["model"]["hidden"] == [8]
    table = result.table()
    assert "fold-3" in table and "mean" in table and "majority baseline (mean)" in table
    assert "over 3 of 3 folds" in table


class _FailIn:
    """A callback that breaks the folds named, as a crash inside training would."""

    def __init__(self, folds, error=RuntimeError):
        self.folds, self.error = folds, error

    def on_fit_start(self, state):
        if state.run_dir is not None and state.run_dir.name in self.folds:
            raise self.error(f"boom in {state.run_dir.name}")


def test_a_failed_fold_is_reported_not_dropped(tmp_path):
    recipe = _recipe(tmp_path, train={"epochs": 1, "batch_size": 32})
    result = cross_validate(recipe, folds=3, progress="none", callbacks=[_FailIn({"fold-2"})])
    assert [f.finished for f in result.folds] == [True, False, True]
    assert result.failed[0].error == "RuntimeError: boom in fold-2"
    done = [result.folds[0].test["accuracy"], result.folds[2].test["accuracy"]]
    assert result.mean["accuracy"] == pytest.approx(np.mean(done))
    assert result.count["accuracy"] == 2
    table = result.table()
    assert "fold-2 (failed)" in table and "fold-2 failed: RuntimeError: boom in fold-2" in table
    assert "over 2 of 3 folds" in table
    saved = json.loads((result.out_dir / "cv.json").read_text())
    assert saved["per_fold"][1]["status"] == "failed" and "boom" in saved["per_fold"][1]["error"]
    assert saved["finished"] == 2 and saved["failed"] == 1
    # the same folder again: a new one beside it, nothing overwritten
    again = cross_validate(recipe, folds=3, out_dir=result.out_dir, progress="none",
                           callbacks=[_FailIn({"fold-1", "fold-2", "fold-3"})])
    assert again.out_dir.name == "cv-iris_cv-2" and again.n_finished == 0
    assert "over 0 of 3 folds" in again.table()
    assert json.loads((result.out_dir / "cv.json").read_text()) == saved


def test_every_fold_failing_on_a_user_error_is_one_error(tmp_path):
    recipe = _recipe(tmp_path)
    with pytest.raises(UserError, match="every fold of the cross-validation failed"):
        cross_validate(recipe, folds=3, progress="none",
                       callbacks=[_FailIn({"fold-1", "fold-2", "fold-3"}, UserError)])


def test_cv_command(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {source: sklearn, name: wine}\nmodel: {kind: mlp, hidden: [8]}\n"
                      "train: {epochs: 2, batch_size: 32}\n")
    res = run_cli("cv", recipe, "--folds", "2", "--out", tmp_path / "cv", "--set", "data.split.validation=0",
                  "--progress", "none", "--metric", "accuracy")
    assert res.returncode == 0, res.stderr
    assert "fold-2" in res.stdout and "mean" in res.stdout and "accuracy" in res.stdout
    assert "cv: fold 1/2" in res.stderr
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["per_fold"][0]["rows"] == {"train": 89, "test": 89}  # wine: 178 rows, no validation
    res = run_cli("cv", recipe, "--folds", "1", "--out", tmp_path / "cv1")
    assert res.returncode == 2 and res.stderr.strip() == "danlu: error: --folds must be at least 2, got 1"
