"""Raw JSON rows -> model-ready features, exactly as the saved pipeline treats a CSV or array file.

``Pipeline.load_input`` reads files only; a server gets rows in memory. This module builds the same
:class:`danlu.data._table.Table` that the file readers build (numeric cells as floats, categorical
cells as text, the source's divisor applied) and hands it to ``Pipeline.transform``, so imputation,
category codes and scaling are the pipeline's own code, not a copy of it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..data._table import FLOAT32_MAX, Table, table_from_arrays
from ..errors import DataError, did_you_mean

WHERE = "request"


def rows_to_features(pipeline, rows: list) -> torch.Tensor:
    """Model-ready float32 features for ``rows`` (lists or {column: value} dicts), shape (N, *input)."""
    if not isinstance(rows, list) or not rows:
        raise DataError("no rows: send {\"row\": [...]} for one row or {\"rows\": [[...], ...]} for a batch")
    columns = pipeline.reader.get("columns")
    cat_names = set(pipeline.reader.get("categorical") or [])
    dict_rows = [isinstance(r, dict) for r in rows]
    if any(dict_rows) and not all(dict_rows):
        raise DataError("rows mix lists and {column: value} objects; send them all one way")
    # named cells for tables (messages name the column; null may mean missing); plain numbers for arrays
    tabular = bool(columns) and len(pipeline.info.input_shape) == 1
    if all(dict_rows) or cat_names or tabular:
        if not columns:
            shape = list(pipeline.info.input_shape)
            raise DataError(f"this model reads {pipeline.info.kind} arrays, not named columns; send each row as a "
                            f"list of {_size(pipeline)} numbers (or nested lists of shape {shape})")
        table = _table_from_cells(rows, list(columns), cat_names)
    else:
        table = _table_from_numbers(rows, pipeline)
    table.values /= pipeline.reader.get("divisor", 1.0)
    _check_missing(table, pipeline)
    return pipeline.transform(table)


def _size(pipeline) -> int:
    return int(np.prod(pipeline.info.input_shape))


# --- rows of named or categorical columns ------------------------------------------------------

def _table_from_cells(rows: list, columns: list[str], cat_names: set[str]) -> Table:
    values = np.full((len(rows), len(columns)), np.nan)
    cat_index = [j for j, name in enumerate(columns) if name in cat_names]
    cats = {j: np.empty(len(rows), dtype=object) for j in cat_index}
    for i, row in enumerate(rows):
        cells = _row_cells(i, row, columns)
        for j, (name, cell) in enumerate(zip(columns, cells)):
            if j in cats:
                cats[j][i] = _category(i, name, cell)
            else:
                values[i, j] = _number(i, name, cell)
    return Table(WHERE, list(columns), values, cats, None, np.arange(len(rows)), "row")


def _row_cells(i: int, row, columns: list[str]) -> list:
    if isinstance(row, dict):
        for key in row:
            if key not in columns:
                raise DataError(f"row {i}: unknown column {key!r}{did_you_mean(str(key), columns)}; "
                                f"the model reads {_column_list(columns)}")
        for name in columns:
            if name not in row:
                raise DataError(f"row {i}: column {name!r} is missing; the model reads {_column_list(columns)} "
                                f"(send null for a missing value)")
        return [row[name] for name in columns]
    if not isinstance(row, list):
        raise DataError(f"row {i}: must be a list of {len(columns)} values or a {{column: value}} object, "
                        f"got {_kind(row)}")
    if len(row) != len(columns):
        raise DataError(f"row {i}: has {len(row)} values; the model reads {len(columns)}: {_column_list(columns)}")
    return row


def _number(i: int, name: str, cell) -> float:
    if cell is None:
        return math.nan   # missing: filled by the pipeline when the model imputes, refused otherwise
    if isinstance(cell, bool) or not isinstance(cell, (int, float)):
        shown = repr(cell) if isinstance(cell, str) and len(cell) < 40 else _kind(cell)
        raise DataError(f"row {i}, column {name!r}: {shown} is not a number; send a number (or null for a "
                        f"missing value)")
    try:
        value = float(cell)
    except OverflowError:   # an integer past float's range
        value = math.inf
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise DataError(f"row {i}, column {name!r}: {_shown(value)} is not allowed; send a finite number within "
                        f"±{FLOAT32_MAX:.1e} (float32), or null for a missing value")
    return value


def _category(i: int, name: str, cell):
    """Categories are the text of training cells: 3 is the category '3', as a CSV would read it."""
    if cell is None:
        return None
    if isinstance(cell, str):
        return cell
    if isinstance(cell, int) and not isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, float) and math.isfinite(cell):
        return str(int(cell)) if cell.is_integer() else repr(cell)
    raise DataError(f"row {i}, column {name!r}: {_kind(cell)} is not a category; send the category as text")


# --- rows of plain numbers (tabular lists, images, sequences) ----------------------------------

def _table_from_numbers(rows: list, pipeline) -> Table:
    shape = tuple(pipeline.info.input_shape)
    size = _size(pipeline)
    flat = np.empty((len(rows), size), dtype=np.float64)
    for i, row in enumerate(rows):
        flat[i] = _numeric_row(i, row, shape, size)
    columns = pipeline.reader.get("columns") or [f"x{k}" for k in range(size)]
    return table_from_arrays(WHERE, flat, None, list(columns))


def _numeric_row(i: int, row, shape: tuple, size: int) -> np.ndarray:
    if not isinstance(row, list):
        raise DataError(f"row {i}: must be a list of {size} numbers, got {_kind(row)}")
    try:
        arr = np.asarray(row) if _only_numbers(row) else None
    except ValueError:   # ragged nesting
        arr = None
    if arr is None or arr.dtype.kind not in "iuf":
        raise DataError(f"row {i}: must hold only numbers, as a flat list of {size} or nested lists of shape "
                        f"{list(shape)} (null, text, true/false and ragged lists are not accepted)")
    if arr.shape != shape and arr.shape != (size,):
        raise DataError(f"row {i}: has shape {list(arr.shape)}; the model reads {size} numbers, flat or "
                        f"shaped {list(shape)}")
    arr = arr.astype(np.float64).reshape(size)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (np.abs(arr) > FLOAT32_MAX)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"row {i}, value {k}: {_shown(arr[k])} is not allowed; send finite numbers within "
                        f"±{FLOAT32_MAX:.1e} (float32)")
    return arr


def _only_numbers(row: list) -> bool:
    """True when every leaf of the nested lists is an int or float (true/false are not numbers here)."""
    stack = [row]
    while stack:
        for v in stack.pop():
            if isinstance(v, list):
                stack.append(v)
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                return False
    return True


# --- checks -------------------------------------------------------------------------------------

def _check_missing(table: Table, pipeline) -> None:
    if pipeline.encoder.fills is not None:
        return
    mask = table.missing_mask()
    if mask.any():
        i, j = (int(v) for v in np.argwhere(mask)[0])
        raise DataError(f"row {i}, column {table.names[j]!r}: value is missing (null); this model was trained "
                        f"with data.impute: {pipeline.encoder.impute}, so send a value")


def _shown(value: float) -> str:
    """A number as JSON spells it (NaN, Infinity, -Infinity, 1e+308)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return f"{value:g}"


def _column_list(columns: list[str], limit: int = 12) -> str:
    more = f", ... ({len(columns)} in all)" if len(columns) > limit else ""
    return ", ".join(columns[:limit]) + more


def _kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}
    return names.get(type(value), type(value).__name__)
