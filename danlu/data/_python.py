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

import hashlib
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .._validate import Node
from ..errors import DataError, UserError, did_you_mean
from ._csv import is_missing
from ._info import InputRows
from ._pipeline import Pipeline, _cell_labels, _column_names, _label_list
from ._prepare import Prepared, _config, prepare_loaded
from ._sources import Loaded, kind_of
from ._stream import (CHUNK_BYTES, MappedArray, StreamSource, _bad_values, cache_folder, decide_stream, drop_cache,
                      drop_with, prepare_source, stream_limit)
from ._table import (MULTILABEL_FIX, NUMERIC_SHARE, Table, categorical_columns, check_finite, choose_columns,
                     numeric_share, parse_categorical, table_from_arrays)

FRAME = "DataFrame"
ARRAYS = "arrays"
WHAT = ("NumPy arrays (X, y), a pandas DataFrame with the label column, a torch Dataset of (x, y) items "
        "or a DataLoader")


def prepare_python(data, data_cfg, seed: int, source: str = "recipe", *, rows: dict | None = None,
                   batch_size: int | None = None, fingerprint: dict | None = None) -> Prepared:
    """Check, split and transform data given as Python objects into what :func:`danlu.data.prepare`
    returns for a recipe's own source (same fields, same split function, a savable pipeline).

    ``data`` is one of:

    * ``(X, y)``: NumPy arrays (or tensors, or lists) with ``X`` of shape ``(N, F)``, ``(N, T, F)``
      or ``(N, C, H, W)`` and ``y`` of shape ``(N,)`` or ``(N, k)``; ``(DataFrame, Series)`` is the
      DataFrame with the Series as its label column;
    * a pandas DataFrame: features and label are columns, chosen and typed as for a CSV file;
    * a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` pairs: read once, item by
      item, into tensors in memory; or, streamed (``data.stream: true``, or ``auto`` when its float32
      features would take more than a share of the free memory), its labels read in one pass and
      its items read by index batch by batch (:func:`dataset_source`);
    * a ``torch.utils.data.IterableDataset`` of ``(x, y)`` pairs: read once in order, into memory, or
      (streamed) into a cache file of danlu's own that the run then reads batch by batch;
    * a ``torch.utils.data.DataLoader``: its ``dataset`` is used as above. Its sampler and batch size
      are not: the recipe's seed splits and shuffles, and ``train.batch_size`` batches (pass it as
      ``batch_size`` to be warned when the loader's differs).

    ``data_cfg`` is the recipe's ``data`` section; its ``source``, ``name`` and ``path`` are not used.
    ``rows`` replaces the seeded split, as in :func:`~danlu.data.prepare`. ``fingerprint`` (the
    resume of a run trained on a streamed Dataset): the run's record of that data
    (``reader['python']['fingerprint']``, see :class:`DatasetSource`); the data streams again and other
    data is refused.
    """
    cfg = _config(data_cfg, source)
    if fingerprint is not None:   # the run streamed this data: so does its resume (the same statistics)
        if not isinstance(data, (torch.utils.data.Dataset, torch.utils.data.DataLoader)):
            raise UserError(f"data: this run was trained on a streamed Dataset; pass that Dataset again, "
                            f"not a {type(data).__name__}")
        cfg = Node({**cfg, "stream": True})
    loaded = load_python(data, cfg, batch_size, stream=True)
    if isinstance(loaded, DatasetSource):   # a Dataset that stays where it is, read batch by batch
        loaded.expected = fingerprint
        return prepare_source(loaded, cfg, seed, rows, source)
    return prepare_loaded(loaded, cfg, seed, source, rows)


