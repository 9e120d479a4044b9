"""The saved pipeline re-applies the training transforms to new inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_testkit import mixed_rows, write_csv, write_png

from danlu.data import DataInfo, Pipeline, prepare
from danlu.errors import CheckpointError, DataError

NO_SPLIT = {"validation": 0.0, "test": 0.0}


def test_load_input_reproduces_training_features(mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv), "split": NO_SPLIT}, seed=0)
    X, rows = p.pipeline.load_input(mixed_csv)
    assert torch.allclose(X, p.splits["train"][0])
    assert rows.ids == list(range(60)) and rows.id_name == "row"
    assert p.pipeline.encode_labels(rows.labels).tolist() == p.splits["train"][1].tolist()


def test_save_load_round_trip(tmp_path, mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv), "impute": "median", "scale": "normalize",
                 "augment": {"noise": 0.1}}, seed=0)
    p.pipeline.save(tmp_path / "model")
    assert sorted(f.name for f in (tmp_path / "model").iterdir()) == ["pipeline.json", "pipeline.safetensors"]
    loaded = Pipeline.load(tmp_path / "model")
    assert loaded.info == p.info
    assert loaded.augment_cfg == p.pipeline.augment_cfg and loaded.augments
    a, rows_a = p.pipeline.load_input(mixed_csv)
    b, rows_b = loaded.load_input(mixed_csv)
    assert torch.equal(a, b) and rows_a == rows_b
    meta, tensors = loaded.state()
    assert json.loads(json.dumps(meta)) == meta
    assert set(tensors) == {"scale_shift", "scale_div"}
    assert DataInfo.from_json(json.loads(json.dumps(p.info.to_json()))) == p.info


def test_csv_input_by_column_name_label_optional_and_unseen_category(tmp_path, mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv), "split": NO_SPLIT}, seed=0)
    # columns in another order, no label, an extra column and a plan never seen in training
    new = write_csv(tmp_path / "new.csv", ["plan", "id", "income", "age"],
                    [["pro", 7, 50.0, 30], ["enterprise", 8, 40.0, 60]])
    X, rows = p.pipeline.load_input(new)
    assert X.shape == (2, 3) and rows.labels is None
    assert X[:, 2].tolist() == [1.0, 3.0]  # pro -> 1, unknown -> the reserved last code (cardinality 4)
    train_X = p.splits["train"][0]
    expected_income = (50.0 - np.mean([r[1] for r in mixed_rows()])) / np.std([r[1] for r in mixed_rows()])
    assert abs(X[0, 1].item() - expected_income) < 1e-4
    assert train_X.shape[1] == 3


def test_decode_round_trip_of_string_labels(mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv)}, seed=0)
    y = p.splits["test"][1]
    decoded = p.pipeline.decode(y)
    assert set(decoded) <= {"yes", "no"}
    assert p.pipeline.encode_labels(decoded).tolist() == y.tolist()
    assert p.pipeline.decode(np.array([1, 0])) == ["yes", "no"]


def test_missing_column_in_predict_input(tmp_path, mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv)}, seed=0)
    new = write_csv(tmp_path / "new.csv", ["age", "incom", "plan"], [[30, 1.0, "pro"]])
    with pytest.raises(DataError, match=r"new\.csv: column 'income' is missing \(did you mean 'incom'\?\)"):
        p.pipeline.load_input(new)


def test_missing_values_at_predict(tmp_path, mixed_csv):
    new = write_csv(tmp_path / "new.csv", ["age", "income", "plan"], [[30, "", "pro"], [31, 2.0, ""]])
    strict = prepare({"source": "csv", "path": str(mixed_csv)}, seed=0)
    with pytest.raises(DataError, match=r"'income' \(1\), 'plan' \(1\).*impute: none"):
        strict.pipeline.load_input(new)
    filled = prepare({"source": "csv", "path": str(mixed_csv), "impute": "mean", "scale": "none"}, seed=0)
    X, _ = filled.pipeline.load_input(new)
    assert abs(X[0, 1].item() - filled.pipeline.encoder.fills[1]) < 1e-4
    assert not torch.isnan(X).any()


def test_sklearn_pipeline_reads_npy_and_csv(tmp_path):
    from sklearn.datasets import load_digits

    p = prepare({"source": "sklearn", "name": "digits", "split": NO_SPLIT}, seed=0)
    raw = load_digits().data[:5]
    np.save(tmp_path / "d.npy", raw)
    X, rows = p.pipeline.load_input(tmp_path / "d.npy")
    assert X.shape == (5, 1, 8, 8) and torch.allclose(X, p.splits["train"][0][:5], atol=1e-5)
    write_csv(tmp_path / "d.csv", load_digits().feature_names, raw.tolist())
    X_csv, _ = p.pipeline.load_input(tmp_path / "d.csv")
    assert torch.allclose(X_csv, X)
    with pytest.raises(DataError, match="wrong width"):
        np.save(tmp_path / "w.npy", raw[:, :10])
        p.pipeline.load_input(tmp_path / "w.npy")


def test_npy_pipeline_accepts_label_column_or_features_only(tmp_path):
    arr = np.column_stack([np.arange(20.0), np.arange(20) % 2, np.arange(20.0) ** 2])
    np.save(tmp_path / "t.npy", arr)
    p = prepare({"source": "npy", "path": str(tmp_path / "t.npy"), "label": 1, "split": NO_SPLIT}, seed=0)
    full, rows = p.pipeline.load_input(tmp_path / "t.npy")
    assert torch.allclose(full, p.splits["train"][0]) and rows.labels == (np.arange(20) % 2).tolist()
    np.save(tmp_path / "f.npy", arr[:, [0, 2]])
    only, rows = p.pipeline.load_input(tmp_path / "f.npy")
    assert torch.allclose(only, full) and rows.labels is None


def test_image_pipeline_reads_files_and_folders(tmp_path, image_folder):
    p = prepare({"source": "images", "path": str(image_folder), "image_size": [4, 4], "split": NO_SPLIT}, 0)
    X, rows = p.pipeline.load_input(image_folder)
    assert torch.allclose(X, p.splits["train"][0], atol=1e-6)
    assert rows.id_name == "file" and rows.ids[0] == "bright/0.png" and rows.labels[-1] == "dark"
    one = write_png(tmp_path / "one.png", np.full((10, 7, 3), 200))
    X1, rows1 = p.pipeline.load_input(one)
    assert X1.shape == (1, 1, 4, 4) and rows1.ids == ["one.png"] and rows1.labels is None
    saved = tmp_path / "saved"
    p.pipeline.save(saved)
    assert torch.equal(Pipeline.load(saved).load_input(image_folder)[0], X)


def test_load_refuses_damaged_or_foreign_files(tmp_path, mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv)}, seed=0)
    p.pipeline.save(tmp_path / "m")
    with pytest.raises(CheckpointError, match="not found"):
        Pipeline.load(tmp_path / "elsewhere")
    (tmp_path / "m" / "pipeline.json").write_text('{"format": "other"}')
    with pytest.raises(CheckpointError, match="not a danlu data pipeline"):
        Pipeline.load(tmp_path / "m")
    (tmp_path / "m" / "pipeline.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        Pipeline.load(tmp_path / "m")


def test_input_not_found_and_unknown_suffix(tmp_path, mixed_csv):
    p = prepare({"source": "csv", "path": str(mixed_csv)}, seed=0)
    with pytest.raises(DataError, match="input not found"):
        p.pipeline.load_input(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(DataError, match="cannot read '.txt' files"):
        p.pipeline.load_input(tmp_path / "x.txt")
