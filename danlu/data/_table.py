"""A flat table of raw rows — numeric columns, categorical text columns and labels.

Every source turns its input into a :class:`Table` first, so missing-value checks,
imputation and encoding are written once. Images and sequences are tables too: one
column per value, reshaped to the sample shape after encoding.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import DataError, did_you_mean
from ._csv import CsvText, is_missing

# 'auto' detection: a column this numeric is a numeric column with some bad cells,
# not a categorical one.
NUMERIC_SHARE = 0.9


@dataclass
class Table:
    where: str                      # file or data set name, for messages
    names: list[str]                # one per column
    values: np.ndarray              # (N, D) float; NaN where missing (and in categorical columns)
    cats: dict[int, np.ndarray] = field(default_factory=dict)  # column -> object array, None = missing
    labels: np.ndarray | None = None  # raw labels, (N,) or (N, k); None entries = missing
    lines: np.ndarray | None = None   # file line (CSV) or row index of each row, for messages
    line_word: str = "row"

    def __len__(self) -> int:
        return self.values.shape[0]

    def take(self, rows: np.ndarray) -> "Table":
        return replace(
            self,
            values=self.values[rows],
            cats={j: col[rows] for j, col in self.cats.items()},
            labels=None if self.labels is None else self.labels[rows],
            lines=self.row_lines()[rows],
        )

    def row_lines(self) -> np.ndarray:
        return np.arange(len(self)) if self.lines is None else self.lines

    def missing_mask(self) -> np.ndarray:
        """(N, D) bool: which feature cells hold no value."""
        mask = np.isnan(self.values)
        for j, col in self.cats.items():
            mask[:, j] = _none_mask(col)
        return mask

    def label_missing(self) -> np.ndarray:
        if self.labels is None:
            return np.zeros(len(self), dtype=bool)
        if self.labels.dtype == object:
            miss = _none_mask(self.labels)
        elif self.labels.dtype.kind == "f":
            miss = np.isnan(self.labels)
        else:
            return np.zeros(len(self), dtype=bool)
        return miss if miss.ndim == 1 else miss.any(axis=1)


def _none_mask(col: np.ndarray) -> np.ndarray:
    return np.array([v is None for v in col.ravel()], dtype=bool).reshape(col.shape)


# --- parsing CSV cells ------------------------------------------------------------------------

def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def numeric_share(cells: list[str]) -> float:
    present = [c for c in cells if not is_missing(c)]
    if not present:
        return 1.0
    return sum(_number(c) is not None for c in present) / len(present)


def parse_numeric(cells: list[str], name: str, lines: list[int], where: str,
                  fix: str = "list '{name}' in data.categorical") -> np.ndarray:
    """Cells of a numeric column as floats (NaN where missing); one error for bad cells."""
    out = np.empty(len(cells), dtype=np.float64)
    bad = []
    for i, cell in enumerate(cells):
        if is_missing(cell):
            out[i] = np.nan
            continue
        value = _number(cell)
        if value is None:
            bad.append(i)
        else:
            out[i] = value
    if bad:
        i = bad[0]
        raise DataError(
            f"{where}: column '{name}' line {lines[i]}: {_cell_text(cells[i])} is not a number "
            f"({len(bad)} such cell{'s' if len(bad) > 1 else ''}); fix the cells, leave them empty "
            f"and set data.impute, or {fix.format(name=name)}")
    return out


def _cell_text(cell: str, limit: int = 40) -> str:
    """A cell quoted for a one-line message: line breaks and other control characters escaped."""
    shown = cell if len(cell) <= limit else cell[:limit] + "..."
    return repr(shown) if any(not c.isprintable() for c in shown) else f"'{shown}'"


def parse_categorical(cells: list[str]) -> np.ndarray:
    out = np.empty(len(cells), dtype=object)
    out[:] = [None if is_missing(c) else c for c in cells]
    return out


def parse_labels(cells: list[str], name: str, lines: list[int], where: str) -> np.ndarray:
    """Label cells: numbers when (nearly) every present cell is a number, else text.

    A label column that is mostly numbers with a few stray texts is a numeric column with
    bad cells (an error naming the line), not a set of text classes.
    """
    share = numeric_share(cells)
    if share > NUMERIC_SHARE:
        return parse_numeric(cells, name, lines, where, fix="set data.task: classification if they are classes")
    return parse_categorical(cells)


# --- choosing and typing columns --------------------------------------------------------------

def find_column(csv: CsvText, name, key: str) -> str:
    """Resolve a column given by name or index; unknown names get a did-you-mean."""
    if isinstance(name, int) and not isinstance(name, bool):
        if not -len(csv.header) <= name < len(csv.header):
            raise DataError(f"{csv.path}: {key} index {name} is out of range; the file has "
                            f"{len(csv.header)} columns")
        return csv.header[name]
    if name not in csv.header:
        cols = ", ".join(csv.header[:12]) + (", ..." if len(csv.header) > 12 else "")
        raise DataError(f"{csv.path}: no column '{name}'{did_you_mean(name, csv.header)}; "
                        f"fix {key} (columns: {cols})")
    return name


def choose_columns(csv: CsvText, features, label) -> tuple[list[str], str | list[str]]:
    """Feature columns and label column (default: the last column; features: all others). A list of
    labels (data.task multilabel) gives a list of label columns."""
    if isinstance(label, list):
        label_name = [find_column(csv, name, "data.label") for name in label]
    else:
        label_name = find_column(csv, csv.header[-1] if label is None else label, "data.label")
    labels = label_name if isinstance(label_name, list) else [label_name]
    if features is None:
        names = [c for c in csv.header if c not in labels]
    else:
        names = [find_column(csv, f, "data.features") for f in features]
        both = [n for n in labels if n in names]
        if both:
            raise DataError(f"{csv.path}: label column '{both[0]}' is also listed in data.features; "
                            f"remove it from data.features")
    if not names:
        raise DataError(f"{csv.path}: no feature columns besides the label '{label_name}'; "
                        f"add columns or fix data.features")
    return names, label_name


def categorical_columns(csv: CsvText, names: list[str], categorical) -> set[str]:
    """Which feature columns hold categories: declared, or detected as mostly non-numeric."""
    if isinstance(categorical, str) and categorical == "auto":
        return {n for n in names if numeric_share(csv.column(n)) <= NUMERIC_SHARE}
    declared = set()
    for name in categorical or []:
        col = find_column(csv, name, "data.categorical")
        if col not in names:
            raise DataError(f"{csv.path}: data.categorical lists '{col}', which is not a feature column; "
                            f"remove it from data.categorical")
        declared.add(col)
    return declared


def table_from_csv(csv: CsvText, names: list[str], cat_names: set[str], label: str | None) -> Table:
    """Type the chosen columns of a CSV: floats for numeric ones, text for categorical ones."""
    values = np.full((len(csv.rows), len(names)), np.nan)
    cats = {}
    for j, name in enumerate(names):
        cells = csv.column(name)
        if name in cat_names:
            cats[j] = parse_categorical(cells)
        else:
            values[:, j] = parse_numeric(cells, name, csv.lines, csv.path)
    if isinstance(label, list):   # multilabel: one 0/1 column per label, as numbers
        labels = np.stack([parse_numeric(csv.column(name), name, csv.lines, csv.path, fix=MULTILABEL_FIX)
                           for name in label], axis=1)
    else:
        labels = parse_labels(csv.column(label), label, csv.lines, csv.path) if label is not None else None
    return Table(csv.path, list(names), values, cats, labels, np.asarray(csv.lines), "line")


MULTILABEL_FIX = "write 1 (the label applies) or 0 (it does not) in label column '{name}'"


def table_from_arrays(where: str, X: np.ndarray, y: np.ndarray | None, names: list[str]) -> Table:
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise DataError(f"{where}: features must be numbers, got an array of {X.dtype}; "
                        f"convert them to numbers (or use a CSV for text columns)")
    flat = X.reshape(len(X), int(np.prod(X.shape[1:])))
    if flat.dtype.kind != "f":
        flat = flat.astype(np.float64)
    return Table(where, names, flat, {}, y, None, "row")


# --- checks -----------------------------------------------------------------------------------

# Features and targets are float32 tensors: a value beyond its range becomes inf there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _unusable(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(infinite, beyond float32) masks; NaN (a missing value) is in neither."""
    with np.errstate(invalid="ignore"):
        inf = np.isinf(values)
        big = ~inf & (np.abs(values) > FLOAT32_MAX)
    return inf, big


