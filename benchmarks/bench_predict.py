"""`danlu predict RUN FILE.csv` against a hand-written pandas + torch script, both as commands.

    python benchmarks/bench_predict.py                  # 10,000 digits-like rows, 5 interleaved repeats
    python benchmarks/bench_predict.py --repeats 3 --run runs/digits_mlp   # an existing digits MLP run

The input is a digits-like CSV: 64 numeric columns named as scikit-learn's digits (whole numbers
0..16, rows drawn from the real digits) and the label column ``target``. A tiny MLP (one hidden
layer of 64, one epoch) is trained on the digits in a temporary folder, unless --run names one.

Each repeat runs, one after the other in fresh processes (start-up and imports included, since
both are what a user runs):

* danlu: ``python -m danlu predict RUN rows.csv -o danlu.csv --overwrite``;
* hand-written: a script that imports pandas and torch, reads the CSV with ``pandas.read_csv``,
  picks the training columns, divides by the run's divisor and standardises with the run's own
  scaler statistics (``pipeline.safetensors``), loads the weights into a ``torch.nn.Sequential``,
  takes the softmax, and writes the row, the predicted class and the class probabilities with
  ``DataFrame.to_csv``.

Both commands run with Python's bytecode cache in a temporary folder (PYTHONPYCACHEPREFIX), so
that neither compiles its modules at every start, as with an installed package; --as-is keeps the
environment as it is (where PYTHONDONTWRITEBYTECODE=1 is set, danlu's ~100 modules are compiled
from source at each start, pandas' and torch's come compiled in site-packages).

Printed: the median and fastest wall time of each, their ratio (danlu / hand-written), the
machine's load, and whether the two agree (same predicted classes, probabilities within 1e-6).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RECIPE = {"name": "bench_predict", "seed": 0, "data": {"source": "sklearn", "name": "digits", "shape": [64]},
          "model": {"kind": "mlp", "hidden": [64]}, "train": {"epochs": 1}, "checkpoint": {"every_epochs": 0},
          "output": {"progress": "none"}}

HAND_WRITTEN = '''\
import json
import sys

import pandas as pd
import torch
from safetensors.torch import load_file

run, src, out = sys.argv[1:4]
reader = json.load(open(f"{run}/pipeline.json"))["reader"]
frame = pd.read_csv(src)
X = torch.from_numpy(frame[reader["columns"]].to_numpy("float32")) / reader["divisor"]
scale = load_file(f"{run}/pipeline.safetensors")
X = (X - scale["scale_shift"]) / scale["scale_div"]
weights = load_file(f"{run}/model.safetensors")
hidden, width = weights["body.0.weight"].shape
net = torch.nn.Sequential(torch.nn.Linear(width, hidden), torch.nn.ReLU(),
                          torch.nn.Linear(hidden, weights["head.weight"].shape[0]))
net.load_state_dict({"0.weight": weights["body.0.weight"], "0.bias": weights["body.0.bias"],
                     "2.weight": weights["head.weight"], "2.bias": weights["head.bias"]})
with torch.no_grad():
    proba = torch.softmax(net(X), dim=1).numpy()
answer = pd.DataFrame(proba, columns=[f"proba_{c}" for c in range(proba.shape[1])])
answer.insert(0, "prediction", proba.argmax(axis=1))
answer.insert(0, "row", range(len(answer)))
answer.to_csv(out, index=False)
'''


def write_rows(path: Path, n: int, seed: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pick = np.random.default_rng(seed).integers(0, len(digits.data), n)
    with open(path, "w") as fh:
        fh.write(",".join(list(digits.feature_names) + ["target"]) + "\n")
        for row, label in zip(digits.data[pick].astype(int), digits.target[pick]):
            fh.write(",".join(map(str, row)) + f",{label}\n")


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    took = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return took


def agreement(ours: Path, theirs: Path) -> str:
    import csv

    with open(ours) as a, open(theirs) as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    if len(rows_a) != len(rows_b):
        return f"NO: {len(rows_a)} rows against {len(rows_b)}"
    same = sum(x["prediction"] == y["prediction"] for x, y in zip(rows_a, rows_b))
    probas = [k for k in rows_a[0] if k.startswith("proba_")]
    gap = max(abs(float(x[k]) - float(y[k])) for x, y in zip(rows_a, rows_b) for k in probas)
    return f"{same}/{len(rows_a)} same predictions, largest probability difference {gap:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", help="an existing run of a digits MLP with one hidden layer (default: train one)")
    parser.add_argument("--as-is", action="store_true", help="keep the environment's bytecode settings")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="danlu-bench-predict-"))
    rows = work / "rows.csv"
    write_rows(rows, args.rows, seed=1)
    if args.run:
        run = Path(args.run)
    else:
        import danlu

        run = danlu.train(RECIPE, work / "run").path
    script = work / "hand_written.py"
    script.write_text(HAND_WRITTEN)
    ours_cmd = [sys.executable, "-m", "danlu", "predict", str(run), str(rows), "-o", str(work / "danlu.csv"),
                "--overwrite"]
    theirs_cmd = [sys.executable, str(script), str(run), str(rows), str(work / "hand.csv")]
    env = dict(os.environ)
    if not args.as_is:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    timed(ours_cmd, env), timed(theirs_cmd, env)   # warm the file cache (and write the bytecode) for both
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(timed(ours_cmd, env))
        theirs.append(timed(theirs_cmd, env))
    a, b = statistics.median(ours), statistics.median(theirs)
    import torch

    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"{args.rows} rows x 64 columns + label; {os.cpu_count()} CPUs, load {load}; torch {torch.__version__}; "
          f"{args.repeats} interleaved repeats, each a fresh process")
    print("bytecode: " + ("as the environment has it" + (" (PYTHONDONTWRITEBYTECODE is set)"
                                                          if os.environ.get("PYTHONDONTWRITEBYTECODE") else "")
                          if args.as_is else "cached in a temporary folder, as an installed package has it"))
    print(f"danlu predict   median {a:6.3f} s   fastest {min(ours):6.3f} s")
    print(f"pandas + torch  median {b:6.3f} s   fastest {min(theirs):6.3f} s")
    print(f"ratio (danlu / hand-written): median {a / b:.2f}, fastest {min(ours) / min(theirs):.2f}")
    print(f"agreement: {agreement(work / 'danlu.csv', work / 'hand.csv')}")
    print(json.dumps({"danlu_s": ours, "hand_written_s": theirs}))


if __name__ == "__main__":
    main()
