"""Seeded train / validation / test split, stratified by class when asked."""
from __future__ import annotations

import numpy as np

from ..errors import DataError


def _check_strata(ids: np.ndarray, classes: list, where: str) -> None:
    counts = np.bincount(ids, minlength=len(classes))
    present = np.flatnonzero(counts)
    rare = present[counts[present] < 2]
    if rare.size:
        c = int(rare[0])
        raise DataError(f"{where}: class {classes[c]!r} has only {counts[c]} row, too few to stratify the split "
                        f"(each class needs at least 2); set data.split.stratify: false or add more rows")


def _cut(rows: np.ndarray, fraction: float, seed: int, strata: np.ndarray | None, where: str, what: str):
    # imported here, not at the top: scikit-learn (with SciPy) takes ~1 s to import, and commands
    # that only read a finished run (danlu predict, serve) go through this module without splitting
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(rows, test_size=fraction, random_state=seed, shuffle=True, stratify=strata)
    except ValueError as err:
        hint = "set data.split.stratify: false, " if strata is not None else ""
        raise DataError(f"{where}: cannot split off the {what} set from {len(rows)} rows ({err}); "
                        f"{hint}lower data.split.{what} or add more rows") from None


def split_rows(n: int, validation: float, test: float, seed: int, class_ids: np.ndarray | None,
               classes: list, where: str) -> dict[str, np.ndarray]:
    """Row indices per split. ``class_ids`` given means stratify. A fraction of 0 omits the split.

    The test set is cut first, then validation from the rest, so the test rows of a seed do
    not change when only the validation fraction does.
    """
    if class_ids is not None:
        _check_strata(class_ids, classes, where)
    rows = np.arange(n)
    out = {}
    if test > 0:
        strata = None if class_ids is None else class_ids[rows]
        rows, out["test"] = _cut(rows, test, seed, strata, where, "test")
    if validation > 0:
        strata = None if class_ids is None else class_ids[rows]
        rows, out["validation"] = _cut(rows, validation / (1.0 - test), seed, strata, where, "validation")
    out["train"] = rows
    for name, idx in out.items():
        if len(idx) == 0:
            raise DataError(f"{where}: the {name} split is empty ({n} rows in all); add rows or change "
                            f"data.split fractions")
    return {name: out[name] for name in ("train", "validation", "test") if name in out}


def split_or_given(y: np.ndarray, codec, split, seed: int, where: str, rows: dict | None = None) -> dict:
    """The rows of each split: the recipe's seeded split of the encoded labels ``y`` (stratified for
    classification when ``split.stratify``; multilabel: a plain seeded shuffle, iterative
    stratification is not implemented), or ``rows`` as given (e.g. cross-validation's folds)."""
    if rows is None:
        strata = y if codec.task == "classification" and split["stratify"] else None
        return split_rows(len(y), split["validation"], split["test"], seed, strata, codec.classes, where)
    rows = {name: np.asarray(idx, dtype=np.int64) for name, idx in rows.items() if len(idx)}
    if "train" not in rows:
        raise DataError(f"{where}: no training rows were given")
    return rows
