"""Load test of ``danlu serve`` on loopback: N concurrent clients, a bounded count of requests and time.

    python benchmarks/bench_serve.py                      # trains a small digits MLP, 8 clients x 2000 requests
    python benchmarks/bench_serve.py --run runs/digits_mlp --clients 16 --requests 4000 --batch 32

The server is the real command (`python -m danlu serve RUN --port P`) in a subprocess on 127.0.0.1;
clients are threads with one keep-alive httpx connection each, cycling through one-row (or
--batch-row) requests of test rows. It stops by itself after --requests or --seconds (at most 60 s of
load), stops the server, and prints failed requests (must be 0), throughput and p50/p99 latency.
Every answer is checked against danlu.predict on the same rows.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import danlu
from danlu.data import Pipeline
from danlu.serve import load_test
from danlu.serve._server import free_port

RECIPE = {"name": "bench_serve", "seed": 0, "data": {"source": "sklearn", "name": "digits", "shape": [64]},
          "model": {"kind": "mlp", "hidden": [128, 64]}, "optimizer": {"kind": "adam", "lr": 0.003},
          "train": {"epochs": 5, "batch_size": 64}, "checkpoint": {"every_epochs": 0},
          "output": {"progress": "none"}}
MAX_SECONDS = 60.0


def start_server(run_dir: Path, port: int, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "serve", str(run_dir), "--port", str(port),
                             "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


def test_rows(run_dir: Path, n: int) -> tuple[list, list]:
    """n test rows of the digits and danlu.predict's answers for them."""
    from sklearn.datasets import load_digits

    X = load_digits().data[-n:]
    columns = Pipeline.load(run_dir).reader["columns"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(columns)
            w.writerows(X.tolist())
        return X.tolist(), danlu.predict(run_dir, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a finished run (default: train a small digits MLP in a temporary folder)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=50.0, help=f"time cap of the load (at most {MAX_SECONDS:.0f})")
    ap.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the server (default 1)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run) if args.run else danlu.train(RECIPE, Path(tmp) / "run").path
        rows, expected = test_rows(run_dir, 64)
        bodies = [{"rows": [rows[(i + k) % len(rows)] for k in range(args.batch)]} for i in range(len(rows))]
        port = free_port()
        server = start_server(run_dir, port, args.threads)
        try:
            result = load_test(f"http://127.0.0.1:{port}", bodies, clients=args.clients, requests=args.requests,
                               time_limit=min(args.seconds, MAX_SECONDS))
        finally:
            server.terminate()
            server.wait(timeout=30)
    wrong = 0
    for i, answer in result["answers"].items():
        got = [p["prediction"] for p in answer["predictions"]]
        want = [expected[(i % len(rows) + k) % len(rows)]["prediction"] for k in range(args.batch)]
        wrong += got != want
    print(f"danlu serve load test: {args.clients} clients, {result['requests']} requests of {args.batch} row(s) "
          f"in {result['seconds']:.1f} s")
    print(f"  failed requests: {result['failed']}   wrong answers: {wrong}")
    print(f"  throughput: {result['throughput']:.0f} req/s ({result['throughput'] * args.batch:.0f} rows/s)")
    print(f"  latency: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    for failure in result["failures"]:
        print(f"  failure: {failure}")
    return 0 if result["failed"] == 0 and wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
