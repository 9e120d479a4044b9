"""Regenerate the small data files in this folder, deterministically.

    python recipes/data/make_data.py

churn.csv: a made-up telecom churn table (1500 rows) — numeric and categorical columns
and a text label, 'stay' or 'leave', that depends on both kinds of columns.
churn_new.csv: 20 more customers without the label, for trying `danlu predict`.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 7

PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west"]
PAYMENTS = ["card", "bank", "invoice"]
COLUMNS = ["tenure_months", "monthly_charge", "support_calls", "age", "data_gb",
           "plan", "region", "payment", "churn"]


def customers(rng: np.random.Generator, n: int) -> list[list]:
    tenure = rng.integers(1, 73, n)
    plan = rng.choice(3, n, p=[0.45, 0.35, 0.20])
    region = rng.choice(4, n)
    payment = rng.choice(3, n, p=[0.4, 0.35, 0.25])
    charge = 25 + 30 * plan + rng.normal(0, 8, n)
    calls = rng.poisson(1.5, n)
    age = rng.integers(18, 81, n)
    data_gb = np.round(rng.lognormal(1.5 + 0.4 * plan, 0.5, n), 1)

    # Leaving grows with support calls and price, falls with tenure and age; invoices and
    # the south region leave more, premium plans less.
    logit = (-0.6 + 1.1 * (calls - 1.5) - 0.06 * (tenure - 36) + 0.05 * (charge - 55)
             - 0.03 * (age - 49) + np.array([0.0, 0.3, -1.8])[plan]
             + np.array([0.0, 1.2, -0.3, 0.0])[region] + np.array([-0.4, -0.4, 1.6])[payment])
    leave = rng.random(n) < 1 / (1 + np.exp(-logit))
    return [[int(tenure[i]), round(float(charge[i]), 2), int(calls[i]), int(age[i]), float(data_gb[i]),
             PLANS[plan[i]], REGIONS[region[i]], PAYMENTS[payment[i]], "leave" if leave[i] else "stay"]
            for i in range(n)]


def write(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main(out: Path = HERE) -> None:
    rng = np.random.default_rng(SEED)
    write(out / "churn.csv", COLUMNS, customers(rng, 1500))
    write(out / "churn_new.csv", COLUMNS[:-1], [row[:-1] for row in customers(rng, 20)])


if __name__ == "__main__":
    main()