def _what(inf: np.ndarray, big: np.ndarray, values: np.ndarray) -> str:
    parts = []
    if inf.any():
        parts.append(f"{int(inf.sum())} infinite value(s)")
    if big.any():
        example = float(values[big][0])
        parts.append(f"{int(big.sum())} value(s) beyond the float32 range ±{FLOAT32_MAX:.1e} such as {example:g}")
    return " and ".join(parts)


def check_finite(table: Table, label: str = "label",
                 fix: str = "replace them with finite numbers (rescale the column if it is that large), or empty "
                            "the cells and set data.impute") -> None:
    """Infinite values, and values too large for float32 (they would be infinite once in a tensor),
    are never usable; name the file, the column, the count and the first row."""
    if table.labels is not None and table.labels.dtype.kind == "f":
        inf, big = _unusable(table.labels)
        bad = (inf | big).reshape(len(table), -1).any(axis=1)
        if bad.any():
            first = table.row_lines()[int(np.argmax(bad))]
            raise DataError(f"{table.where}: label '{label}' has {_what(inf, big, table.labels)} (first on "
                            f"{table.line_word} {first}); replace them with finite numbers")
    inf, big = _unusable(table.values)
    bad = inf | big
    if not bad.any():
        return
    j = int(np.argmax(bad.any(axis=0)))
    first = table.row_lines()[int(np.argmax(bad[:, j]))]
    raise DataError(f"{table.where}: column '{table.names[j]}' has {_what(inf[:, j], big[:, j], table.values[:, j])} "
                    f"(first on {table.line_word} {first}); {fix}")


