"""Transforms fitted on the training rows: imputation, categorical codes, feature scaling."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from ._table import Table

IMPUTE_FILLS = ("mean", "median", "most_frequent")


def _most_frequent(values: np.ndarray):
    """The commonest value; ties go to the smallest, as scikit-learn's SimpleImputer does."""
    uniq, counts = np.unique(values, return_counts=True)
    return uniq[int(np.argmax(counts))]


class FeatureEncoder:
    """Fills missing cells and turns categorical text into integer codes.

    Categories are the values seen in the training rows, sorted; code ``len(categories)``
    stands for a value never seen there (cardinality = known categories + 1). Categorical
    columns are filled with their most frequent value whatever the impute mode, since a
    mean of categories means nothing.
    """

    def __init__(self, impute: str, categories: dict[int, list[str]], fills: list | None):
        self.impute = impute
        self.categories = categories
        self.fills = fills  # one value per column, or None when the mode fills nothing

    @classmethod
    def fit(cls, table: Table, impute: str) -> "FeatureEncoder":
        categories = {j: sorted({v for v in col if v is not None}) for j, col in table.cats.items()}
        fills = _fit_fills(table, impute) if impute in IMPUTE_FILLS else None
        return cls(impute, categories, fills)

    def cardinalities(self) -> list[tuple[int, int]]:
        return [(j, len(cats) + 1) for j, cats in sorted(self.categories.items())]

    def transform(self, table: Table) -> np.ndarray:
        X = np.array(table.values, dtype=np.float64 if table.values.dtype == np.float64 else np.float32)
        for j, col in table.cats.items():
            X[:, j] = self._codes(j, col)
        if self.fills is not None:
            fill = np.array([f if isinstance(f, float) else np.nan for f in self.fills])
            rows, cols = np.nonzero(np.isnan(X))
            X[rows, cols] = fill[cols]
        return X.astype(np.float32, copy=False)

    def _codes(self, j: int, col: np.ndarray) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.categories[j])}
        unknown = len(index)
        fill = self.fills[j] if self.fills is not None else None
        codes = np.empty(len(col), dtype=np.float64)
        for i, v in enumerate(col):
            if v is None:
                v = fill
            codes[i] = np.nan if v is None else index.get(v, unknown)
        return codes

    def to_json(self) -> dict:
        return {"impute": self.impute,
                "categories": {str(j): cats for j, cats in self.categories.items()},
                "fills": self.fills}

    @classmethod
    def from_json(cls, d: dict) -> "FeatureEncoder":
        return cls(d["impute"], {int(j): list(c) for j, c in d["categories"].items()}, d.get("fills"))


def _fit_fills(table: Table, impute: str) -> list:
    values = table.values
    present = ~np.isnan(values)
    empty = [j for j in range(values.shape[1]) if j not in table.cats and not present[:, j].any()]
    empty += [j for j, col in table.cats.items() if all(v is None for v in col)]
    if empty:
        raise DataError(f"{table.where}: column '{table.names[min(empty)]}' has no values in the training "
                        f"rows, so there is nothing to impute from; drop it from data.features or fill it in")
    numeric = [j for j in range(values.shape[1]) if j not in table.cats]
    out: list = [None] * values.shape[1]
    if impute == "mean":
        fills = np.nanmean(values[:, numeric], axis=0)
    elif impute == "median":
        fills = np.nanmedian(values[:, numeric], axis=0)
    else:
        fills = [_most_frequent(values[present[:, j], j]) for j in numeric]
    for j, f in zip(numeric, fills):
        out[j] = float(f)
    for j, col in table.cats.items():
        out[j] = str(_most_frequent(np.array([v for v in col if v is not None], dtype=object).astype(str)))
    return out


class Scaler:
    """Per-channel standardisation or min-max scaling: ``(x - shift) / div``.

    ``axis`` is the channel axis of a batch: 1 for tabular columns and image channels,
    2 for the features of a (N, T, F) sequence. Categorical code columns keep shift 0, div 1.
    """

    def __init__(self, mode: str, axis: int, shift: torch.Tensor, div: torch.Tensor):
        self.mode = mode
        self.axis = axis
        self.shift = shift
        self.div = div

    @classmethod
    def fit(cls, X: np.ndarray, mode: str, axis: int, skip=()) -> "Scaler":
        channels = X.shape[axis]
        flat = np.moveaxis(X, axis, -1).reshape(-1, channels).astype(np.float64)
        shift, div = np.zeros(channels), np.ones(channels)
        if mode == "standardize":
            shift, div = flat.mean(axis=0), flat.std(axis=0)
        elif mode == "normalize":
            shift, div = flat.min(axis=0), flat.max(axis=0) - flat.min(axis=0)
        div = np.where(div > 0, div, 1.0)  # a constant column stays put instead of dividing by zero
        for j in skip:
            shift[j], div[j] = 0.0, 1.0
        return cls(mode, axis, torch.tensor(shift, dtype=torch.float32), torch.tensor(div, dtype=torch.float32))

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return X
        view = [1] * X.dim()
        view[self.axis] = -1
        shift = self.shift.to(X.device).view(view)
        div = self.div.to(X.device).view(view)
        return (X - shift) / div
