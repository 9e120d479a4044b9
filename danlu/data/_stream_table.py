"""Data that does not fit, from tables: CSV and Parquet files read in chunks of rows.

A table's text has to be encoded before a model can read it (numbers parsed, categories coded,
missing cells filled), so a streamed table is read in a few passes of bounded chunks:

1. **types and checks** — every cell of the chosen columns once: which columns are numeric
   (``data.categorical: auto`` as in memory, on every row), and the same one-line errors as the
   in-memory reader for bad cells, infinite values, missing labels or features;
2. **rows** — labels into memory (one value a row), the rows ``data.impute: drop`` keeps, and every
   kept row into a raw cache on disk (float64; categories as ids of the values seen so far);
3. **fit** (after the seeded split, on the training rows only) — category sets and fill values
   as :meth:`FeatureEncoder.fit` computes them; the fills from a column-wise cache of the training
   rows, one column in memory at a time, so that mean, median and most_frequent are exactly the
   in-memory numbers;
4. **encode** — every raw row as :meth:`FeatureEncoder.transform` encodes it, into a float32 cache
   the split's :class:`StreamedArray` reads batch by batch.

Both caches live in a temporary folder danlu creates (``TMPDIR``); it is removed when the data are
no longer used or when the process ends, or, after a kill, by the next streamed table's start. The chunks are parsed by the same functions as the
in-memory reader (``_table.parse_numeric`` and friends, the CSV rows as ``_csv.read_csv`` reads
them), so the streamed and in-memory runs of one file get the same rows, codes and fills.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import _stream
from ._csv import CsvText, _header, is_missing
from ._encode import IMPUTE_FILLS, FeatureEncoder, _most_frequent
from ._sources import Loaded, resolve_path
from ._stream import MappedArray, StreamSource, Streamer, register_streamer
from ._table import (FLOAT32_MAX, NUMERIC_SHARE, Table, _cell_text, _number, categorical_columns,
                     choose_columns, parse_categorical, parse_numeric)

#: rows per chunk read from the file, at most
CHUNK_ROWS = 16384
#: cells per chunk, at most (a chunk's cells are Python strings of some 60 bytes each)
CHUNK_CELLS = 2**19
#: bytes per cell of a table read whole (a Python string and its list slot, the float64 copy):
#: what ``auto`` weighs against the free memory for a CSV file
CSV_CELL_BYTES = 80

PARQUET_HINT = "install it with pip install 'danlu[parquet]' (or pip install pyarrow)"


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"data.source parquet needs pyarrow, which is not installed; {PARQUET_HINT}, "
                        f"or convert the file to CSV") from None
    return pyarrow


# --- a chunk of rows --------------------------------------------------------------------------

@dataclass
class Chunk:
    """Rows of a table: the line (CSV) or row number (Parquet) of each, and the cells of each chosen
    column — CSV text as ``read_csv`` gives it, or a Parquet numeric column as float64 (NaN missing)."""

    lines: list[int]
    columns: dict[str, list[str] | tuple[str, ...] | np.ndarray]

    def __len__(self) -> int:
        return len(self.lines)


def _text_cells(cells) -> list[str]:
    """Cells as text: a numeric column declared categorical (Parquet) gets its numbers as text."""
    if not isinstance(cells, np.ndarray):
        return cells
    return ["" if math.isnan(v) else (str(int(v)) if float(v).is_integer() else repr(float(v))) for v in cells]


def chunk_rows(width: int, cell_bytes: int | None = None) -> int:
    """Rows per chunk of a table ``width`` cells wide: text cells, or binary rows of ``cell_bytes``."""
    if cell_bytes is None:
        return max(1, min(CHUNK_ROWS, CHUNK_CELLS // max(1, width)))
    return max(1, min(CHUNK_ROWS, _stream.CHUNK_BYTES // max(1, width * cell_bytes)))


def _numbers(cells, name: str, lines: list[int], where: str, fix: str = "list '{name}' in data.categorical"):
    """``parse_numeric``'s floats: NaN for a missing cell, else ``float(cell)``. Its loop is taken only
    for a missing text other than '' (an empty cell is the common one)."""
    if isinstance(cells, np.ndarray):
        return cells
    try:
        return np.array([float(c) if c else math.nan for c in cells], dtype=np.float64)
    except ValueError:   # 'NA', 'null', ... (or a bad cell, which it names)
        return parse_numeric(list(cells), name, lines, where, fix)


# --- CSV: the rows as read_csv reads them ------------------------------------------------------

def _decode_error(path: Path) -> DataError:
    """The in-memory reader's message for a file that is not UTF-8, found in a bounded scan."""
    bom = b"\xef\xbb\xbf"
    with open(path, "rb") as f:
        skip = len(bom) if f.read(3) == bom else 0
        f.seek(skip)
        offset = 0   # bytes after the byte-order mark, where utf-8-sig counts from
        for raw in f:   # a line never splits a UTF-8 character: b"\n" is no part of one
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                start = offset + err.start
                break
            offset += len(raw)
        else:
            return DataError(f"{path}: not UTF-8 text; save the file with UTF-8 encoding")
        f.seek(0)   # the line, counted as the in-memory reader does: newlines in the first `start` raw bytes
        newlines, left = 0, start
        while left > 0:
            block = f.read(min(left, 2**20))
            if not block:
                break
            newlines += block.count(b"\n")
            left -= len(block)
    return DataError(f"{path}: not UTF-8 text at byte {start} (line {newlines + 1}); "
                     f"save the file with UTF-8 encoding")


