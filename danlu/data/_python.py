"""Data given as Python objects: NumPy arrays ``(X, y)``, a pandas DataFrame, a torch ``Dataset`` or
``DataLoader`` — for ``danlu.train(recipe, data=...)`` and ``danlu.predict(run, X)``.

Each object becomes a :class:`~danlu.data._sources.Loaded` table, as every file source makes, and
from there takes the built-in path: the same checks, the same seeded split (the recipe's seed and
``data.split``), categories, imputation and scaling fitted on the training rows, and a pipeline that
is saved and loaded like any run's. So the same numbers given as arrays or as a file give the same
tensors. A DataFrame is read like a CSV file (label column ``data.label``, default the last one;
``data.features``, ``data.categorical``), and its saved pipeline reads CSV files and DataFrames at
predict time; arrays and Datasets give a pipeline that reads arrays (``.npy`` / ``.npz`` files).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UserError, did_you_mean
from ._csv import is_missing
from ._info import InputRows
from ._pipeline import Pipeline, _cell_labels, _column_names, _label_list
from ._prepare import Prepared, _config, prepare_loaded
from ._sources import Loaded, kind_of
from ._table import (MULTILABEL_FIX, NUMERIC_SHARE, Table, categorical_columns, check_finite, choose_columns,
                     numeric_share, parse_categorical, table_from_arrays)

FRAME = "DataFrame"
ARRAYS = "arrays"
WHAT = ("NumPy arrays (X, y), a pandas DataFrame with the label column, a torch Dataset of (x, y) items "
        "or a DataLoader")


def prepare_python(data, data_cfg, seed: int, source: str = "recipe", *, rows: dict | None = None,
                   batch_size: int | None = None) -> Prepared:
    """Check, split and transform data given as Python objects into what :func:`danlu.data.prepare`
    returns for a recipe's own source (same fields, same split function, a savable pipeline).

    ``data`` is one of:

    * ``(X, y)``: NumPy arrays (or tensors, or lists) with ``X`` of shape ``(N, F)``, ``(N, T, F)``
      or ``(N, C, H, W)`` and ``y`` of shape ``(N,)`` or ``(N, k)``; ``(DataFrame, Series)`` is the
      DataFrame with the Series as its label column;
    * a pandas DataFrame: features and label are columns, chosen and typed as for a CSV file;
    * a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` pairs: read once, item by
      item, into tensors in memory (streaming a Dataset that does not fit is not supported yet, and an
      ``IterableDataset`` is refused);
    * a ``torch.utils.data.DataLoader``: its ``dataset`` is used as above. Its sampler and batch size
      are not: the recipe's seed splits and shuffles, and ``train.batch_size`` batches (pass it as
      ``batch_size`` to be warned when the loader's differs).

    ``data_cfg`` is the recipe's ``data`` section; its ``source``, ``name`` and ``path`` are not used.
    ``rows`` replaces the seeded split, as in :func:`~danlu.data.prepare`.
    """
    cfg = _config(data_cfg, source)
    return prepare_loaded(load_python(data, cfg, batch_size), cfg, seed, source, rows)


def load_python(data, cfg, batch_size: int | None = None) -> Loaded:
    """The table and reader of data given as Python objects (see :func:`prepare_python`)."""
    if _is_frame(data):
        return _from_frame(data, cfg)
    if isinstance(data, torch.utils.data.DataLoader):
        return _from_loader(data, batch_size)
    if isinstance(data, torch.utils.data.Dataset):
        return _from_dataset(data)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = data
        if _is_frame(X):
            return _from_frame(_with_label(X, y), cfg, label=_label_name(X, y))
        return _from_arrays(X, y, ARRAYS, {"type": "arrays"})
    if isinstance(data, (tuple, list)):
        raise UserError(f"data as a tuple must be a pair (X, y), got {len(data)} items; give {WHAT}")
    raise UserError(f"data must be {WHAT}; got {type(data).__name__}")


def rows_from_python(X, pipeline) -> tuple[torch.Tensor, InputRows]:
    """Rows given to ``danlu.predict(run, X)`` as model-ready inputs, like ``Pipeline.load_input``
    does for a file: a DataFrame (the training columns by name; a label column, if there, is
    reported in the rows), or arrays / tensors of shape ``(N, *input_shape)`` or ``(N, F)``."""
    if not isinstance(pipeline, Pipeline):
        raise UserError("this run's model does not read rows of numbers (its pipeline is "
                        f"{type(pipeline).__name__}); give it a file it reads")
    if _is_frame(X):
        table, given = _predict_frame(X, pipeline)
    else:
        table, given = _predict_arrays(X, pipeline)
    if len(table) == 0:
        raise DataError(f"{table.where}: no rows to predict (the input is empty); give at least one row")
    check_finite(table, fix="replace them with finite numbers the size of the training data's")
    pipeline._check_missing(table)
    return pipeline.transform(table), given


# --- arrays -----------------------------------------------------------------------------------

def _as_array(value, where: str, what: str) -> np.ndarray:
    """Arrays, tensors and nested lists as a NumPy array; ragged nesting is refused in one line."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return (value.float() if value.dtype == torch.bfloat16 else value).numpy()
    try:
        return np.asarray(value)
    except ValueError as err:
        raise DataError(f"{where}: {what} is ragged or not numbers ({str(err).splitlines()[0]}); give every row "
                        f"the same shape") from None


def _from_arrays(X, y, where: str, about: dict) -> Loaded:
    X = _as_array(X, where, "X")
    y = _as_array(y, where, "y")
    if X.ndim == 0 or y.ndim == 0:
        raise DataError(f"{where}: X and y must hold one row per sample, got shapes {X.shape} and {y.shape}")
    if len(X) != len(y):
        raise DataError(f"{where}: X has {len(X)} rows but y has {len(y)}; give one label per row")
    if len(X) == 0:
        raise DataError(f"{where}: no rows; the data set is empty")
    if X.ndim == 1:
        X = X[:, None]   # one feature per row
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if X.ndim > 4 or y.ndim > 2:
        raise DataError(f"{where}: X must be (N, F), (N, T, F) or (N, C, H, W) and y (N,) or (N, k); got "
                        f"{X.shape} and {y.shape}")
    X = _numeric_features(X, where)
    y = y.astype(object) if y.dtype.kind not in "fiub" else y   # text labels become Python strings
    shape = tuple(X.shape[1:])
    flat = [f"x{i}" for i in range(int(np.prod(shape)))]
    names = flat if X.ndim == 2 else [f"channel{i}" for i in range(shape[-1] if X.ndim == 3 else shape[0])]
    table = table_from_arrays(where, X, y, flat)
    reader = {"format": "table", "columns": flat if X.ndim == 2 else None, "label": None, "divisor": 1.0,
              "python": {**about, "rows": len(X)}}
    return Loaded(table, shape, kind_of(shape), names, reader)


def _numeric_features(X: np.ndarray, where: str) -> np.ndarray:
    if X.dtype == object:   # numbers held as Python objects (lists of mixed ints and floats)
        try:
            return X.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if X.dtype.kind not in "fiub":
        raise DataError(f"{where}: features must be numbers, got an array of {X.dtype}; convert them to numbers "
                        f"(or give a DataFrame for text columns)")
    return X


# --- torch Datasets and DataLoaders -----------------------------------------------------------

def _from_loader(loader, batch_size: int | None) -> Loaded:
    dataset = loader.dataset
    if batch_size is not None and loader.batch_size not in (None, batch_size):
        warnings.warn(f"the DataLoader's batch_size {loader.batch_size} is not used: danlu splits and shuffles "
                      f"its dataset by the recipe's seed and batches by train.batch_size ({batch_size})",
                      UserWarning, stacklevel=3)
    return _from_dataset(dataset, {"type": "DataLoader", "batch_size": loader.batch_size})


def _from_dataset(dataset, about: dict | None = None) -> Loaded:
    where = f"Dataset {type(dataset).__name__}"
    if isinstance(dataset, torch.utils.data.IterableDataset):
        raise UserError(f"{where} is an IterableDataset; danlu reads map-style Datasets (len() and [i]) for now "
                        f"— give a map-style Dataset or arrays")
    try:
        n = len(dataset)
    except TypeError:
        raise UserError(f"{where} has no len(); give a map-style Dataset (with __len__ and __getitem__)") from None
    if n == 0:
        raise DataError(f"{where}: no items; the data set is empty")
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            got = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
            raise DataError(f"{where}: item {i} is {got}, not an (x, y) pair; make __getitem__ return "
                            f"(features, label)")
        x, y = (_as_array(v, where, f"item {i}") for v in item)
        if xs and x.shape != xs[0].shape:
            raise DataError(f"{where}: item {i} has x of shape {x.shape} but item 0 has {xs[0].shape}; every "
                            f"item needs the same shape (pad, crop or resize them)")
        if ys and y.shape != ys[0].shape:
            raise DataError(f"{where}: item {i} has y of shape {y.shape} but item 0 has {ys[0].shape}; give "
                            f"every item a label of the same shape")
        xs.append(x)
        ys.append(y)
    about = {"type": "Dataset", "class": type(dataset).__name__, **(about or {})}
    return _from_arrays(np.stack(xs), _stack_labels(ys), where, about)


def _stack_labels(ys: list[np.ndarray]) -> np.ndarray:
    if ys[0].ndim == 0 and ys[0].dtype.kind not in "fiub":   # text labels
        out = np.empty(len(ys), dtype=object)
        out[:] = [y.item() for y in ys]
        return out
    return np.stack(ys)


# --- pandas DataFrames ------------------------------------------------------------------------

class _Columns:
    """A DataFrame's column names where the CSV helpers expect a file's header."""

    def __init__(self, header: list[str], where: str = FRAME):
        self.header = header
        self.path = where


def _is_frame(obj) -> bool:
    # duck-typed, so danlu never imports pandas itself
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "columns") and hasattr(obj, "iloc")


def _is_series(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "pandas" and hasattr(obj, "name") and not hasattr(obj, "columns")


def _label_name(X, y) -> str:
    name = y.name if _is_series(y) and y.name is not None else "label"
    return str(name)


def _with_label(X, y):
    """``(DataFrame, labels)`` as one DataFrame whose last column holds the labels."""
    name = _label_name(X, y)
    if name in {str(c) for c in X.columns}:
        raise DataError(f"{FRAME}: the labels' name '{name}' is also a feature column; rename the Series or drop "
                        f"the column")
    labels = y.to_numpy() if _is_series(y) else _as_array(y, FRAME, "y")
    if len(labels) != len(X):
        raise DataError(f"{FRAME}: X has {len(X)} rows but y has {len(labels)}; give one label per row")
    return X.assign(**{name: labels})


def _frame_columns(df) -> list[str]:
    names = [str(c) for c in df.columns]
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(f"{FRAME}: column name '{name}' appears twice; give every column a distinct name")
        seen.add(name)
    return names


def _from_frame(df, cfg, label=None) -> Loaded:
    header = _frame_columns(df)
    if len(df) == 0 or not header:
        raise DataError(f"{FRAME}: no rows; the data set is empty")
    columns = _Columns(header)
    names, label = choose_columns(columns, cfg["features"], label if label is not None else cfg["label"])
    cat_names = _categorical(df, header, names, cfg["categorical"])
    table = _frame_table(df, header, names, cat_names, label)
    reader = {"format": "table", "columns": names, "label": label, "divisor": 1.0,
              "categorical": [n for n in names if n in cat_names],
              "python": {"type": "DataFrame", "rows": len(df)}}
    return Loaded(table, (len(names),), "tabular", names, reader)


def _categorical(df, header: list[str], names: list[str], categorical) -> set[str]:
    """Declared categorical columns, or (``auto``) the non-numeric ones: a column of a numeric dtype is
    numeric; any other is read as text cells and judged as a CSV column is."""
    if not (isinstance(categorical, str) and categorical == "auto"):
        if isinstance(categorical, str):
            raise UserError(f"data.categorical must be 'auto' or a list of column names; got '{categorical}'")
        return categorical_columns(_Columns(header), names, categorical)
    out = set()
    for name in names:
        series = df.iloc[:, header.index(name)]
        if not _numeric_dtype(series) and numeric_share(_cells(series)) <= NUMERIC_SHARE:
            out.add(name)
    return out


def _numeric_dtype(series) -> bool:
    kind = getattr(series.dtype, "kind", "O")
    return kind in "iuf"


def _cells(series) -> list[str]:
    """A column as CSV-like text cells: '' where missing, other values as text without surrounding spaces."""
    missing = np.asarray(series.isna(), dtype=bool)
    values = series.to_numpy(dtype=object)
    return ["" if m else str(v).strip() for v, m in zip(values, missing)]


def _numbers(series, name: str, where: str, fix: str) -> np.ndarray:
    """A column as floats (NaN where missing); a cell that is not a number is refused, naming its row."""
    if _numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    cells = _cells(series)
    out = np.full(len(cells), np.nan)
    bad = []
    for i, cell in enumerate(cells):
        if is_missing(cell):
            continue
        try:
            out[i] = float(cell)
        except ValueError:
            bad.append(i)
    if bad:
        shown = cells[bad[0]] if len(cells[bad[0]]) <= 40 else cells[bad[0]][:40] + "..."
        raise DataError(f"{where}: column '{name}' row {bad[0]}: {shown!r} is not a number ({len(bad)} such "
                        f"cell{'s' if len(bad) > 1 else ''}); fix the cells, leave them empty (None or NaN) and "
                        f"set data.impute, or {fix.format(name=name)}")
    return out


def _frame_table(df, header: list[str], names: list[str], cat_names: set[str], label: str | None,
                 where: str = FRAME) -> Table:
    """The chosen columns of a DataFrame typed as a CSV file's would be: floats, or category text."""
    values = np.full((len(df), len(names)), np.nan)
    cats = {}
    for j, name in enumerate(names):
        series = df.iloc[:, header.index(name)]
        if name in cat_names:
            cats[j] = parse_categorical(_cells(series))
        else:
            values[:, j] = _numbers(series, name, where, "list '{name}' in data.categorical")
    if isinstance(label, list):   # multilabel: one 0/1 column per label, as numbers
        labels = np.stack([_numbers(df.iloc[:, header.index(name)], name, where, MULTILABEL_FIX) for name in label],
                          axis=1)
    else:
        labels = None if label is None else _frame_labels(df.iloc[:, header.index(label)], label, where)
    return Table(where, list(names), values, cats, labels, np.arange(len(df)), "row")


def _frame_labels(series, name: str, where: str) -> np.ndarray:
    """Labels as a CSV file's: numbers when (nearly) every present value is one, else text."""
    if _numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    cells = _cells(series)
    if numeric_share(cells) > NUMERIC_SHARE:
        return _numbers(series, name, where, "set data.task: classification if they are classes")
    return parse_categorical(cells)


# --- inputs to predict ------------------------------------------------------------------------

def _predict_frame(df, pipeline: Pipeline) -> tuple[Table, InputRows]:
    columns = pipeline.reader.get("columns")
    if not columns:
        raise DataError(f"{FRAME}: this model reads {pipeline.info.kind} arrays of shape "
                        f"{list(pipeline.info.input_shape)}, not columns; give a NumPy array")
    header = _frame_columns(df)
    for name in columns:
        if name not in header:
            more = ", ..." if len(columns) > 8 else ""
            arrays = pipeline.reader.get("python", {}).get("type") in ("arrays", "Dataset", "DataLoader")
            hint = " (it was trained on arrays: give df.to_numpy(), columns in training order)" if arrays else ""
            raise DataError(f"{FRAME}: column '{name}' is missing{did_you_mean(name, header)}; the model needs the "
                            f"training columns {', '.join(columns[:8])}{more}{hint}")
    table = _frame_table(df, header, list(columns), set(pipeline.reader.get("categorical", [])), None)
    table.values /= pipeline.reader.get("divisor", 1.0)
    label = pipeline.reader.get("label")
    labels = None
    if label in header:
        labels = _cell_labels(_cells(df.iloc[:, header.index(label)]))
    return table, InputRows(list(range(len(table))), "row", labels)


def _predict_arrays(X, pipeline: Pipeline) -> tuple[Table, InputRows]:
    where = ARRAYS
    if pipeline.encoder.categories:
        raise DataError(f"{where}: this model has categorical columns, which numeric arrays cannot carry; give a "
                        f"DataFrame or CSV file with the training columns")
    X = _numeric_features(_as_array(X, where, "X"), where)
    if X.ndim == 0:
        raise DataError(f"{where}: X must hold rows, got a single number; give shape (N, ...)")
    X, y = pipeline._pick_arrays(Path(where), {"": X})
    X = pipeline._fit_width(Path(where), X)
    table = table_from_arrays(where, X, None, _column_names(pipeline.reader, pipeline.info))
    table.values = table.values / pipeline.reader.get("divisor", 1.0)   # a new array: the caller's stays as it was
    return table, InputRows(list(range(len(table))), "row", _label_list(y))
