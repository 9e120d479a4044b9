"""Helpers of the serving tests: danlu.predict on the same rows, as the oracle."""
import csv

import danlu


def predict_rows(run_dir, tmp_path, columns, rows, name="rows.csv"):
    """danlu.predict on ``rows`` written as a CSV with the training ``columns`` (None -> empty cell)."""
    path = tmp_path / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows([["" if v is None else v for v in row] for row in rows])
    return danlu.predict(run_dir, path)


def assert_same(served, expected, classes=None, tol=1e-6):
    """Served answers equal danlu.predict's rows (labels exactly, probabilities to ``tol``)."""
    assert len(served) == len(expected)
    for got, want in zip(served, expected):
        if classes is None:
            assert abs(got["prediction"] - want["prediction"]) <= tol * max(1.0, abs(want["prediction"]))
            continue
        assert got["prediction"] == want["prediction"]
        for label in classes:
            assert abs(got["probabilities"][str(label)] - want[f"proba_{label}"]) <= tol