def csv_rows(path: Path):
    """The header, then (line, cells) of each data row: as :func:`_csv.read_csv` reads them (blank
    rows skipped, cells stripped, the same one-line errors), one row at a time."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: file not found; check data.path")
    header, text, any_rows = None, False, False
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            try:
                for cells in reader:
                    if not cells or all(not c.strip() for c in cells):
                        text = text or any(not c.isspace() and c for c in cells)
                        continue
                    text = True
                    cells = [c.strip() for c in cells]
                    if header is None:
                        header = _header(cells, path)
                        yield header
                        continue
                    if len(cells) != len(header):
                        raise DataError(
                            f"{path}: line {reader.line_num} has {len(cells)} cells but the header has "
                            f"{len(header)}; fix that row (a missing or stray comma, or an unquoted comma in a value)")
                    any_rows = True
                    yield reader.line_num, cells
            except csv.Error as err:
                raise DataError(f"{path}: line {reader.line_num}: {err}; fix the CSV quoting") from None
    except UnicodeDecodeError:
        raise _decode_error(path) from None
    if header is None and not text:
        raise DataError(f"{path}: the file is empty; it needs a header line and data rows")
    if not any_rows:
        raise DataError(f"{path}: no data rows after the header line; add rows")


class CsvFile:
    line_word = "line"

    def __init__(self, path: Path):
        self.path = path
        rows = csv_rows(path)
        self.header = next(rows)
        rows.close()

    def chunks(self, names: list[str]):
        rows = csv_rows(self.path)
        next(rows)
        idx = [self.header.index(n) for n in names]
        step = chunk_rows(len(names))
        lines, block = [], []
        for line, cells in rows:
            lines.append(line)
            block.append(cells)
            if len(block) >= step:
                yield self._chunk(lines, block, names, idx)
                lines, block = [], []
        if block:
            yield self._chunk(lines, block, names, idx)

    @staticmethod
    def _chunk(lines: list[int], block: list[list[str]], names: list[str], idx: list[int]) -> Chunk:
        columns = list(zip(*block))   # row-major cells to one tuple of cells a column
        return Chunk(lines, {n: columns[j] for n, j in zip(names, idx)})

    def size(self, width: int) -> int:
        """Bytes reading the file whole would take: its cells as Python strings and the float64 table."""
        total = self.path.stat().st_size
        with open(self.path, "rb") as f:
            sample = f.read(2**20)
        lines = max(1, sample.count(b"\n"))
        rows = total * lines / max(1, len(sample))
        return int(rows * len(self.header) * CSV_CELL_BYTES + total)


# --- Parquet ----------------------------------------------------------------------------------

class ParquetFile:
    line_word = "row"

    def __init__(self, path: Path):
        pa = _pyarrow()
        self.path = path
        if path.is_dir():
            raise DataError(f"{path}: is a directory, expected a Parquet file")
        try:
            self.file = pa.parquet.ParquetFile(path)
        except (OSError, pa.ArrowException) as err:
            raise DataError(f"{path}: not a readable Parquet file ({err}); write it with pyarrow or pandas "
                            f"(DataFrame.to_parquet)") from None
        self.schema = self.file.schema_arrow
        self.header = _header([str(n) for n in self.schema.names], path)
        if self.file.metadata.num_rows == 0:
            raise DataError(f"{path}: no data rows; the data set is empty")

    def _kind(self, name: str) -> str:
        pa = _pyarrow()
        t = self.schema.field(self.header.index(name)).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "number"
        if pa.types.is_boolean(t):   # True / False, as a CSV file written by pandas holds them
            return "bool"
        if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
                or getattr(pa.types, "is_string_view", lambda t: False)(t)):
            return "text"
        raise DataError(f"{self.path}: column '{name}' holds {t} values; danlu reads numeric and string columns: "
                        f"convert it, or leave it out of data.features")

    def chunks(self, names: list[str]):
        pa = _pyarrow()
        kinds = {n: self._kind(n) for n in names}
        first = 0
        columns = [self.schema.names[self.header.index(n)] for n in names]
        for batch in self.file.iter_batches(batch_size=chunk_rows(len(names)), columns=columns):
            out = {}
            for name, col in zip(names, batch.columns):
                if kinds[name] == "number":
                    out[name] = col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
                elif kinds[name] == "bool":
                    out[name] = ["" if v is None else str(v) for v in col.to_pylist()]
                else:
                    out[name] = ["" if v is None else v.strip() for v in col.cast(pa.string()).to_pylist()]
            yield Chunk(list(range(first, first + batch.num_rows)), out)
            first += batch.num_rows

    def size(self, width: int) -> int:
        """Bytes reading the file whole would take: the Arrow table, the float64 table and float32 X."""
        return int(self.file.metadata.num_rows * width * 20)


def open_table(path: Path, source: str):
    return ParquetFile(path) if source == "parquet" else CsvFile(path)


# --- pass 1: what each column holds -----------------------------------------------------------

@dataclass
class ColumnStats:
    """What the in-memory reader would learn of one column, gathered chunk by chunk."""

    present: int = 0              # cells that are not missing text
    numeric: int = 0              # ... of them, numbers
    first_bad: tuple | None = None      # (line, text) of the first present cell that is not a number
    missing: int = 0              # missing text ('', NA, nan, ...)
    first_missing: int | None = None
    nan: int = 0                  # numbers that are NaN without being missing text ('+nan'): missing once numeric
    first_nan: int | None = None
    inf: int = 0
    big: int = 0
    big_example: float | None = None
    first_unusable: int | None = None

    @property
    def share(self) -> float:
        return 1.0 if self.present == 0 else self.numeric / self.present

    def missing_as(self, numeric: bool) -> tuple[int, int | None]:
        """(count, first line) of the cells missing in a numeric or a categorical column."""
        if not numeric:
            return self.missing, self.first_missing
        firsts = [v for v in (self.first_missing, self.first_nan) if v is not None]
        return self.missing + self.nan, (min(firsts) if firsts else None)

    def add(self, cells, lines: list[int]) -> None:
        if isinstance(cells, np.ndarray):   # a Parquet numeric column: NaN is its only missing value
            values, missing, bad = cells, np.isnan(cells), np.zeros(len(cells), dtype=bool)
        else:
            values, missing, bad = self._parse(cells)
            if bad.any() and self.first_bad is None:
                i = int(np.argmax(bad))
                self.first_bad = (lines[i], cells[i])
        n_missing, n_bad = int(missing.sum()), int(bad.sum())
        self.present += len(values) - n_missing
        self.numeric += len(values) - n_missing - n_bad
        if n_missing:
            if self.first_missing is None:
                self.first_missing = lines[int(np.argmax(missing))]
            self.missing += n_missing
        nan = np.isnan(values) & ~missing & ~bad
        if nan.any():
            if self.first_nan is None:
                self.first_nan = lines[int(np.argmax(nan))]
            self.nan += int(nan.sum())
        with np.errstate(invalid="ignore"):
            inf = np.isinf(values)
            big = ~inf & (np.abs(values) > FLOAT32_MAX)
        if inf.any() or big.any():
            if self.first_unusable is None:
                self.first_unusable = lines[int(np.argmax(inf | big))]
            if big.any() and self.big_example is None:
                self.big_example = float(values[big][0])
            self.inf += int(inf.sum())
            self.big += int(big.sum())

    @staticmethod
    def _parse(cells: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(numbers, NaN where none; missing-text mask; not-a-number mask) of text cells."""
        n = len(cells)
        bad = np.zeros(n, dtype=bool)
        try:   # the common case: every cell a number or empty ('nan' among them)
            values = np.array([float(c) if c else math.nan for c in cells], dtype=np.float64)
        except ValueError:
            values = np.full(n, np.nan)
            for i, cell in enumerate(cells):
                if is_missing(cell):
                    continue
                v = _number(cell)
                if v is None:
                    bad[i] = True
                else:
                    values[i] = v
        missing = np.zeros(n, dtype=bool)
        nan = np.flatnonzero(np.isnan(values) & ~bad)
        missing[nan] = [is_missing(cells[i]) for i in nan]
        return values, missing, bad


