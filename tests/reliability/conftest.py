"""Fixtures and the figures of the property-based attack suite (test_properties_*.py); the
harness itself is properties_kit.py."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from properties_kit import FAILURES, TALLY, TABLE_HEADER, Harness, figures, table_rows, tiny_recipe


@contextlib.contextmanager
def _no_fsync():
    """fsync makes each tiny run cost a quarter second on a busy disk; these properties are about
    answers and files, not durability after a power cut (the kill tests check that), so the
    suite's runs skip it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)
        yield


@pytest.fixture(scope="module")
def attack(tmp_path_factory, attack_runs):
    with _no_fsync():
        yield Harness(tmp_path_factory.mktemp("attack"))


@pytest.fixture(scope="session")
def attack_runs(tmp_path_factory):
    """Two finished runs: 'iris' (an MLP on scikit-learn's iris, checkpoints at both epochs) and
    'table' (an MLP on a CSV with a text column and gaps, data.impute: mean)."""
    base = tmp_path_factory.mktemp("attack_runs")
    with _no_fsync():
        return _train_runs(base)


def _train_runs(base: Path) -> dict:
    import csv

    import danlu

    iris = danlu.train(tiny_recipe({"source": "sklearn", "name": "iris"}), base / "iris").path
    path = base / "table.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TABLE_HEADER)
        w.writerows(table_rows())
    table = danlu.train(tiny_recipe({"source": "csv", "path": str(path), "label": "kind", "impute": "mean"}),
                        base / "table").path
    return {"iris": iris, "table": table, "table_csv": path}


def pytest_terminal_summary(terminalreporter):
    if not TALLY:
        return
    f = figures()
    terminalreporter.write_sep("-", "danlu attack suite")
    terminalreporter.write_line(
        f"inputs tried {f['inputs_tried']}, answered cleanly {f['answered_cleanly']}, files outside run "
        f"directories changed {f['outside_files_changed']}, crashes {f['crashes']} (messy errors "
        f"{f['messy_errors']}, wrong results {f['wrong_results']})")
    for surface, counts in f["by_surface"].items():
        terminalreporter.write_line(f"  {surface}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def pytest_sessionfinish(session):
    target = os.environ.get("DANLU_ATTACK_FIGURES")
    if target and TALLY:
        Path(target).write_text(json.dumps(figures(), indent=1))
    failures = os.environ.get("DANLU_ATTACK_FAILURES")
    if failures and FAILURES:
        Path(failures).write_text("\n".join(json.dumps(r, default=str) for r in FAILURES) + "\n")