def load_python(data, cfg, batch_size: int | None = None, stream: bool = False) -> Loaded | DatasetSource:
    """The table and reader of data given as Python objects (see :func:`prepare_python`); with
    ``stream``, a Dataset that ``data.stream`` streams comes back as a :class:`StreamSource`."""
    if _is_frame(data):
        return _from_frame(data, cfg)
    if isinstance(data, torch.utils.data.DataLoader):
        return _from_loader(data, batch_size, cfg if stream else None)
    if isinstance(data, torch.utils.data.Dataset):
        return _from_dataset(data, None, cfg if stream else None)
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

def _from_loader(loader, batch_size: int | None, cfg=None) -> Loaded | DatasetSource:
    dataset = loader.dataset
    if batch_size is not None and loader.batch_size not in (None, batch_size):
        warnings.warn(f"the DataLoader's batch_size {loader.batch_size} is not used: danlu splits and shuffles "
                      f"its dataset by the recipe's seed and batches by train.batch_size ({batch_size})",
                      UserWarning, stacklevel=3)
    return _from_dataset(dataset, {"type": "DataLoader", "batch_size": loader.batch_size}, cfg)


def _from_dataset(dataset, about: dict | None = None, cfg=None) -> Loaded | DatasetSource:
    """A Dataset's items as a table in memory; or, when ``cfg`` (the data section) is given and its
    ``stream`` says so, a :class:`DatasetSource` that reads them where they are."""
    items = _Items(f"Dataset {type(dataset).__name__}")
    about = {"type": "Dataset", "class": type(dataset).__name__, **(about or {})}
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return _from_iterable(dataset, items, about, cfg)
    try:
        n = len(dataset)
    except TypeError:
        raise UserError(f"{items.where} has no len(); give a map-style Dataset (with __len__ and __getitem__) "
                        f"or an IterableDataset") from None
    if n == 0:
        raise DataError(f"{items.where}: no items; the data set is empty")
    if cfg is not None and cfg["stream"] is not False:
        x, _ = items.check(0, dataset[0])
        if _streams(cfg, items.where, n * max(1, x.size) * 4):
            return dataset_source(dataset, items, about)
    xs, ys = [], []
    for i in range(n):
        x, y = items.check(i, dataset[i])
        xs.append(x)
        ys.append(y)
    return _from_arrays(np.stack(xs), _stack_labels(ys), items.where, about)


class _Items:
    """Checks a Dataset's items one by one: ``(x, y)`` pairs with the shapes of item 0."""

    def __init__(self, where: str):
        self.where = where
        self.x_shape = self.y_shape = None

    def check(self, i: int, item) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            got = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
            raise DataError(f"{self.where}: item {i} is {got}, not an (x, y) pair; make __getitem__ return "
                            f"(features, label)")
        x, y = (_as_array(v, self.where, f"item {i}") for v in item)
        if self.x_shape is None:
            self.x_shape, self.y_shape = x.shape, y.shape
        if x.shape != self.x_shape:
            raise DataError(f"{self.where}: item {i} has x of shape {x.shape} but item 0 has {self.x_shape}; every "
                            f"item needs the same shape (pad, crop or resize them)")
        if y.shape != self.y_shape:
            raise DataError(f"{self.where}: item {i} has y of shape {y.shape} but item 0 has {self.y_shape}; give "
                            f"every item a label of the same shape")
        return x, y

    def row_shape(self) -> tuple[int, ...]:
        """The per-sample shape of the x's, as :func:`_from_arrays` makes it (a number: one feature)."""
        shape = tuple(self.x_shape) or (1,)
        if len(shape) > 3 or len(self.y_shape) > 1:
            raise DataError(f"{self.where}: each x must be (F,), (T, F) or (C, H, W) and each y a label or (k,); got "
                            f"{tuple(self.x_shape)} and {tuple(self.y_shape)}")
        return shape

    def row(self, x: np.ndarray) -> np.ndarray:
        """One x as a float32 row of :meth:`row_shape` (numbers only, as in memory)."""
        return np.asarray(_numeric_features(x, self.where), dtype=np.float32).reshape(self.row_shape())

    def labels(self, ys: list[np.ndarray]) -> np.ndarray:
        """The labels of every item, as :func:`_from_arrays` keeps them."""
        y = _stack_labels(ys)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        return y.astype(object) if y.dtype.kind not in "fiub" else y


