"""Transforms are fitted on the training split only; imputation matches scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from data_testkit import write_csv
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from danlu.data import prepare

NO_SPLIT = {"validation": 0.0, "test": 0.0}


def _raw_and_scaled(scale: str):
    cfg = {"source": "sklearn", "name": "wine", "split": {"validation": 0.2, "test": 0.2}}
    raw = prepare(cfg | {"scale": "none"}, seed=1)
    scaled = prepare(cfg | {"scale": scale}, seed=1)
    return raw, scaled


def test_standardize_uses_train_statistics_only():
    raw, scaled = _raw_and_scaled("standardize")
    oracle = StandardScaler().fit(raw.splits["train"][0].numpy())
    for name in ("train", "validation", "test"):
        expected = oracle.transform(raw.splits[name][0].numpy())
        assert np.allclose(scaled.splits[name][0].numpy(), expected, atol=1e-4), name
    X = scaled.splits["train"][0]
    assert torch.allclose(X.mean(0), torch.zeros(13), atol=1e-4)
    assert torch.allclose(X.std(0, unbiased=False), torch.ones(13), atol=1e-3)
    # validation is scaled with train statistics, so it is not exactly standard
    assert X.mean(0).abs().max() < scaled.splits["validation"][0].mean(0).abs().max()


def test_normalize_uses_train_min_max():
    raw, scaled = _raw_and_scaled("normalize")
    oracle = MinMaxScaler().fit(raw.splits["train"][0].numpy())
    for name in ("train", "test"):
        assert np.allclose(scaled.splits[name][0].numpy(), oracle.transform(raw.splits[name][0].numpy()), atol=1e-5)
    assert scaled.splits["train"][0].min() == 0 and scaled.splits["train"][0].max() == 1


def test_constant_column_and_categorical_codes_are_not_scaled(tmp_path):
    rows = [[5.0, float(i), ["x", "y"][i % 2], i % 2] for i in range(20)]
    path = write_csv(tmp_path / "c.csv", ["const", "ramp", "kind", "label"], rows)
    p = prepare({"source": "csv", "path": str(path), "split": NO_SPLIT}, seed=0)
    X, _ = p.splits["train"]
    assert torch.all(X[:, 0] == 0)  # (5 - 5) / 1: zero std is replaced by 1
    assert X[:, 2].tolist() == [float(i % 2) for i in range(20)]
    assert abs(X[:, 1].mean().item()) < 1e-5


def test_image_scaling_is_per_channel(image_folder):
    p = prepare({"source": "images", "path": str(image_folder), "grayscale": False, "split": NO_SPLIT}, seed=0)
    X, _ = p.splits["train"]
    per_channel_mean = X.mean(dim=(0, 2, 3))
    per_channel_std = X.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=1e-5)
    assert torch.allclose(per_channel_std, torch.ones(3), atol=1e-4)
    shift, _ = p.pipeline.scaler.shift, p.pipeline.scaler.div
    assert shift.shape == (3,)


def test_sequence_scaling_is_per_feature():
    p = prepare({"source": "sequence", "name": "sum", "length": 8, "samples": 200,
                 "split": {"validation": 0.0, "test": 0.2}}, seed=0)
    X, _ = p.splits["train"]
    assert p.pipeline.scaler.shift.shape == (1,)
    assert abs(X.mean().item()) < 1e-5 and abs(X.std(unbiased=False).item() - 1) < 1e-4


# --- imputation ---------------------------------------------------------------------------------

def _numeric_with_holes(tmp_path):
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=(40, 3)) * 3, 1)
    values[[1, 5, 9, 30], 0] = np.nan
    values[[2, 5, 33], 2] = np.nan
    values[7, 1] = 1.0  # make 'most frequent' meaningful in column b
    values[8, 1] = 1.0
    cells = [["" if np.isnan(v) else v for v in row] + [i % 2] for i, row in enumerate(values)]
    cells[9][0] = "NA"  # other spellings of a missing cell
    cells[30][0] = "nan"
    cells[33][2] = "null"
    return write_csv(tmp_path / "holes.csv", ["a", "b", "c", "y"], cells), values


@pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
def test_imputation_matches_simple_imputer(tmp_path, strategy):
    path, values = _numeric_with_holes(tmp_path)
    p = prepare({"source": "csv", "path": str(path), "impute": strategy, "scale": "none", "split": NO_SPLIT}, 0)
    expected = SimpleImputer(strategy=strategy).fit_transform(values)
    assert np.allclose(p.splits["train"][0].numpy(), expected, atol=1e-5)


def test_imputation_fill_values_come_from_train_rows(tmp_path):
    path, values = _numeric_with_holes(tmp_path)
    p = prepare({"source": "csv", "path": str(path), "impute": "mean", "scale": "none",
                 "split": {"validation": 0.0, "test": 0.5, "stratify": False}}, 0)
    fills = p.pipeline.encoder.fills
    X_train = p.splits["train"][0].numpy()
    # the train rows are the file's rows in a shuffled order: find them back
    train_rows = [int(np.flatnonzero(np.all(np.isclose(values, row) | np.isnan(values), axis=1))[0])
                  for row in X_train]
    assert np.isclose(fills[0], np.nanmean(values[train_rows, 0]))
    assert not np.isclose(fills[0], np.nanmean(values[:, 0]))


def test_drop_removes_rows_with_missing_values(tmp_path):
    path, values = _numeric_with_holes(tmp_path)
    p = prepare({"source": "csv", "path": str(path), "impute": "drop", "scale": "none", "split": NO_SPLIT}, 0)
    kept = values[~np.isnan(values).any(axis=1)]
    assert np.allclose(p.splits["train"][0].numpy(), kept)


def test_drop_also_drops_missing_labels(tmp_path):
    rows = [[float(i), "" if i in (3, 4) else ["a", "b"][i % 2]] for i in range(20)]
    path = write_csv(tmp_path / "l.csv", ["x", "y"], rows)
    p = prepare({"source": "csv", "path": str(path), "impute": "drop", "scale": "none", "split": NO_SPLIT}, 0)
    assert len(p.splits["train"][0]) == 18 and 3.0 not in p.splits["train"][0][:, 0].tolist()


def test_categorical_missing_filled_with_most_frequent(tmp_path):
    rows = [[float(i), ["red", "red", "blue", ""][i % 4], i % 2] for i in range(24)]
    path = write_csv(tmp_path / "cat.csv", ["x", "color", "y"], rows)
    p = prepare({"source": "csv", "path": str(path), "impute": "mean", "split": NO_SPLIT}, 0)
    X, _ = p.splits["train"]
    raw = np.array([r[1] for r in rows], dtype=object)
    expected = SimpleImputer(strategy="most_frequent", missing_values="").fit_transform(raw[:, None])[:, 0]
    categories = p.pipeline.encoder.categories[1]
    assert [categories[int(c)] for c in X[:, 1]] == expected.tolist()
