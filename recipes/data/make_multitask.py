"""Regenerate multitask.csv, a small multi-task table for the hypernetwork recipe, deterministically.

    python recipes/data/make_multitask.py

Each row has four numeric features x1..x4, a task id (a, b or c) and a label yes/no:
  task a: yes when x1 + x2 > 0
  task b: yes when x1 + x2 < 0   (the opposite of a: the tasks conflict)
  task c: yes when x3 * x4 > 0   (an XOR-like rule on other features)
A network that ignores the task column cannot beat chance on a and b together; one whose
weights depend on the task can solve all three.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 11
ROWS = 2400
TASKS = ["a", "b", "c"]


def label(task: str, x: np.ndarray) -> bool:
    if task == "a":
        return x[0] + x[1] > 0
    if task == "b":
        return x[0] + x[1] < 0
    return x[2] * x[3] > 0


def main() -> None:
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(ROWS, 4))
    tasks = rng.choice(TASKS, ROWS)
    with open(HERE / "multitask.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x1", "x2", "x3", "x4", "task", "label"])
        for x, task in zip(X, tasks):
            writer.writerow([*(f"{v:.4f}" for v in x), task, "yes" if label(task, x) else "no"])


if __name__ == "__main__":
    main()