# --- streamed Datasets ------------------------------------------------------------------------

def _stream_refused(cfg) -> str | None:
    if cfg["task"] == "multilabel":
        return "data.stream: true does not read multi-label Datasets yet; set data.stream: false"
    if cfg["impute"] not in ("none", "drop"):
        return (f"data.impute: {cfg['impute']} needs the data in memory; with data.stream: true give items "
                f"without missing values, or set data.stream: false")
    return None


def _streams(cfg, where: str, nbytes: int | None) -> bool:
    """Whether ``data.stream`` streams a Dataset whose float32 features take ``nbytes`` (None: not
    known yet): the same rule as for every source (:func:`~danlu.data._stream.decide_stream`)."""
    return decide_stream(cfg["stream"], _stream_refused(cfg), nbytes, where)


class DatasetRows:
    """The x's of a map-style Dataset as float32 rows, read by index when asked: ``mapped`` of a
    :class:`DatasetSource` (``dataset[i]`` checked as in memory on every read)."""

    dtype = np.dtype(np.float32)

    def __init__(self, dataset, items: _Items):
        self.dataset, self.items, self.path = dataset, items, items.where
        self.row_shape = items.row_shape()
        self.shape = (len(dataset), *self.row_shape)
        self.row_bytes = math.prod(self.row_shape) * 4

    def __len__(self) -> int:
        return self.shape[0]

    def range(self, lo: int, hi: int) -> np.ndarray:
        return self.take(np.arange(lo, hi))

    def take(self, rows: np.ndarray) -> np.ndarray:
        return self.read(rows)[0]

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The rows' x's (float32) and their labels."""
        out = np.empty((len(rows), *self.row_shape), np.float32)
        ys = []
        for k, i in enumerate(rows):
            x, y = self.items.check(int(i), self.dataset[int(i)])
            out[k] = self.items.row(x)
            ys.append(y)
        return out, ys


class DatasetSource(StreamSource):
    """A streamed Dataset: ``mapped`` reads a map-style Dataset's items by index, or the cache file an
    IterableDataset was written to. The check pass reads every item once (and, for a map-style
    Dataset, collects the labels), then records a fingerprint of the data in the reader
    (``reader['python']['fingerprint']``: a checksum of the labels and of a sample of items), which
    a resumed run compares with the data it is given again (``expected``)."""

    expected: dict | None = None

    def check_pass(self) -> None:
        where = self.path
        if self.expected is not None and self.expected.get("items") != self._items_digest():
            raise DataError(f"{where}: is not the data this run was trained on (its items differ); pass the same "
                            f"Dataset, with its items in the same order")
        if self.labels is None:   # map-style: the labels are read in the pass that checks the values
            ys = []
            step = max(1, CHUNK_BYTES // max(1, self.mapped.row_bytes))
            for lo in range(0, len(self.mapped), step):
                idx = np.arange(lo, min(len(self.mapped), lo + step))
                block, got = self.mapped.read(idx)
                _bad_values(self, block, idx)
                ys += got
            self.labels = self.mapped.items.labels(ys)
        else:
            super().check_pass()
        digest = {"items": self._items_digest(), "labels": _labels_digest(self.labels)}
        if self.expected is not None and self.expected.get("labels") != digest["labels"]:
            raise DataError(f"{where}: is not the data this run was trained on (its labels differ); pass the same "
                            f"Dataset, with its items in the same order")
        self.reader["python"]["fingerprint"] = digest

    def _items_digest(self) -> str:
        """A checksum of the number of items, their shape and the x's of up to 16 items spread evenly."""
        n = len(self.mapped)
        sample = np.unique(np.linspace(0, n - 1, min(n, 16)).round().astype(np.int64))
        h = hashlib.sha256(f"{n} {tuple(self.mapped.shape[1:])}".encode())
        h.update(np.ascontiguousarray(self.mapped.take(sample), dtype=np.float32).tobytes())
        return h.hexdigest()


