"""Helpers for the data tests: tiny CSV and image files written in tmp_path."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def mixed_rows(n: int = 60, seed: int = 0) -> list[list]:
    """Rows of (age, income, plan, label) with a text label that depends on income and plan."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        plan = ["basic", "pro", "team"][i % 3]
        income = round(float(rng.normal(50, 10)), 3)
        age = int(rng.integers(18, 70))
        label = "yes" if income + (8 if plan == "pro" else 0) > 52 else "no"
        rows.append([age, income, plan, label])
    return rows


@pytest.fixture
def mixed_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "mixed.csv", ["age", "income", "plan", "label"], mixed_rows())


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two classes of 6x5 RGB images: bright ones and dark ones, 4 each."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls, low, high in (("bright", 150, 256), ("dark", 0, 100)):
        for i in range(4):
            write_png(root / cls / f"{i}.png", rng.integers(low, high, (6, 5, 3)))
    return root
