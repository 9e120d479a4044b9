"""A plain ASCII table of metrics per split, for the summary printed at the end of a run."""
from __future__ import annotations

import math


BINARY = ("precision", "recall", "f1", "roc_auc")


def format_table(rows: dict[str, dict[str, float]], digits: int = 4, positive_class=None) -> str:
    """One line per split, one column per metric, aligned; ASCII only so any log shows it.

    Columns follow the order in which metrics first appear; a metric a split lacks shows ``-``.
    Numbers are fixed-point with ``digits`` decimals, or scientific when very large. With
    ``positive_class`` (a binary classifier's), a last line names the class that the binary
    precision, recall, f1 and roc_auc columns are about.
    """
    if not rows:
        return ""
    columns = list(dict.fromkeys(name for metrics in rows.values() for name in metrics))
    header = ["split"] + [_ascii(name) for name in columns]
    body = [[_ascii(split)] + [_format_value(metrics.get(name), digits) for name in columns]
            for split, metrics in rows.items()]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = [_join(header, widths), "  ".join("-" * w for w in widths)]
    lines += [_join(line, widths) for line in body]
    shown = [name for name in BINARY if name in columns]
    if positive_class is not None and shown:
        lines.append(f"{', '.join(shown)}: positive class {_ascii(positive_class)}")
    return "\n".join(lines)


def _join(cells: list[str], widths: list[int]) -> str:
    # Split names read left-aligned; numbers right-aligned so their decimal points line up.
    first = cells[0].ljust(widths[0])
    rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
    return "  ".join([first] + rest).rstrip()


def _format_value(value, digits: int) -> str:
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    if abs(value) >= 1e6:
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


def _ascii(text) -> str:
    """Names are user-given (split names, custom metrics): escape anything outside ASCII."""
    return str(text).encode("ascii", "backslashreplace").decode("ascii")
