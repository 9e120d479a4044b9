"""train.precision on CPU: float32 against bf16-mixed on the digits CNN, side by side in one run.

    python benchmarks/bench_precision.py               # recipes/digits_cnn.yaml, 5 epochs, 2 repeats
    python benchmarks/bench_precision.py --epochs 20 --repeats 3 --threads 1

The same recipe (recipes/digits_cnn.yaml: augmentation, batch norm, dropout, one-cycle schedule)
is trained once per precision per repeat, the two interleaved so that a busy machine slows both
alike. Reported: the median time of a training epoch (from epoch start to the last batch;
validation and checkpoints excluded), the test accuracy of each run, and the ratio
bf16 / float32 of the epoch time (below 1: bf16 is faster). bfloat16 is fast on CPUs with native
bf16 instructions (AVX512-BF16, AMX); elsewhere torch emulates it and it can be slower.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import danlu
from danlu.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


class EpochTimer:
    """Seconds of each epoch's training batches."""

    def __init__(self):
        self.times, self._t0 = [], None

    def on_epoch_start(self, state):
        self._t0 = time.perf_counter()

    def on_validation_start(self, state):
        self.times.append(time.perf_counter() - self._t0)


def run_once(precision: str, epochs: int, workdir: Path, label: str) -> tuple[float, float]:
    spec = Recipe.from_yaml(ROOT / "recipes" / "digits_cnn.yaml").to_dict()
    spec["train"].update({"epochs": epochs, "precision": precision})
    spec["checkpoint"] = {"every_epochs": 0}
    spec["output"] = {**spec.get("output", {}), "progress": "none", "runs_dir": str(workdir)}
    timer = EpochTimer()
    run = danlu.train(spec, workdir / label, callbacks=[timer])
    return statistics.median(timer.times), run.summary["test"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"32": [], "bf16-mixed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for precision in results:
                results[precision].append(run_once(precision, args.epochs, Path(tmp), f"{precision}-{r}"))
    print(f"digits CNN (recipes/digits_cnn.yaml), {args.epochs} epochs, {args.repeats} repeats, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"{'precision':<12} {'s / epoch (median)':>19} {'test accuracy (each run)':>26}")
    for precision, rows in results.items():
        epoch = statistics.median(t for t, _ in rows)
        print(f"{precision:<12} {epoch:>19.3f} {', '.join(f'{a:.4f}' for _, a in rows):>26}")
    fp32 = statistics.median(t for t, _ in results["32"])
    bf16 = statistics.median(t for t, _ in results["bf16-mixed"])
    acc32 = statistics.mean(a for _, a in results["32"])
    acc16 = statistics.mean(a for _, a in results["bf16-mixed"])
    print(f"ratio bf16-mixed / float32 time per epoch: {bf16 / fp32:.2f}x; "
          f"test accuracy difference (bf16 - fp32, mean): {100 * (acc16 - acc32):+.2f} points")


if __name__ == "__main__":
    main()
