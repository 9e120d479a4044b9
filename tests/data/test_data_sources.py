"""Each source type: shapes, kinds, tasks and labels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from data_testkit import write_csv
from sklearn import datasets

from danlu.data import prepare

NO_SPLIT = {"validation": 0.0, "test": 0.0}


@pytest.mark.parametrize("name, task, kind, shape, n_classes", [
    ("iris", "classification", "tabular", (4,), 3),
    ("wine", "classification", "tabular", (13,), 3),
    ("breast_cancer", "classification", "tabular", (30,), 2),
    ("diabetes", "regression", "tabular", (10,), None),
    ("digits", "classification", "image", (1, 8, 8), 10),
])
def test_sklearn_sets(name, task, kind, shape, n_classes):
    p = prepare({"source": "sklearn", "name": name, "scale": "none"}, seed=0)
    assert (p.info.task, p.info.kind, p.info.input_shape, p.info.n_classes) == (task, kind, shape, n_classes)
    total = sum(len(x) for x, _ in p.splits.values())
    assert total == len(getattr(datasets, f"load_{name}")().target)
    X, y = p.splits["train"]
    assert X.dtype == torch.float32 and X.shape[1:] == shape
    assert y.dtype == (torch.int64 if task == "classification" else torch.float32)


def test_digits_pixels_in_unit_range_and_match_sklearn():
    p = prepare({"source": "sklearn", "name": "digits", "scale": "none", "split": NO_SPLIT}, seed=0)
    X, y = p.splits["train"]
    ref = datasets.load_digits()
    # no split fractions: the rows keep their order
    assert torch.allclose(X.reshape(len(X), -1), torch.tensor(ref.data / 16.0, dtype=torch.float32))
    assert X.min() >= 0 and X.max() <= 1
    assert p.pipeline.decode(y[:10]) == ref.target[:10].tolist()


def test_iris_classes_are_names_and_decode():
    p = prepare({"source": "sklearn", "name": "iris", "split": NO_SPLIT}, seed=0)
    assert p.info.classes == ["setosa", "versicolor", "virginica"]
    _, y = p.splits["train"]
    assert p.pipeline.decode(y) == [["setosa", "versicolor", "virginica"][i] for i in datasets.load_iris().target]


def test_csv_string_labels_and_auto_categorical(mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv), "split": NO_SPLIT}, seed=0)
    info = p.info
    assert info.task == "classification" and info.classes == ["no", "yes"]
    assert info.feature_names == ["age", "income", "plan"]
    assert info.categorical == [(2, 4)]  # basic, pro, team + unknown
    X, y = p.splits["train"]
    assert sorted(set(X[:, 2].tolist())) == [0.0, 1.0, 2.0]  # codes, never scaled
    labels = [row[3] for row in _rows(mixed_csv)]
    assert p.pipeline.decode(y) == labels


def _rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def test_csv_declared_columns_label_and_task(tmp_path):
    rows = [[i, i * 0.5, 3 * i + 0.25] for i in range(30)]
    path = write_csv(tmp_path / "r.csv", ["a", "target", "b"], rows)
    p = prepare({"source": "csv", "path": str(path), "label": "target", "features": ["b"],
                 "scale": "none", "split": NO_SPLIT}, seed=0)
    assert p.info.task == "regression" and p.info.feature_names == ["b"]
    X, y = p.splits["train"]
    assert torch.allclose(y, torch.tensor([r[1] for r in rows], dtype=torch.float32))
    assert torch.allclose(X[:, 0], torch.tensor([r[2] for r in rows], dtype=torch.float32))


def test_csv_declared_categorical_numeric_codes(tmp_path):
    rows = [[i % 4 + 10, float(i), i % 2] for i in range(40)]
    path = write_csv(tmp_path / "c.csv", ["zone", "x", "y"], rows)
    p = prepare({"source": "csv", "path": str(path), "categorical": ["zone"], "split": NO_SPLIT}, seed=0)
    assert p.info.categorical == [(0, 5)]
    assert p.info.classes == [0, 1]  # integer labels stay integers
    X, _ = p.splits["train"]
    assert X[:4, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_task_auto_integer_labels_with_many_values_is_regression(tmp_path):
    rows = [[float(i), i] for i in range(50)]  # 50 distinct integers
    path = write_csv(tmp_path / "many.csv", ["x", "y"], rows)
    assert prepare({"source": "csv", "path": str(path)}, seed=0).info.task == "regression"
    p = prepare({"source": "csv", "path": str(path), "task": "classification", "split": {"stratify": False}}, 0)
    assert p.info.task == "classification" and p.info.n_classes == 50


def test_npy_label_column_and_features(tmp_path):
    rng = np.random.default_rng(0)
    arr = np.column_stack([rng.normal(size=(40, 3)), np.arange(40) % 2, rng.normal(size=40)])
    np.save(tmp_path / "t.npy", arr)
    p = prepare({"source": "npy", "path": str(tmp_path / "t.npy"), "label": 3, "features": [0, 4],
                 "scale": "none", "split": NO_SPLIT}, seed=0)
    X, y = p.splits["train"]
    assert p.info.task == "classification" and X.shape == (40, 2)
    assert np.allclose(X.numpy(), arr[:, [0, 4]].astype(np.float32))
    assert y.tolist() == (np.arange(40) % 2).tolist()


def test_npz_images_and_multi_target_regression(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "img.npz", X=rng.random((30, 2, 4, 4)), y=np.arange(30) % 3)
    p = prepare({"source": "npy", "path": str(tmp_path / "img.npz")}, seed=0)
    assert (p.info.kind, p.info.input_shape, p.info.n_classes) == ("image", (2, 4, 4), 3)

    np.savez(tmp_path / "reg.npz", inputs=rng.random((30, 5)), targets=rng.random((30, 2)))
    p = prepare({"source": "npy", "path": str(tmp_path / "reg.npz"), "features": ["inputs"],
                 "label": "targets"}, seed=0)
    assert p.info.task == "regression" and p.info.n_targets == 2
    assert p.splits["train"][1].shape[1:] == (2,) and p.splits["train"][1].dtype == torch.float32


def test_shape_turns_table_into_images():
    p = prepare({"source": "sklearn", "name": "digits", "shape": [64]}, seed=0)
    assert p.info.kind == "tabular" and p.info.input_shape == (64,)
    p = prepare({"source": "sklearn", "name": "breast_cancer", "shape": [3, 10]}, seed=0)
    assert p.info.kind == "sequence" and p.splits["train"][0].shape[1:] == (3, 10)


@pytest.mark.parametrize("name, task, n_classes", [("sum", "regression", None), ("trend", "classification", 3),
                                                  ("parity", "classification", 2)])
def test_sequence_sources_are_seeded(name, task, n_classes):
    cfg = {"source": "sequence", "name": name, "length": 12, "samples": 90, "scale": "none"}
    a, b, c = prepare(cfg, seed=1), prepare(cfg, seed=1), prepare(cfg, seed=2)
    assert (a.info.task, a.info.kind, a.info.input_shape, a.info.n_classes) == (task, "sequence", (12, 1), n_classes)
    assert torch.equal(a.splits["train"][0], b.splits["train"][0])
    assert not torch.equal(a.splits["train"][0], c.splits["train"][0])
    if name == "sum":
        X, y = a.splits["train"]
        assert torch.allclose(X.sum(dim=(1, 2)), y, atol=1e-4)
    if name == "parity":
        X, y = a.splits["train"]
        assert torch.equal(X.sum(dim=(1, 2)).long() % 2, y)


def test_trend_classes_follow_the_slope():
    p = prepare({"source": "sequence", "name": "trend", "length": 30, "samples": 300, "scale": "none"}, seed=0)
    X, y = p.splits["train"]
    slope = X[:, -5:, 0].mean(1) - X[:, :5, 0].mean(1)
    names = p.pipeline.decode(y)
    rising = slope[[n == "rising" for n in names]]
    falling = slope[[n == "falling" for n in names]]
    assert rising.mean() > 0.5 and falling.mean() < -0.5


def test_image_folder_source(image_folder):
    p = prepare({"source": "images", "path": str(image_folder), "grayscale": False, "scale": "none",
                 "split": NO_SPLIT}, seed=0)
    assert p.info.kind == "image" and p.info.input_shape == (3, 6, 5)
    assert p.info.classes == ["bright", "dark"]
    X, y = p.splits["train"]
    assert X.min() >= 0 and X.max() <= 1
    bright = X[y == 0].mean()
    dark = X[y == 1].mean()
    assert bright > 0.55 and dark < 0.4

    # resized, one channel
    p = prepare({"source": "images", "path": str(image_folder), "image_size": [4, 3], "split": NO_SPLIT}, seed=0)
    assert p.info.input_shape == (1, 4, 3) and p.info.feature_names == ["gray"]


def test_relative_path_found_beside_the_recipe(tmp_path, mixed_csv):
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.parent.mkdir()
    (recipe.parent / "m.csv").write_bytes(mixed_csv.read_bytes())
    p = prepare({"source": "csv", "path": "m.csv"}, seed=0, source_name=str(recipe))
    assert p.info.n_classes == 2


def test_shipped_churn_csv_is_usable():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "recipes" / "data" / "churn.csv"
    assert path.stat().st_size < 150_000
    p = prepare({"source": "csv", "path": str(path)}, seed=0)
    assert p.info.classes == ["leave", "stay"]
    assert [n for j, _ in p.info.categorical for n in [p.info.feature_names[j]]] == ["plan", "region", "payment"]
    assert sum(len(x) for x, _ in p.splits.values()) == 1500
    # the label depends on numeric and categorical columns: a linear model beats the majority class
    from sklearn.linear_model import LogisticRegression

    def one_hot(X):
        X = X.numpy()
        cats = [np.eye(k)[X[:, j].astype(int)] for j, k in p.info.categorical]
        return np.hstack([X[:, :5]] + cats)

    (Xtr, ytr), (Xte, yte) = p.splits["train"], p.splits["test"]
    model = LogisticRegression(max_iter=1000).fit(one_hot(Xtr), ytr.numpy())
    majority = np.bincount(yte.numpy()).max() / len(yte)
    assert model.score(one_hot(Xte), yte.numpy()) > majority + 0.12


def test_make_data_regenerates_the_shipped_files(tmp_path):
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "recipes" / "data"
    spec = importlib.util.spec_from_file_location("make_data", folder / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("churn.csv", "churn_new.csv"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_churn_new_reads_with_the_churn_pipeline():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "recipes" / "data"
    p = prepare({"source": "csv", "path": str(folder / "churn.csv")}, seed=0)
    X, rows = p.pipeline.load_input(folder / "churn_new.csv")
    assert X.shape == (20, 8) and rows.labels is None and not torch.isnan(X).any()
