"""Reading CSV files as text cells, with the checks that give one-line errors.

No pandas: the csv module reads cells, and column typing happens in ``_table``. Files of plain
numbers (the usual input of ``danlu predict``) take a fast path, :func:`read_numeric_csv`, that
steps aside for everything else, so that the per-cell reading still finds and names bad cells.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

# Cell texts that mean "no value" (compared case-insensitively, after stripping spaces).
MISSING = frozenset({"", "na", "n/a", "nan", "null"})


def is_missing(cell: str) -> bool:
    return cell.lower() in MISSING


@dataclass
class CsvText:
    """The cells of a CSV file, stripped of surrounding spaces."""

    path: str
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file line each row ends on, for error messages

    def column(self, name: str) -> list[str]:
        j = self.header.index(name)
        return [row[j] for row in self.rows]


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # tolerate the byte-order mark spreadsheets write
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}: not UTF-8 text at byte {err.start} (line {line}); "
                        f"save the file with UTF-8 encoding") from None


def _header(names: list[str], path: Path) -> list[str]:
    header = [name.strip() or f"column_{j + 1}" for j, name in enumerate(names)]
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: column name '{name}' appears twice in the header; "
                            f"give every column a distinct name")
        seen.add(name)
    return header


def read_csv(path: str | Path) -> CsvText:
    """Read a CSV file with a header line; blank lines are skipped."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: file not found; check data.path")
    text = _decode(path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty; it needs a header line and data rows")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = None
        rows, lines = [], []
        for cells in reader:
            if not cells or all(not c.strip() for c in cells):
                continue
            cells = [c.strip() for c in cells]
            if header is None:
                header = _header(cells, path)
                continue
            if len(cells) != len(header):
                raise DataError(
                    f"{path}: line {reader.line_num} has {len(cells)} cells but the header has "
                    f"{len(header)}; fix that row (a missing or stray comma, or an unquoted comma in a value)")
            rows.append(cells)
            lines.append(reader.line_num)
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: {err}; fix the CSV quoting") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header line; add rows")
    return CsvText(str(path), header, rows, lines)


# --- the fast path for all-numeric files --------------------------------------------------------

FIELD_LIMIT = csv.field_size_limit()   # the csv module refuses longer cells; the fast path steps aside


@dataclass
class NumericCsv:
    """Chosen columns of a CSV file whose cells are all numbers, read without per-cell Python."""

    path: str
    header: list[str]
    values: np.ndarray          # (N, len(names)) float64
    lines: list[int]            # the file line of each row, as CsvText.lines
    label: list[str] | None     # the label column's cells (stripped), where it was asked for and exists


def read_numeric_csv(path: str | Path, names: list[str], label: str | None = None) -> NumericCsv | None:
    """Read the columns ``names`` as floats, or return None for anything but the common case:
    unquoted, one line per row, every row as wide as the header, every chosen cell a number that
    ``float`` reads. The caller then reads the file with :func:`read_csv` and ``_table``'s
    parsers, whose errors name the line and column.

    The values are those of the per-cell path, bit for bit: both parse a cell with ``float``.
    The per-cell path strips the cell first (``str.strip``); ``float`` strips a subset of those
    characters itself and refuses the others, so an unstripped cell either reads the same or
    sends the whole file to the per-cell path. A missing-value text ('', 'na', ...) is refused
    by ``float`` too, except 'nan', which both paths read as NaN."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        text = _decode(path)
    except DataError:
        return None
    text = text.replace("\r\n", "\n")
    if '"' in text or "\0" in text or "\r" in text:
        return None   # quoting, a NUL, bare carriage returns: the csv module's rules, not a split
    numbered = [(i + 1, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    if len(numbered) < 2:
        return None
    header = [cell.strip() for cell in numbered[0][1].split(",")]
    width = len(header)
    if not all(header) or len(set(header)) != width or any(n not in header for n in names):
        return None   # unnamed or repeated columns, a missing one: read_csv names or explains them
    if label is not None and label not in header:
        label = None
    body = [line for _, line in numbered[1:]]
    if max(map(len, body)) > FIELD_LIMIT or any(line.count(",") != width - 1 for line in body):
        return None
    cells = ",".join(body).split(",")
    values = np.empty((len(body), len(names)), dtype=np.float64)
    try:
        for j, name in enumerate(names):
            values[:, j] = np.fromiter(map(float, cells[header.index(name)::width]), np.float64, len(body))
    except ValueError:   # a missing value, a text cell: the per-cell path handles and reports them
        return None
    labels = [c.strip() for c in cells[header.index(label)::width]] if label is not None else None
    return NumericCsv(str(path), header, values, [n for n, _ in numbered[1:]], labels)
