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
    """Chosen columns of a CSV file whose cells are all numbers, read a column at a time."""

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

    The values are those of the per-cell path, bit for bit. Columns of plain decimals are read
    by numpy a whole file at a time (:func:`_plain_decimals`, exactly as ``float`` reads them);
    any other column goes through ``float`` cell by cell, as in the per-cell path. That path
    strips the cell first (``str.strip``); ``float`` strips a subset of those characters itself
    and refuses the others, so an unstripped cell either reads the same or sends the whole file
    to the per-cell path. A missing-value text ('', 'na', ...) is refused by ``float`` too,
    except 'nan', which both paths read as NaN."""
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
    columns = [header.index(name) for name in names]
    label_column = header.index(label) if label is not None else None
    values = np.empty((len(body), len(names)), dtype=np.float64)
    labels = [] if label is not None else None
    step = max(1, CHUNK_CHARS * len(body) // (sum(map(len, body)) + len(body)))   # rows of about CHUNK_CHARS
    for lo in range(0, len(body), step):
        part = _read_rows(body[lo:lo + step], width, columns, label_column)
        if part is None:   # a missing value, a text cell: the per-cell path handles and reports them
            return None
        values[lo:lo + step] = part[0]
        if labels is not None:
            labels += part[1]
    return NumericCsv(str(path), header, values, [n for n, _ in numbered[1:]], labels)


CHUNK_CHARS = 1 << 20   # rows of about this many characters are read at a time (numpy's work arrays: ~100 bytes each)


def _read_rows(lines: list[str], width: int, columns: list[int], label_column: int | None):
    """(values of ``columns``, the label column's stripped cells) of unquoted CSV lines of
    ``width`` cells, or None when a chosen cell is not a number ``float`` reads."""
    joined = ",".join(lines)
    if joined.isascii():   # the usual case: plain decimals are read by numpy, the rest by float()
        parsed, plain, starts = _plain_decimals(joined, len(lines) * width)
        ends = np.append(starts[1:] - 1, len(joined))

        def texts(k: int) -> list[str]:
            return [joined[a:b] for a, b in zip(starts[k::width].tolist(), ends[k::width].tolist())]
    else:
        parsed = plain = None
        cells = joined.split(",")

        def texts(k: int) -> list[str]:
            return cells[k::width]
    values = np.empty((len(lines), len(columns)), dtype=np.float64)
    try:
        for j, k in enumerate(columns):
            if plain is not None and plain[k::width].all():
                values[:, j] = parsed[k::width]
            else:
                values[:, j] = np.fromiter(map(float, texts(k)), np.float64, len(lines))
    except ValueError:
        return None
    labels = [c.strip() for c in texts(label_column)] if label_column is not None else None
    return values, labels


POW10 = 10.0 ** np.arange(23)   # 1e0 .. 1e22: every one exactly a double


def _plain_decimals(joined: str, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read the ``count`` comma-separated cells of ASCII text ``joined`` that are plain decimals,
    a whole file at a time. Returns the values, which cells are plain (the others' values are
    meaningless: read them with ``float``) and where each cell starts.

    Plain: an optional sign, at most 15 digits with at most one point, an optional exponent
    (e or E, an optional sign, 1 to 3 digits), nothing else (no spaces), and a decimal exponent
    ``q`` (the exponent less the digits after the point) within ±22. Then the digits ``m`` are an
    integer below 2**53 and ``10**|q|`` a power of ten, both exact doubles, so ``m * 10**q`` or
    ``m / 10**-q`` is the correctly rounded value of the text, as ``float`` reads it (Clinger's
    fast path): the same double, bit for bit."""
    b = np.frombuffer((joined + ",").encode("ascii"), np.uint8)
    n = count + 1   # and the empty cell after the last comma, to keep indexing simple
    sep = b == 44
    cell = np.cumsum(sep, dtype=np.int64)
    cell -= sep                                  # the cell of each character; a comma: the cell it ends
    first = np.empty(len(b), bool)               # each cell's first character (its comma, if empty)
    first[0] = True
    first[1:] = sep[:-1]
    starts = np.flatnonzero(first)
    digit = (b - 48) < 10                        # uint8: characters below '0' wrap round to large numbers
    rest = np.flatnonzero(~digit & ~sep)         # points, signs, exponents, anything else
    rb, rc = b[rest], cell[rest]
    dot, exp, minus = rb == 46, (rb | 32) == 101, rb == 45
    sign = minus | (rb == 43)
    after_exp = np.zeros(len(rest), bool)
    has_prev = rest > 0
    after_exp[has_prev] = (b[rest[has_prev] - 1] | 32) == 101
    bad = np.zeros(n, bool)
    bad[rc[~(dot | exp | sign)]] = True                      # a character that has no place in a number
    bad[rc[sign & ~first[rest] & ~after_exp]] = True         # a sign elsewhere than first or after the e
    bad |= np.bincount(rc[dot], minlength=n) > 1
    n_exp = np.bincount(rc[exp], minlength=n)
    bad |= n_exp > 1
    exp_at = np.full(n, len(b))
    exp_at[rc[exp]] = rest[exp]
    dot_at = np.full(n, len(b))
    dot_at[rc[dot]] = rest[dot]
    bad |= (n_exp == 1) & (dot_at < len(b)) & (dot_at > exp_at)   # a point in the exponent
    negative = np.zeros(n, bool)
    negative[rc[minus & first[rest]]] = True
    exp_negative = np.zeros(n, bool)
    exp_negative[rc[minus & after_exp]] = True
    # the digits: each one's place from the right within its part (digits before the e, after it)
    at = np.flatnonzero(digit)
    c = cell[at]
    in_exp = at > exp_at[c]
    n_digits = np.bincount(c, minlength=n)
    n_exp_digits = np.bincount(c[in_exp], minlength=n)
    n_mantissa = n_digits - n_exp_digits
    counted = np.cumsum(digit, dtype=np.int64)
    before = counted[starts] - digit[starts]                 # digits before each cell
    rank = np.arange(len(at)) - before[c]                    # each digit's index within its cell
    place = np.where(in_exp, n_digits[c], n_mantissa[c]) - 1 - rank
    weight = (b[at] - 48) * POW10[np.minimum(place, 15)]     # exact: the integers stay below 2**53
    mantissa = np.bincount(c[~in_exp], weights=weight[~in_exp], minlength=n)
    exponent = np.bincount(c[in_exp], weights=weight[in_exp], minlength=n)
    after_point = np.bincount(c[~in_exp & (at > dot_at[c])], minlength=n)
    q = np.where(exp_negative, -exponent, exponent) - after_point
    plain = (~bad & (n_mantissa >= 1) & (n_mantissa <= 15) & (np.abs(q) <= 22)
             & ((n_exp == 0) | ((n_exp_digits >= 1) & (n_exp_digits <= 3))))
    q = np.clip(q, -22, 22).astype(np.int64)
    values = np.where(q >= 0, mantissa * POW10[np.maximum(q, 0)], mantissa / POW10[np.maximum(-q, 0)])
    np.negative(values, out=values, where=negative)
    return values[:count], plain[:count], starts