def _what(stats: ColumnStats) -> str:
    """As ``_table._what``, from counts."""
    parts = []
    if stats.inf:
        parts.append(f"{stats.inf} infinite value(s)")
    if stats.big:
        parts.append(f"{stats.big} value(s) beyond the float32 range ±{FLOAT32_MAX:.1e} such as {stats.big_example:g}")
    return " and ".join(parts)


def _bad_cells(stats: ColumnStats, name: str, where: str, fix: str) -> DataError:
    """As ``_table.parse_numeric``'s message, for the whole column."""
    count = stats.present - stats.numeric
    line, cell = stats.first_bad
    return DataError(f"{where}: column '{name}' line {line}: {_cell_text(cell)} is not a number "
                     f"({count} such cell{'s' if count > 1 else ''}); fix the cells, leave them empty "
                     f"and set data.impute, or {fix.format(name=name)}")


# --- the streamed table -----------------------------------------------------------------------

class _Cache:
    """The cache folder of one streamed table; the files that read it hold it, and it is removed
    once none does."""

    def __init__(self):
        self.folder = _stream.cache_folder()
        _stream.drop_with(self, self.folder)


class _Interned:
    """Text labels share one string object per distinct value (a label a row stays 8 bytes)."""

    def __init__(self):
        self.seen: dict[str, str] = {}

    def __call__(self, col: np.ndarray) -> np.ndarray:
        out = np.empty(len(col), dtype=object)
        out[:] = [None if v is None else self.seen.setdefault(v, v) for v in col]
        return out


