"""`danlu predict` on a 10k-row CSV against a hand-written pandas + torch script, side by side.

    python benchmarks/bench_predict.py            # 10,000 rows of 20 numeric columns
    python benchmarks/bench_predict.py --quick    # fewer repeats

A small MLP is trained once on 600 rows of the same kind. Then, interleaved and repeated (the
median is reported), the same 10k-row file is predicted by

* danlu: ``danlu.training.predict(run, csv, out)`` in-process (the CLI verb's body: the run's
  files are read and checked, the CSV read, scaled, predicted, and a predictions CSV written);
* hand-written: pandas.read_csv, the run's own scaler statistics and weights (read from its
  safetensors files), a forward pass, argmax, and DataFrame.to_csv of the labels and probabilities.

Also printed: the time danlu spends reading the CSV alone (its fast path for plain numbers) and
the per-cell path it falls back to for anything else.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file

import danlu
from danlu import training
from danlu.data._csv import read_csv, read_numeric_csv
from danlu.data._table import table_from_csv
from danlu.recipe import Recipe

COLUMNS = [f"f{i}" for i in range(20)]


def write_csv(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(COLUMNS)))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    with open(path, "w") as fh:
        fh.write(",".join(COLUMNS + ["label"]) + "\n")
        for row, label in zip(X, y):
            fh.write(",".join(f"{v:.6g}" for v in row) + f",{label}\n")


def hand_written(run: Path, src: Path, out: Path) -> None:
    """What one writes by hand for the same model: weights and scaler from the run's files."""
    frame = pd.read_csv(src)
    X = frame[COLUMNS].to_numpy(np.float32)
    pipe = load_file(str(run / "pipeline.safetensors"))
    shift, div = pipe["scale_shift"].numpy(), pipe["scale_div"].numpy()
    net = torch.nn.Sequential(torch.nn.Linear(len(COLUMNS), 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    weights = load_file(str(run / "model.safetensors"))
    names = {"body.0.weight": "0.weight", "body.0.bias": "0.bias", "head.weight": "2.weight", "head.bias": "2.bias"}
    net.load_state_dict({names[k]: v for k, v in weights.items()})
    with torch.no_grad():
        proba = torch.softmax(net(torch.from_numpy((X - shift) / div)), dim=1).numpy()
    pd.DataFrame({"row": np.arange(len(X)), "prediction": proba.argmax(1),
                  "proba_0": proba[:, 0], "proba_1": proba[:, 1]}).to_csv(out, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    work = Path(tempfile.mkdtemp(prefix="danlu-bench-predict-"))
    write_csv(work / "train.csv", 600, 0)
    write_csv(work / "new.csv", args.rows, 1)
    recipe = Recipe.from_dict({"data": {"source": "csv", "path": str(work / "train.csv"), "label": "label"},
                               "model": {"kind": "mlp", "hidden": [64]}, "train": {"epochs": 2},
                               "output": {"progress": "none"}}, source="bench")
    run = danlu.train(recipe, work / "run").path
    ours, theirs, fast, slow = [], [], [], []
    for _ in range(repeats):
        t = time.perf_counter()
        hand_written(run, work / "new.csv", work / "hand.csv")
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        training.predict(run, work / "new.csv", work / "danlu.csv", overwrite=True)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        read_numeric_csv(work / "new.csv", COLUMNS)
        fast.append(time.perf_counter() - t)
        t = time.perf_counter()
        table_from_csv(read_csv(work / "new.csv"), COLUMNS, set(), None)
        slow.append(time.perf_counter() - t)
    ours_p = pd.read_csv(work / "danlu.csv")
    hand_p = pd.read_csv(work / "hand.csv")
    agree = float((ours_p["prediction"].to_numpy() == hand_p["prediction"].to_numpy()).mean())
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"torch {torch.__version__}, pandas {pd.__version__}, {torch.get_num_threads()} threads, "
          f"median of {repeats} interleaved repeats, {args.rows} rows x {len(COLUMNS)} columns")
    print(f"predict      danlu {a * 1e3:7.1f} ms   pandas+torch {b * 1e3:7.1f} ms   ratio {a / b:.2f}   "
          f"(same predictions: {agree:.1%})")
    f, s = statistics.median(fast), statistics.median(slow)
    print(f"csv reading  fast path {f * 1e3:7.1f} ms   per-cell path {s * 1e3:7.1f} ms   speed-up {s / f:.1f}x")


if __name__ == "__main__":
    main()
