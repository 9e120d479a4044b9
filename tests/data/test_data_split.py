"""Seeded, stratified splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from data_testkit import write_csv

from danlu.data import prepare
from danlu.errors import DataError


def _rows(p):
    """Identify rows by their (unscaled) feature vectors."""
    return {name: {tuple(r) for r in X.tolist()} for name, (X, _) in p.splits.items()}


def test_same_seed_same_rows_other_seed_other_rows():
    cfg = {"source": "sklearn", "name": "wine", "scale": "none"}
    a, b, c = prepare(cfg, seed=3), prepare(cfg, seed=3), prepare(cfg, seed=4)
    for name in ("train", "validation", "test"):
        assert torch.equal(a.splits[name][0], b.splits[name][0])
        assert torch.equal(a.splits[name][1], b.splits[name][1])
    assert _rows(a)["test"] != _rows(c)["test"]


def test_splits_are_disjoint_and_cover_all_rows():
    p = prepare({"source": "sklearn", "name": "wine", "scale": "none",
                 "split": {"validation": 0.2, "test": 0.25}}, seed=0)
    rows = _rows(p)
    assert not rows["train"] & rows["validation"] and not rows["train"] & rows["test"]
    assert not rows["validation"] & rows["test"]
    assert sum(len(r) for r in rows.values()) == 178
    assert len(rows["test"]) == round(0.25 * 178) or len(rows["test"]) == int(np.ceil(0.25 * 178))
    assert abs(len(rows["validation"]) - 0.2 * 178) <= 1


def test_stratified_split_keeps_class_proportions():
    p = prepare({"source": "sklearn", "name": "breast_cancer", "split": {"validation": 0.2, "test": 0.2}}, seed=5)
    overall = np.bincount(np.concatenate([y.numpy() for _, y in p.splits.values()])) / 569
    for name, (_, y) in p.splits.items():
        share = np.bincount(y.numpy(), minlength=2) / len(y)
        assert np.abs(share - overall).max() < 0.01, name


def test_unstratified_split_differs_from_stratified():
    strat = prepare({"source": "sklearn", "name": "iris"}, seed=0)
    plain = prepare({"source": "sklearn", "name": "iris", "split": {"stratify": False}}, seed=0)
    assert np.bincount(strat.splits["test"][1].numpy()).tolist() in ([8, 8, 7], [8, 7, 8], [7, 8, 8])
    assert _rows(strat)["test"] != _rows(plain)["test"]


def test_zero_fraction_leaves_split_out():
    p = prepare({"source": "sklearn", "name": "iris", "split": {"validation": 0.0, "test": 0.3}}, seed=0)
    assert set(p.splits) == {"train", "test"}
    p = prepare({"source": "sklearn", "name": "iris", "split": {"validation": 0.1, "test": 0.0}}, seed=0)
    assert set(p.splits) == {"train", "validation"}


def test_regression_split_ignores_stratify():
    p = prepare({"source": "sklearn", "name": "diabetes", "split": {"stratify": True}}, seed=0)
    assert sum(len(y) for _, y in p.splits.values()) == 442


def test_too_few_rows_of_a_class_to_stratify(tmp_path):
    rows = [[float(i), "a" if i < 10 else "b"] for i in range(11)]  # class 'b' has one row
    path = write_csv(tmp_path / "rare.csv", ["x", "y"], rows)
    with pytest.raises(DataError, match=r"class 'b' has only 1 row.*stratify: false"):
        prepare({"source": "csv", "path": str(path)}, seed=0)
    # without stratification the same data split fine
    p = prepare({"source": "csv", "path": str(path), "split": {"stratify": False}}, seed=0)
    assert sum(len(y) for _, y in p.splits.values()) == 11


def test_empty_split_is_an_error(tmp_path):
    path = write_csv(tmp_path / "two.csv", ["x", "y"], [[1.0, 0.5], [2.0, 0.7]])
    with pytest.raises(DataError, match=r"two\.csv.*(empty|cannot split)"):
        prepare({"source": "csv", "path": str(path), "split": {"validation": 0.3, "test": 0.3}}, seed=0)
