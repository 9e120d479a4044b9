"""Per-epoch cost of danlu.train — default callbacks, a checkpoint every epoch — against a
hand-written PyTorch loop, side by side in one run.

    python benchmarks/bench_epoch.py            # digits MLP and CNN
    python benchmarks/bench_epoch.py --quick    # fewer repeats
    python benchmarks/bench_epoch.py --threads 1   # one torch thread (steadier on a busy machine)

An epoch here is everything between two epoch ends: the training steps, the validation figures,
and for danlu its callbacks (metrics log, early stopping, progress, the diagnosis monitors:
gradients, divergence, fit, convergence) and the checkpoint (copied at the save, written by a
background thread; the next checkpoint waits for the one before). The hand-written loop trains
the same model (danlu's registry builds it) with the same optimizer on the same tensors, batch
size and data order, and computes the validation loss and accuracy each epoch (danlu computes
every metric of the task); it writes no checkpoint.

Besides danlu as it runs by default, two variants say where its cost lies: the checkpoint
written in the foreground (the write, its fsyncs and the rename before training goes on, as
before the background writer), and no checkpoint at all (checkpoint.every_epochs 0). Repeats
are interleaved; each figure is the median epoch of a run (the first epoch warms up and is left
out), then the median over the repeats; "best" is the fastest run's, which noise from other
processes on the machine only ever makes slower.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import danlu
from danlu.data import prepare
from danlu.models import build_model
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck
from danlu.training._factory import build_loss, build_optimizer, output_dim, resolve_loss_kind
from danlu.training._loop import epoch_permutation

EPOCHS = 8
MLP = {"data": {"source": "sklearn", "name": "digits", "shape": [64]},
       "model": {"kind": "mlp", "hidden": [256, 128], "dropout": 0.2, "batch_norm": True},
       "optimizer": {"kind": "adam", "lr": 0.002}, "train": {"epochs": EPOCHS, "batch_size": 64},
       "checkpoint": {"every_epochs": 1}, "output": {"progress": "none"}}
CNN = {"data": {"source": "sklearn", "name": "digits"},
       "model": {"kind": "cnn", "channels": [32, 64], "hidden": [128]},
       "optimizer": {"kind": "adamw", "lr": 0.003}, "train": {"epochs": EPOCHS, "batch_size": 64},
       "checkpoint": {"every_epochs": 1}, "output": {"progress": "none"}}


class EpochTimer:
    """The time between consecutive epoch ends (given to train after the default callbacks, so
    an epoch's checkpoint is inside it)."""

    def __init__(self):
        self.ends = []

    def on_fit_start(self, state):
        self.ends = [time.perf_counter()]

    def on_epoch_end(self, state):
        self.ends.append(time.perf_counter())

    def per_epoch(self) -> float:
        gaps = [b - a for a, b in zip(self.ends, self.ends[1:])]
        return statistics.median(gaps[1:])


class ForegroundWrite:
    """ck.BackgroundWrite's interface, writing at once on the training thread (the old way)."""

    def __init__(self, root, write):
        write()

    def wait(self) -> None:
        pass


def time_danlu(recipe: Recipe, foreground: bool = False, checkpoints: bool = True) -> float:
    timer = EpochTimer()
    background = ck.BackgroundWrite
    ck.BackgroundWrite = ForegroundWrite if foreground else background
    if not checkpoints:
        recipe = Recipe.from_dict({**recipe.to_dict(), "checkpoint": {"every_epochs": 0}}, source=recipe.source)
    try:
        run_dir = tempfile.mkdtemp(prefix="danlu-bench-epoch-") + "/run"
        danlu.train(recipe, run_dir=run_dir, progress="none", callbacks=[timer])
    finally:
        ck.BackgroundWrite = background
    return timer.per_epoch()


def time_hand_written(recipe: Recipe) -> float:
    prepared = prepare(recipe.data, recipe.seed)
    info = prepared.info
    torch.manual_seed(recipe.seed)
    loss_kind = resolve_loss_kind(recipe.loss, info)
    model = build_model(recipe.model, info, output_dim(loss_kind, info))
    opt = build_optimizer(recipe.optimizer, model.parameters())
    loss_fn = build_loss(recipe.loss, info)
    X, y = prepared.splits["train"]
    Xv, yv = prepared.splits["validation"]
    bs = recipe.train.batch_size
    ends = [time.perf_counter()]
    for epoch in range(recipe.train.epochs):
        model.train()
        perm = epoch_permutation(recipe.seed, epoch, len(X), X.device)
        for i in range(0, len(X), bs):
            idx = perm[i:i + bs]
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            out = model(Xv)
            val_loss = float(loss_fn(out, yv))
            val_acc = float((out.argmax(1) == yv).float().mean())
        assert val_loss == val_loss and 0 <= val_acc <= 1
        ends.append(time.perf_counter())
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return statistics.median(gaps[1:])


def compare(name: str, spec: dict, repeats: int) -> None:
    recipe = Recipe.from_dict(spec, source=name)
    runs = {"hand-written": [], "danlu": [], "foreground checkpoints": [], "no checkpoints": []}
    for _ in range(repeats):
        runs["hand-written"].append(time_hand_written(recipe))
        runs["danlu"].append(time_danlu(recipe))
        runs["foreground checkpoints"].append(time_danlu(recipe, foreground=True))
        runs["no checkpoints"].append(time_danlu(recipe, checkpoints=False))
    base, best = statistics.median(runs["hand-written"]), min(runs["hand-written"])
    print(f"{name}: ms/epoch median (best), ratio to the hand-written loop median (best)")
    for label, times in runs.items():
        mid, low = statistics.median(times), min(times)
        print(f"  {label:24s} {mid * 1e3:7.1f} ({low * 1e3:6.1f})   ratio {mid / base:.3f} ({low / best:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is steadier on a small shared machine, where "
                             "torch's threads wait for each other whenever another process takes a core")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {EPOCHS} epochs, median of {repeats} "
          f"interleaved repeats, a checkpoint every epoch; {os.cpu_count()} CPUs, load average {_load()}")
    compare("digits MLP", MLP, repeats)
    compare("digits CNN", CNN, repeats)
    print(f"load average at the end {_load()} (other processes make every figure slower, the ratios noisier)")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


if __name__ == "__main__":
    main()