def _labels_digest(labels: np.ndarray) -> str:
    h = hashlib.sha256(f"{labels.dtype.str} {labels.shape}".encode())
    if labels.dtype == object:
        h.update("\x1f".join(repr(v) for v in labels.tolist()).encode())
    else:
        h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()


def _source(mapped, labels, shape: tuple[int, ...], about: dict, where: str) -> DatasetSource:
    flat = [f"x{i}" for i in range(math.prod(shape))]
    names = flat if len(shape) == 1 else [f"channel{i}" for i in range(shape[-1] if len(shape) == 2 else shape[0])]
    reader = {"format": "table", "columns": flat if len(shape) == 1 else None, "label": None, "divisor": 1.0,
              "python": {**about, "rows": len(mapped)}}
    return DatasetSource(where, mapped, None, labels, shape, names, reader, "label")


def dataset_source(dataset, items: _Items, about: dict) -> DatasetSource:
    """A map-style Dataset read where it is: items by index, labels collected by the check pass."""
    mapped = DatasetRows(dataset, items)
    return _source(mapped, None, mapped.row_shape, about, items.where)


def _from_iterable(dataset, items: _Items, about: dict, cfg) -> Loaded | DatasetSource:
    """An IterableDataset, read once in order. Its x's are kept in memory, or (streamed) written as
    float32 rows to a cache file of danlu's own (removed when the process ends), which the run then
    reads by row like a .npy file: so a streamed IterableDataset is shuffled by the seed and resumes
    exactly. ``data.stream: auto`` keeps the items in memory until they pass the share of free
    memory a data set may take, then moves them to the cache."""
    limit = None   # bytes of features kept in memory before they move to the cache (None: never)
    if cfg is not None and _streams(cfg, items.where, None):   # data.stream: true
        limit = -1
    elif cfg is not None and cfg["stream"] == "auto" and _stream_refused(cfg) is None:
        limit = stream_limit()
    xs, ys, cache, nbytes = [], [], None, 0
    try:
        for i, item in enumerate(dataset):
            x, y = items.check(i, item)
            ys.append(y)
            if cache is not None:
                cache.write(items.row(x))
                continue
            xs.append(x)
            nbytes += max(1, x.size) * 4
            if limit is not None and nbytes > limit:
                cache = _Cache(items)
                for kept in xs:
                    cache.write(items.row(kept))
                xs = []
        if not ys:
            raise DataError(f"{items.where}: no items; the data set is empty")
        if cache is None:
            return _from_arrays(np.stack(xs), _stack_labels(ys), items.where, about)
        mapped = cache.close(len(ys))
    except BaseException:
        if cache is not None:
            cache.remove()
        raise
    return _source(mapped, items.labels(ys), mapped.row_shape, about, items.where)


class _Cache:
    """float32 rows written one after another to a file in a temporary folder of danlu's own, removed
    once nothing reads it (or, at the latest, when the process ends)."""

    def __init__(self, items: _Items):
        self.row_shape = items.row_shape()
        self.folder = cache_folder()
        self.path = self.folder / "rows.f32"
        self.file = open(self.path, "wb")

    def write(self, row: np.ndarray) -> None:
        self.file.write(row.tobytes())

    def close(self, n: int) -> MappedArray:
        """The rows written, read as an array; the folder goes when that array does."""
        self.file.close()
        mapped = MappedArray(self.path, 0, (n, *self.row_shape), np.dtype(np.float32), False)
        drop_with(mapped, self.folder)
        return mapped

    def remove(self) -> None:
        self.file.close()
        drop_cache(self.folder, os.getpid())


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
