"""Streaming benchmark: one epoch on a generated .npy of at least 4 GB, read from disk batch by batch.

Generates ROWS x (COLS + 1) float32 (the last column is the label; 520,000 x 2049 = 4.26 GB) in a
temporary folder, then, each in its own process so each peak resident memory is its own:

- danlu: a logistic-regression recipe with ``data.stream: true``, one epoch; the time of the
  epoch's training batches (a callback times them) and the whole process's peak RSS;
- a hand-written loop: a torch DataLoader (batched sampler, so one fancy-index per batch) over
  ``np.load(mmap_mode="r")`` of the same file, the same model, optimizer, batch size and scaling,
  over the same number of training rows.

Prints both, the ratio of throughputs and the peak RSS next to the file size. Needs 10 GB of
free disk; the file is removed afterwards (unless --keep). Usage:
    python benchmarks/bench_streaming.py [--rows 520000] [--cols 2048] [--dir DIR] [--threads N]

``--csv`` measures a CSV table instead (default 200,000 rows of 60 numbers, a categorical column and
a label, one cell in 50 empty, ``data.impute: mean``): one epoch with ``data.stream: true`` and
with ``data.stream: false``, each in its own process, their whole-run times and peak RSS next to
the file size. Usage:
    python benchmarks/bench_streaming.py --csv [--rows 200000] [--cols 60]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH = 512
NEED_FREE = 10 * 10**9


def generate(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.normal(size=cols).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, cols + 1))
    step = 8192
    for lo in range(0, rows, step):
        hi = min(rows, lo + step)
        X = rng.normal(0.5, 2.0, (hi - lo, cols)).astype(np.float32)
        out[lo:hi, :cols] = X
        out[lo:hi, cols] = ((X - 0.5) @ w > 0).astype(np.float32)
    out.flush()
    del out


def generate_csv(path: Path, rows: int, cols: int, seed: int = 0) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.normal(size=cols)
    colors = np.array(["red", "green", "blue", "teal", "plum"])
    with open(path, "w") as f:
        f.write(",".join([f"x{j}" for j in range(cols)] + ["color", "label"]) + "\n")
        for lo in range(0, rows, 8192):
            n = min(rows, lo + 8192) - lo
            X = rng.normal(0.5, 2.0, (n, cols))
            y = ((X - 0.5) @ w > 0).astype(int)
            text = np.char.mod("%.6g", X).astype(object)
            text[rng.random((n, cols)) < 0.02] = ""
            color = colors[rng.integers(0, len(colors), n)]
            f.writelines(",".join(row) + f",{c},{label}\n" for row, c, label in zip(text.tolist(), color, y))


def run_danlu_csv(path: Path, run_dir: Path, stream: bool) -> dict:
    import danlu

    recipe = {"seed": 0, "data": {"source": "csv", "path": str(path), "stream": stream, "impute": "mean",
                                  "split": {"validation": 0.1, "test": 0.1}},
              "model": {"kind": "logistic"}, "optimizer": {"kind": "adam", "lr": 0.01},
              "train": {"epochs": 1, "batch_size": BATCH}, "output": {"progress": "none"}}
    t0 = time.perf_counter()
    run = danlu.train(recipe, run_dir)
    return {"total_s": time.perf_counter() - t0, "test_accuracy": run.summary["test"]["accuracy"],
            "peak_rss_mb": peak_rss_mb()}


def main_csv(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="danlu-bench-stream-", dir=args.dir or tempfile.gettempdir()))
    try:
        path = folder / "big.csv"
        subprocess.run([sys.executable, __file__, "--child", "generate-csv", "--file", str(path), "--rows",
                        str(args.rows), "--cols", str(args.cols)], check=True)
        size = path.stat().st_size
        print(f"generated {path} ({args.rows:,} rows x {args.cols + 2} columns, {size / 1e6:,.0f} MB)", flush=True)
        for which in ("csv-stream", "csv-memory"):
            r = child(which, path, folder / which, args.threads)
            ratio = r["peak_rss_mb"] * 1e6 / size
            print(f"danlu data.stream: {which == 'csv-stream'}: whole run {r['total_s']:.1f} s, test accuracy "
                  f"{r['test_accuracy']:.4f}, peak RSS {r['peak_rss_mb']:,.0f} MB ({ratio:.2f}x the file)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (Linux), else ru_maxrss. ru_maxrss alone would
    not do: Linux carries it over exec from the parent, which wrote the file through a memory map."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def run_danlu(path: Path, run_dir: Path) -> dict:
    import danlu

    times = {}

    class EpochTimer:
        def on_epoch_start(self, state):
            times["start"] = time.perf_counter()

        def on_validation_start(self, state):
            times["train"] = time.perf_counter() - times["start"]
            times["rows"] = len(state.splits["train"][0])

    recipe = {"seed": 0, "data": {"source": "npy", "path": str(path), "label": -1, "stream": True,
                                  "split": {"validation": 0.1, "test": 0.1}},
              "model": {"kind": "logistic"}, "optimizer": {"kind": "adam", "lr": 0.001},
              "train": {"epochs": 1, "batch_size": BATCH}, "checkpoint": {"every_epochs": 1},
              "output": {"progress": "none"}}
    t0 = time.perf_counter()
    run = danlu.train(recipe, run_dir, callbacks=[EpochTimer()])
    return {"epoch_s": times["train"], "rows": times["rows"], "total_s": time.perf_counter() - t0,
            "test_accuracy": run.summary["test"]["accuracy"], "peak_rss_mb": peak_rss_mb()}


def run_hand(path: Path, stats_dir: Path) -> dict:
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from torch.utils.data import BatchSampler, DataLoader, Dataset, SubsetRandomSampler

    data = np.load(path, mmap_mode="r")
    cols = data.shape[1] - 1
    stats = load_file(str(stats_dir / "pipeline.safetensors"))
    shift, div = stats["scale_shift"], stats["scale_div"]
    rows = json.loads((stats_dir / "rows.json").read_text())

    class Rows(Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, idx):
            block = torch.from_numpy(np.ascontiguousarray(data[np.sort(idx)], dtype=np.float32))
            return (block[:, :cols] - shift) / div, block[:, cols].long()

    torch.manual_seed(0)
    train_rows = np.arange(rows)   # the same number of rows as danlu's training split
    sampler = BatchSampler(SubsetRandomSampler(train_rows), BATCH, drop_last=False)
    loader = DataLoader(Rows(), sampler=sampler, batch_size=None)
    model = torch.nn.Linear(cols, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"epoch_s": time.perf_counter() - t0, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def child(which: str, path: Path, where: Path, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--child", which, "--file", str(path), "--where", str(where),
                           "--threads", str(threads)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", action="store_true", help="measure a CSV table (see the module's text)")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--cols", type=int, default=None)
    ap.add_argument("--dir", default=None, help="folder for the generated file (default: the system's temp)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--child", default=None)
    ap.add_argument("--file", default=None)
    ap.add_argument("--where", default=None)
    args = ap.parse_args()
    args.rows = args.rows or (200_000 if args.csv else 520_000)
    args.cols = args.cols or (60 if args.csv else 2048)
    if args.child == "generate-csv":
        generate_csv(Path(args.file), args.rows, args.cols)
        return
    if args.child == "generate":
        generate(Path(args.file), args.rows, args.cols)
        return
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        if args.child.startswith("csv-"):
            print(json.dumps(run_danlu_csv(Path(args.file), Path(args.where), args.child == "csv-stream")))
            return
        fn = run_danlu if args.child == "danlu" else run_hand
        print(json.dumps(fn(Path(args.file), Path(args.where))))
        return
    if args.csv:
        main_csv(args)
        return

    base = Path(args.dir or tempfile.gettempdir())
    free = shutil.disk_usage(base).free
    if free < NEED_FREE:
        print(f"bench_streaming: {base} has {free / 1e9:.1f} GB free; this benchmark writes a 4+ GB file and "
              f"needs 10 GB free. Give another folder with --dir.")
        return
    folder = Path(tempfile.mkdtemp(prefix="danlu-bench-stream-", dir=base))
    try:
        path = folder / "big.npy"
        t0 = time.perf_counter()
        # in a child process, so no process measured below inherits the writer's memory
        subprocess.run([sys.executable, __file__, "--child", "generate", "--file", str(path), "--rows",
                        str(args.rows), "--cols", str(args.cols)], check=True)
        size = path.stat().st_size
        print(f"generated {path} ({args.rows:,} x {args.cols + 1}, {size / 1e9:.2f} GB) in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        d = child("danlu", path, folder / "run", args.threads)
        # the hand-written loop uses the danlu run's scaling statistics and training-row count
        (folder / "run" / "rows.json").write_text(json.dumps(d["rows"]))
        h = child("hand", path, folder / "run", args.threads)
        print(f"danlu (data.stream: true): {d['rows']:,} training rows, epoch {d['epoch_s']:.1f} s "
              f"({d['rows'] / d['epoch_s']:,.0f} rows/s), whole run {d['total_s']:.1f} s, "
              f"test accuracy {d['test_accuracy']:.4f}, peak RSS {d['peak_rss_mb']:,.0f} MB")
        print(f"hand-written DataLoader over np.load(mmap_mode='r'): epoch {h['epoch_s']:.1f} s "
              f"({h['rows'] / h['epoch_s']:,.0f} rows/s), peak RSS {h['peak_rss_mb']:,.0f} MB")
        print(f"throughput danlu / hand-written: {h['epoch_s'] / d['epoch_s']:.2f} (target >= 0.90); "
              f"danlu peak RSS {d['peak_rss_mb']:,.0f} MB for a {size / 1e9:.2f} GB file (target < 1 GB)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
