"""Export of the category embeddings a tabular run learned (churn_embeddings recipe, 2 epochs)."""
from pathlib import Path

import numpy as np
import pytest

from danlu.errors import UserError
from danlu.recipe import Recipe
from danlu.transfer import categorical_embeddings, pca_2d, plot_categorical_embeddings

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "churn_embeddings.yaml"


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory):
    from danlu.training import train

    recipe = Recipe.from_yaml(RECIPE, ["train.epochs=2", "output.progress=none", "device=cpu"])
    return train(recipe, tmp_path_factory.mktemp("churn") / "run").path


def test_vectors_are_the_model_embeddings_with_category_names(churn_run):
    from danlu.training import load_model
    from danlu.models import FeatureInput

    found = categorical_embeddings(churn_run)
    assert set(found) == {"plan", "region", "payment"}
    cats, vectors = found["region"]
    assert cats == ["east", "north", "south", "west"]           # sorted training categories
    assert vectors.shape == (4, 4)                                # embedding_dim: 4 in the recipe
    model, pipeline, _meta, _recipe = load_model(churn_run)
    inputs = next(m for m in model.modules() if isinstance(m, FeatureInput))
    column = pipeline.info.feature_names.index("region")
    table = inputs.embeddings[inputs.columns.index(column)].weight.detach().numpy()
    np.testing.assert_array_equal(vectors, table[:4])
    assert set(found["plan"][0]) == {"basic", "standard", "premium"}


def test_pca_map_pngs(churn_run, tmp_path):
    paths = plot_categorical_embeddings(churn_run, tmp_path)
    assert sorted(p.name for p in paths) == ["embedding_payment.png", "embedding_plan.png", "embedding_region.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_pca_2d_matches_sklearn():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(0).normal(size=(9, 5))
    ours = pca_2d(X)
    theirs = PCA(n_components=2).fit_transform(X)
    np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-8)   # axes agree up to sign


def test_run_without_categorical_columns_is_a_user_error(tmp_path):
    from danlu.training import train

    recipe = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "linear"},
                               "train": {"epochs": 1}, "output": {"progress": "none"}, "device": "cpu"})
    run = train(recipe, tmp_path / "iris")
    with pytest.raises(UserError, match="no categorical embeddings"):
        categorical_embeddings(run.path)
