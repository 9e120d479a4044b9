"""format_table: aligned, ASCII, one row per split."""
from __future__ import annotations

from danlu.evaluation import format_table

ROWS = {
    "validation": {"accuracy": 0.912345, "f1_macro": 0.5, "log_loss": 0.25},
    "test": {"accuracy": 0.875, "f1_macro": float("nan"), "log_loss": 12.3456789},
}


def _cells(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines()]


def test_one_row_per_split_one_column_per_metric():
    lines = format_table(ROWS).splitlines()
    assert len(lines) == 4  # header, rule, two splits
    header, rule, validation, test = _cells(format_table(ROWS))
    assert header == ["split", "accuracy", "f1_macro", "log_loss"]
    assert all(set(dashes) == {"-"} for dashes in rule)
    assert validation == ["validation", "0.9123", "0.5000", "0.2500"]
    assert test == ["test", "0.8750", "nan", "12.3457"]


def test_columns_are_aligned():
    lines = format_table(ROWS).splitlines()
    # Numbers are right-aligned: every column ends at the same offset on every line.
    assert len({len(line) for line in lines}) == 1
    header = lines[0]
    for name in ("accuracy", "f1_macro", "log_loss"):
        end = header.index(name) + len(name)
        for line in lines[2:]:
            assert line[end - 1] != " " and (end == len(line) or line[end] == " ")


def test_digits_and_missing_values():
    rows = {"validation": {"mse": 1.0, "r2": 0.123456789}, "test": {"mse": 2.5e7}}
    _, _, validation, test = _cells(format_table(rows, digits=2))
    assert validation == ["validation", "1.00", "0.12"]
    assert test == ["test", "2.50e+07", "-"]  # a metric the split lacks shows "-"


def test_output_is_ascii_even_for_unicode_names():
    table = format_table({"验证": {"accuracy": 1.0}, "test": {"μ_error": float("inf")}})
    table.encode("ascii")  # raises if anything is not ASCII
    assert "inf" in table
    assert "\\u9a8c" in table  # the name is escaped, not dropped


def test_empty_input_gives_empty_table():
    assert format_table({}) == ""
