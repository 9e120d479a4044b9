"""Reading CSV files as text cells, with the checks that give one-line errors.

No pandas: the csv module reads cells, and column typing happens in ``_table``.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

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