@dataclass
class _Categories:
    """Ids for the values of one categorical column, in the order first seen (all rows)."""

    ids: dict[str, int] = field(default_factory=dict)

    def encode(self, col: np.ndarray) -> np.ndarray:
        out = np.full(len(col), np.nan)
        for i, v in enumerate(col):
            if v is not None:
                out[i] = self.ids.setdefault(v, len(self.ids))
        return out

    def values(self) -> list[str]:
        out = [""] * len(self.ids)
        for v, i in self.ids.items():
            out[i] = v
        return out


class TableSource(StreamSource):
    """A CSV or Parquet table streamed: checked and typed in :meth:`check_pass`, encoded into a
    float32 cache by :meth:`fit_encoder` (after the split); ``mapped`` reads that cache."""

    def __init__(self, path: Path, cfg, source: str):
        self.file = open_table(path, source)
        self.cfg = cfg
        table = CsvText(str(path), self.file.header, [], [])
        self.names, label = choose_columns(table, cfg["features"], cfg["label"])
        if isinstance(label, list):
            raise DataError(f"{path}: data.stream: true does not read multi-label tables yet; set data.stream: false")
        if cfg["categorical"] != "auto":
            categorical_columns(table, self.names, cfg["categorical"])   # the names, checked as in memory
        reader = {"format": "table", "columns": self.names, "label": label, "divisor": 1.0, "categorical": []}
        super().__init__(path, None, None, None, (len(self.names),), self.names, reader, label)
        self.where = str(path)
        self.cat_names: set[str] = set()
        self.label_numeric = True
        self.n_rows = 0
        self.raw: MappedArray | None = None
        self.categories: dict[int, _Categories] = {}
        self.cache: _Cache | None = None

    # pass 1 and 2 -------------------------------------------------------------------------
    def check_pass(self) -> None:
        stats = self._types_pass()
        self._check_like_memory(stats)
        self._rows_pass()

    def _types_pass(self) -> dict[str, ColumnStats]:
        wanted = [*self.names, self.label_name]
        stats = {n: ColumnStats() for n in wanted}
        for chunk in self.file.chunks(wanted):
            for name in wanted:
                stats[name].add(chunk.columns[name], chunk.lines)
        return stats

    def type_columns(self, stats: dict[str, ColumnStats]) -> None:
        """Which columns are categorical and whether the label is numeric, as ``categorical_columns``
        and ``parse_labels`` decide on every row; bad cells refused as ``table_from_csv`` does."""
        cfg, where, label = self.cfg, self.where, self.label_name
        if cfg["categorical"] == "auto":
            self.cat_names = {n for n in self.names if stats[n].share <= NUMERIC_SHARE}
        else:
            header_only = CsvText(where, self.file.header, [], [])
            self.cat_names = categorical_columns(header_only, self.names, cfg["categorical"])
        self.reader["categorical"] = [n for n in self.names if n in self.cat_names]
        for name in self.names:   # table_from_csv: parse_numeric, column by column
            if name not in self.cat_names and stats[name].first_bad is not None:
                raise _bad_cells(stats[name], name, where, "list '{name}' in data.categorical")
        self.label_numeric = stats[label].share > NUMERIC_SHARE
        if self.label_numeric and stats[label].first_bad is not None:
            raise _bad_cells(stats[label], label, where, "set data.task: classification if they are classes")

    def _check_like_memory(self, stats: dict[str, ColumnStats]) -> None:
        """The in-memory reader's errors, in its order, from the column statistics."""
        self.type_columns(stats)
        cfg, where, label, label_stats = self.cfg, self.where, self.label_name, stats[self.label_name]
        numeric = [n for n in self.names if n not in self.cat_names]
        word = self.file.line_word
        if self.label_numeric and (label_stats.inf or label_stats.big):   # check_finite: labels first
            raise DataError(f"{where}: label '{label}' has {_what(label_stats)} (first on {word} "
                            f"{label_stats.first_unusable}); replace them with finite numbers")
        unusable = [n for n in numeric if stats[n].inf or stats[n].big]
        if unusable:
            s = stats[unusable[0]]
            raise DataError(f"{where}: column '{unusable[0]}' has {_what(s)} (first on {word} {s.first_unusable}); "
                            f"replace them with finite numbers (rescale the column if it is that large), or empty "
                            f"the cells and set data.impute")
        n_missing, first = label_stats.missing_as(self.label_numeric)
        if n_missing and cfg["impute"] != "drop":
            raise DataError(f"{where}: label '{label}' is missing on {n_missing} row(s) (first on {word} {first}); "
                            f"fill the labels in or set data.impute: drop to drop those rows")
        missing = {n: stats[n].missing_as(n not in self.cat_names) for n in self.names}
        if cfg["impute"] == "none" and any(c for c, _ in missing.values()):
            raise DataError(f"{where}: missing values in {self._missing_summary(missing)}; set data.impute to "
                            f"mean, median, most_frequent or drop, or fill the cells in")
        if cfg["shape"] is not None and self.cat_names:
            names = ", ".join(n for n in self.names if n in self.cat_names)
            raise DataError(f"{where}: data.shape cannot reshape rows with categorical columns ({names}); "
                            f"remove data.shape or those columns")

    def _missing_summary(self, missing: dict, limit: int = 6) -> str:
        """As ``_table.missing_summary``."""
        cols = [(n, c) for n, (c, _) in missing.items() if c]
        text = ", ".join(f"'{n}' ({c})" for n, c in cols[:limit])
        if len(cols) > limit:
            text += f" and {len(cols) - limit} more columns"
        first = min(f for c, f in missing.values() if c)
        return f"{text} (first on {self.file.line_word} {first})"

    def typed(self, chunk: Chunk) -> Table:
        """A chunk as ``table_from_csv`` types it: floats for numeric columns, text for categorical ones."""
        where, lines = self.where, chunk.lines
        values = np.full((len(chunk), len(self.names)), np.nan)
        cats = {}
        for j, name in enumerate(self.names):
            cells = chunk.columns[name]
            if name in self.cat_names:
                cats[j] = parse_categorical(_text_cells(cells))
            else:
                values[:, j] = _numbers(cells, name, lines, where)
        cells = chunk.columns[self.label_name]
        if self.label_numeric:
            labels = _numbers(cells, self.label_name, lines, where, "set data.task: classification if they are classes")
        else:
            labels = parse_categorical(_text_cells(cells))
        return Table(where, list(self.names), values, cats, labels, np.asarray(lines), self.file.line_word)

    def _rows_pass(self) -> None:
        """Labels into memory, the kept rows' raw values into the raw cache (categories as ids)."""
        drop = self.cfg["impute"] == "drop"
        self.cache = self.cache or _Cache()
        self.folder = self.cache.folder
        self.categories = {j: _Categories() for j, n in enumerate(self.names) if n in self.cat_names}
        intern = _Interned()
        labels, kept_any, labelled_any = [], False, False
        raw_path = self.folder / "raw.f64"
        with open(raw_path, "wb") as out:
            for chunk in self.file.chunks([*self.names, self.label_name]):
                table = self.typed(chunk)
                keep = ~table.label_missing()
                labelled_any = labelled_any or bool(keep.any())
                if drop:
                    keep &= ~table.missing_mask().any(axis=1)
                if not keep.all():
                    table = table.take(np.flatnonzero(keep))
                kept_any = kept_any or len(table) > 0
                raw = table.values
                for j, col in table.cats.items():
                    raw[:, j] = self.categories[j].encode(col)
                out.write(np.ascontiguousarray(raw, dtype=np.float64).tobytes())
                labels.append(table.labels if self.label_numeric else intern(table.labels))
        if not kept_any:   # as _prepare._keep
            why = "missing values" if labelled_any else "a missing label"
            raise DataError(f"{self.where}: every row has {why}, so data.impute: drop leaves nothing; "
                            f"fill the cells in or choose mean, median or most_frequent")
        self.labels = np.concatenate(labels)
        self.n_rows = len(self.labels)
        self.raw = MappedArray(raw_path, 0, (self.n_rows, len(self.names)), np.dtype(np.float64), False)
        self.raw.cache = self.cache

    # pass 3 and 4 -------------------------------------------------------------------------
    def fit_encoder(self, train_rows: np.ndarray, cfg) -> FeatureEncoder:
        """Categories and fills from the training rows (as FeatureEncoder.fit), then every row
        encoded (as FeatureEncoder.transform) into the float32 cache ``mapped`` reads."""
        impute = cfg["impute"]
        train = np.asarray(train_rows, dtype=np.int64)
        order = np.sort(train)
        cat_cols = sorted(self.categories)
        numeric = [j for j in range(len(self.names)) if j not in self.categories]
        seen = {j: np.zeros(len(self.categories[j].ids), dtype=np.int64) for j in cat_cols}
        fills_wanted = impute in IMPUTE_FILLS
        columns = self._column_cache(order, numeric, seen) if fills_wanted else None
        if not fills_wanted:
            for _, block in self._raw_chunks(order):
                self._count_categories(block, seen)
        values = {j: self.categories[j].values() for j in cat_cols}
        categories = {j: sorted(values[j][i] for i in np.flatnonzero(seen[j])) for j in cat_cols}
        fills = self._fills(columns, train, order, numeric, seen, values, impute) if fills_wanted else None
        encoder = FeatureEncoder(impute, categories, fills)
        self._encode(encoder, values)
        return encoder

    def _raw_chunks(self, rows: np.ndarray | None = None):
        n = self.n_rows if rows is None else len(rows)
        step = chunk_rows(len(self.names), 8)
        for lo in range(0, n, step):
            hi = min(n, lo + step)
            yield (lo, hi), (self.raw.range(lo, hi) if rows is None else self.raw.take(rows[lo:hi]))

    def _count_categories(self, block: np.ndarray, seen: dict) -> None:
        for j, counts in seen.items():
            ids = block[:, j]
            ids = ids[~np.isnan(ids)].astype(np.int64)
            counts += np.bincount(ids, minlength=len(counts))

    def _column_cache(self, order: np.ndarray, numeric: list[int], seen: dict) -> Path:
        """The training rows' numeric columns, column after column (float64), in file-row order."""
        path = self.folder / "train_columns.f64"
        n = len(order)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for (lo, _), block in self._raw_chunks(order):
                self._count_categories(block, seen)
                for k, j in enumerate(numeric):
                    os.pwrite(fd, np.ascontiguousarray(block[:, j]).tobytes(), (k * n + lo) * 8)
        finally:
            os.close(fd)
        return path

    def _fills(self, columns: Path, train: np.ndarray, order: np.ndarray, numeric: list[int], seen: dict,
               values: dict, impute: str) -> list:
        """``_encode._fit_fills`` on the training rows, one column in memory at a time: each numeric
        column in the in-memory row order, reduced by the same numpy call on an array indexed the same
        way (numpy adds a 2-D array's columns in an order that depends on its memory layout)."""
        n = len(order)
        empty = [j for k, j in enumerate(numeric) if np.isnan(self._train_column(columns, k, n)).all()]
        empty += [j for j in seen if not seen[j].any()]
        if empty:
            raise DataError(f"{self.where}: column '{self.names[min(empty)]}' has no values in the training "
                            f"rows, so there is nothing to impute from; drop it from data.features or fill it in")
        out: list = [None] * len(self.names)
        in_train_order = np.searchsorted(order, train)
        pick = [0, 1][:len(numeric)]   # values[:, numeric] in memory: the same indexing, the same layout
        for k, j in enumerate(numeric):
            col = self._train_column(columns, k, n)[in_train_order]
            if impute in ("mean", "median"):
                both = np.repeat(col[:, None], 2, axis=1)[:, pick]
                reduce = np.nanmean if impute == "mean" else np.nanmedian
                out[j] = float(reduce(both, axis=0)[0])
            else:
                out[j] = float(_most_frequent(col[~np.isnan(col)]))
        for j, counts in seen.items():   # most frequent; ties to the smallest text (np.unique's order)
            top = counts.max()
            out[j] = str(min(values[j][i] for i in np.flatnonzero(counts == top)))
        return out

    @staticmethod
    def _train_column(path: Path, k: int, n: int) -> np.ndarray:
        return np.fromfile(path, dtype=np.float64, count=n, offset=k * n * 8)

    def _encode(self, encoder: FeatureEncoder, values: dict) -> None:
        """Every kept row through FeatureEncoder.transform's arithmetic, into the float32 cache."""
        codes = {}
        for j, names in values.items():   # raw id -> code (unknown: len(categories))
            index = {c: i for i, c in enumerate(encoder.categories[j])}
            codes[j] = np.array([index.get(v, len(index)) for v in names] + [0], dtype=np.float64)
        fills = None
        if encoder.fills is not None:
            fills = np.array([f if isinstance(f, float) else np.nan for f in encoder.fills])
            for j in codes:   # a missing category is coded as its fill value
                codes[j][-1] = encoder.categories[j].index(encoder.fills[j])
        path = self.folder / "encoded.f32"
        with open(path, "wb") as out:
            for _, block in self._raw_chunks():
                X = np.array(block, dtype=np.float64)
                for j, code in codes.items():
                    missing = np.isnan(X[:, j])
                    X[:, j] = code[np.where(missing, len(code) - 1, X[:, j]).astype(np.int64)]
                    if fills is None:
                        X[missing, j] = np.nan
                if fills is not None:
                    rows, cols = np.nonzero(np.isnan(X))
                    X[rows, cols] = fills[cols]
                out.write(X.astype(np.float32).tobytes())
        self.mapped = MappedArray(path, 0, (self.n_rows, len(self.names)), np.dtype(np.float32), False)
        self.mapped.cache = self.cache
        self.raw = None
        (self.folder / "raw.f64").unlink()
        (self.folder / "train_columns.f64").unlink(missing_ok=True)


