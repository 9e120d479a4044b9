"""The pca kind agrees with scikit-learn's PCA fitted on the same training rows: components (up to
sign), explained variance, transformed values and reconstructions; and it refuses too many components."""
import json

import numpy as np
import pytest
from sklearn.decomposition import PCA

import danlu
from danlu import training as runs
from danlu.classical import TRUSTED_TYPES, load_estimator, schema_types, unsupervised_answers
from danlu.errors import RecipeError

K = 5


def _rows(X) -> np.ndarray:
    return X.numpy().reshape(len(X), -1).astype(np.float32)


@pytest.fixture(scope="module")
def pca_run(tmp_path_factory):
    """One pca run on the digits, its data split as the run saw it, and sklearn's PCA on the same rows."""
    from danlu.recipe import Recipe

    recipe = Recipe.from_dict({"seed": 0, "data": {"source": "sklearn", "name": "digits", "scale": "none"},
                               "model": {"kind": "pca", "n_components": K}, "output": {"progress": "none"}})
    run = danlu.train(recipe, tmp_path_factory.mktemp("pca") / "run")
    splits = runs.prepare_run_data(recipe).splits
    oracle = PCA(n_components=K, svd_solver="full").fit(_rows(splits["train"][0]))
    return run, splits, oracle


def _same_up_to_sign(a: np.ndarray, b: np.ndarray, axis: int) -> np.ndarray:
    """``b`` with each component's sign flipped to match ``a`` (an eigenvector's sign is arbitrary)."""
    dots = np.sum(a * b, axis=axis, keepdims=True)
    return b * np.sign(dots)


def test_components_and_explained_variance_agree_with_sklearn(pca_run):
    run, _splits, oracle = pca_run
    fitted = load_estimator(run.path / "model.skops")
    np.testing.assert_allclose(fitted.components_, _same_up_to_sign(fitted.components_, oracle.components_, 1),
                               atol=1e-5)
    ratio = run.summary["run"]["explained_variance_ratio"]
    np.testing.assert_allclose(ratio, oracle.explained_variance_ratio_, rtol=1e-5)
    assert run.summary["train"]["variance_explained"] == pytest.approx(float(np.sum(ratio)), abs=1e-5)
    assert run.summary["run"]["size"] == {"components": K}


def test_transformed_values_and_reconstruction_agree_with_sklearn(pca_run):
    run, splits, oracle = pca_run
    model, _pipeline, meta, _recipe = runs.load_model(run.path)
    assert meta["unsupervised"] is True and meta["estimator"] == "sklearn.decomposition._pca.PCA"
    X = _rows(splits["test"][0])
    answers = unsupervised_answers(model, splits["test"][0])
    assert list(answers[0]) == [f"pc{k + 1}" for k in range(K)]
    got = np.array([[row[f"pc{k + 1}"] for k in range(K)] for row in answers])
    want = oracle.transform(X)
    np.testing.assert_allclose(got, _same_up_to_sign(got, want, 0), atol=1e-4)
    rebuilt = oracle.inverse_transform(want)
    expected_mse = float(np.mean((X.astype(np.float64) - rebuilt) ** 2))
    assert run.summary["test"]["reconstruction_mse"] == pytest.approx(expected_mse, rel=1e-5)
    spread = float(np.mean((X - X.mean(axis=0, dtype=np.float64)) ** 2))
    assert run.summary["test"]["variance_explained"] == pytest.approx(1 - expected_mse / spread, rel=1e-5)
    # `danlu eval` repeats the figures of the fit
    assert runs.evaluate(run.path, "all") == {k: run.summary[k] for k in ("train", "validation", "test")}


def test_model_file_is_skops_under_the_trust_list_and_plots_are_pngs(pca_run):
    run, _splits, _oracle = pca_run
    assert schema_types(run.path / "model.skops") <= set(TRUSTED_TYPES)
    metrics = json.loads((run.path / "metrics.jsonl").read_text())
    assert metrics["val_reconstruction_mse"] == run.summary["validation"]["reconstruction_mse"]
    for name in ("components.png", "scree.png"):
        assert (run.path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_more_components_than_features_is_a_one_line_recipe_error(tmp_path):
    recipe = {"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "pca", "n_components": 5},
              "output": {"progress": "none"}}
    with pytest.raises(RecipeError, match=r"n_components 5 is more than the 4 features.*at most 4") as err:
        danlu.train(recipe, tmp_path / "run")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run" / "model.skops").exists()