def check_scaled(table: Table, X) -> None:
    """After encoding and scaling, every value must still be finite (a value far from the training
    rows' scale can overflow float32 there); name the first row and column that did not."""
    import torch

    if X.numel() == 0:
        return
    bad = ~torch.isfinite(X.reshape(len(X), -1))
    if not bool(bad.any()):
        return
    i, j = (int(v) for v in torch.nonzero(bad)[0])
    raw = table.values.reshape(len(table), -1)
    column = table.names[j] if len(table.names) == raw.shape[1] else f"value {j}"
    shown = f" ({raw[i, j]:g})" if j < raw.shape[1] and np.isfinite(raw[i, j]) else ""
    raise DataError(f"{table.where}: column '{column}' on {table.line_word} {table.row_lines()[i]}: the value"
                    f"{shown} is not finite once scaled by the training rows' statistics (too far from their "
                    f"range for float32); fix or rescale that value")


def check_outputs(scores, where: str, ids: list, id_name: str = "row") -> None:
    """The last input check: finite inputs far outside the training range can still overflow the
    model's float32 arithmetic; refuse them by row rather than answer NaN or infinite scores."""
    flat = np.asarray(scores, dtype=np.float64)
    if flat.size == 0:
        return
    bad = ~np.isfinite(flat.reshape(len(flat), -1)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: {id_name} {ids[i]}: the model's output is not finite for this input "
                        f"({int(bad.sum())} such row(s)); its values are far outside the range the model was "
                        f"trained on — fix or rescale them")


def missing_summary(table: Table, mask: np.ndarray, limit: int = 6) -> str:
    counts = mask.sum(axis=0)
    cols = [(table.names[j], int(counts[j])) for j in np.flatnonzero(counts)]
    text = ", ".join(f"'{n}' ({c})" for n, c in cols[:limit])
    if len(cols) > limit:
        text += f" and {len(cols) - limit} more columns"
    first = table.row_lines()[int(np.argmax(mask.any(axis=1)))]
    return f"{text} (first on {table.line_word} {first})"