# --- the streamer -----------------------------------------------------------------------------

def _claims(cfg, source_name: str) -> tuple[Path, str] | None:
    if cfg["source"] not in ("csv", "parquet") or cfg["path"] is None:
        return None
    return resolve_path(cfg["path"], source_name), cfg["source"]


def _size(handle, cfg) -> int | None:
    path, source = handle
    try:
        table = open_table(path, source)
        names, _ = choose_columns(CsvText(str(path), table.header, [], []), cfg["features"], cfg["label"])
        return table.size(len(names))
    except (DataError, OSError, StopIteration):
        return None   # the reader reports what is wrong with the file


def _refuse(cfg) -> str | None:
    if cfg["task"] == "multilabel":
        return "data.stream: true does not read multi-label tables yet; set data.stream: false"
    return None


def _open(handle, cfg) -> TableSource:
    path, source = handle
    return TableSource(path, cfg, source)


register_streamer(Streamer("table", "CSV or Parquet files (data.source: csv, parquet)", _claims, _open, _size, _refuse))


# --- Parquet read whole -----------------------------------------------------------------------

def load_parquet(path: Path, cfg) -> Loaded:
    """A Parquet file in memory, typed as a CSV file is (a string column is categorical unless
    (nearly) every value is a number, or as data.categorical says): the streamed path's chunks, kept."""
    if isinstance(cfg["label"], list):
        raise DataError(f"{path}: data.task multilabel reads its 0/1 label columns from a CSV file; convert the "
                        f"Parquet file to CSV (pandas: pd.read_parquet(path).to_csv(...))")
    src = TableSource(path, cfg, "parquet")
    src.type_columns(src._types_pass())
    parts = [src.typed(chunk) for chunk in src.file.chunks([*src.names, src.label_name])]
    first = parts[0]
    table = Table(first.where, first.names, np.concatenate([p.values for p in parts]),
                  {j: np.concatenate([p.cats[j] for p in parts]) for j in first.cats},
                  np.concatenate([p.labels for p in parts]), np.concatenate([p.lines for p in parts]), "row")
    return Loaded(table, (len(src.names),), "tabular", src.names, src.reader)
