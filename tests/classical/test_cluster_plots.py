"""Pictures of unsupervised runs: a k-means run draws its clusters and silhouettes; the drawing
helpers' numbers agree with scikit-learn."""
import numpy as np
import pytest
from PIL import Image
from sklearn.decomposition import PCA

import danlu
from danlu.unsupervised import map_2d, variance_spectrum


def test_kmeans_run_writes_cluster_and_silhouette_pictures(classical_recipe, tmp_path):
    run = danlu.train(classical_recipe("kmeans", "iris", n_init=2), tmp_path / "run")
    for name in ("clusters.png", "silhouette.png"):
        with Image.open(run.path / "plots" / name) as picture:
            assert picture.format == "PNG"
            width, height = picture.size
        assert width >= 400 and height >= 300
    with Image.open(run.path / "plots" / "clusters.png") as picture:
        assert picture.size[0] > 1.5 * picture.size[1]    # two panels: clusters beside the true labels


def test_variance_spectrum_is_a_full_pca():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6))
    spectrum = variance_spectrum(rows)
    np.testing.assert_allclose(spectrum, PCA(svd_solver="full").fit(rows).explained_variance_ratio_, rtol=1e-8)
    assert spectrum.sum() == pytest.approx(1.0)


def test_map_2d_keeps_two_columns_and_projects_wider_rows_on_the_reference_plane():
    rng = np.random.default_rng(1)
    flat = rng.normal(size=(30, 2))
    (same,), axes = map_2d(flat, flat, what="code")
    np.testing.assert_array_equal(same, flat)
    assert axes == ("code 1", "code 2")
    wide, centres = rng.normal(size=(40, 5)), rng.normal(size=(3, 5))
    (points, moved), axes = map_2d(wide, wide, centres)
    oracle = PCA(n_components=2, svd_solver="full").fit(wide)
    np.testing.assert_allclose(points, oracle.transform(wide), atol=1e-10)
    np.testing.assert_allclose(moved, oracle.transform(centres), atol=1e-10)
    assert axes[0].startswith("pc1")
