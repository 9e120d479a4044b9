"""Does Bayesian search (TPE) find a learning rate at least as good as a grid, in as many trials?

    python benchmarks/bench_tune.py                  # digits MLP, 10 trials each, seed 0
    python benchmarks/bench_tune.py --trials 10 --samplers tpe,grid,random,anneal
    python benchmarks/bench_tune.py --recipe recipes/breast_cancer_logistic.yaml --epochs 8
    python benchmarks/bench_tune.py --seeds 5      # repeat for recipe seeds 0..4 and count the wins

Each sampler tunes ``optimizer.lr`` over the same log range of the same recipe, with the same
number of trials and the same seed, no pruning (so every trial trains the same number of epochs).
The grid is ``--trials`` points spread evenly in log space. The objective is the best per-epoch
validation loss (a smooth figure: accuracy ties too often on small data); the validation accuracy
of each best trial is printed beside it. Studies go to a temporary folder. ``--seeds N`` repeats
the comparison for recipe seeds 0..N-1 (the seed fixes the split, the initial weights and the
samplers) and counts how often TPE is at least as good as the grid.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna

from danlu.recipe import Recipe
from danlu.tune import tune

DIGITS_MLP = {"name": "bench_tune", "seed": 0,
              "data": {"source": "sklearn", "name": "digits", "shape": [64]},
              "model": {"kind": "mlp", "hidden": [128, 64]},
              "optimizer": {"kind": "adam", "lr": 0.001},
              "train": {"epochs": 5, "batch_size": 64, "early_stopping": {"enabled": False}},
              "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", help="recipe YAML (default: a small digits MLP)")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--low", type=float, default=1e-5)
    parser.add_argument("--high", type=float, default=1.0)
    parser.add_argument("--metric", default="val_loss")
    parser.add_argument("--samplers", default="tpe,grid", help="comma-separated: tpe, grid, random, anneal")
    parser.add_argument("--seeds", type=int, default=1, help="repeat for recipe seeds 0..N-1")
    args = parser.parse_args()

    base = Recipe.from_yaml(args.recipe) if args.recipe else Recipe.from_dict(DIGITS_MLP)
    samplers = args.samplers.split(",")
    wins = 0
    for seed in range(args.seeds) if args.seeds > 1 else [base.seed]:
        recipe = _bench_recipe(base, seed, args.epochs)
        print(f"recipe {recipe.name}: {recipe.model.kind}, {recipe.optimizer.kind}, {recipe.train.epochs} epochs; "
              f"optimizer.lr in [{args.low:g}, {args.high:g}] (log), {args.trials} trials, seed {recipe.seed}")
        rows = [_search(recipe, sampler, args) for sampler in samplers]
        _print_rows(rows, args.metric)
        values = {r[0]: r[1] for r in rows}
        if "tpe" in values and "grid" in values:
            better = values["tpe"] <= values["grid"] if args.metric == "val_loss" else values["tpe"] >= values["grid"]
            wins += better
            print(f"TPE at least as good as the {args.trials}-point grid: {'yes' if better else 'no'}\n")
    if args.seeds > 1 and "tpe" in samplers and "grid" in samplers:
        print(f"TPE at least as good as the grid for {wins} of {args.seeds} seeds")


def _bench_recipe(base, seed: int, epochs):
    """The recipe with the given seed, no early stopping (same epochs for every trial), no checkpoints."""
    data = base.to_dict()
    data["seed"] = seed
    data["train"]["early_stopping"]["enabled"] = False
    data["checkpoint"]["every_epochs"] = 0
    if epochs:
        data["train"]["epochs"] = epochs
    return Recipe.from_dict(data, source=base.source)


def _search(recipe, sampler: str, args):
    space = {"optimizer.lr": {"type": "float", "low": args.low, "high": args.high, "log": True,
                              "points": args.trials}}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = tune(recipe, space, trials=args.trials, sampler=sampler, metric=args.metric,
                      storage=optuna.storages.InMemoryStorage(), prune=False, out_dir=Path(tmp) / sampler,
                      progress=False)
        seconds = time.perf_counter() - start
        accuracy = _best_accuracy(result)
    return sampler, result.best_value, result.best_params["optimizer.lr"], accuracy, seconds


def _print_rows(rows, metric: str) -> None:
    print(f"{'sampler':8s} {'best ' + metric:>14s} {'at lr':>10s} {'val_accuracy':>13s} {'time':>8s}")
    for sampler, value, lr, accuracy, seconds in rows:
        acc = f"{accuracy:.4f}" if accuracy is not None else "-"
        print(f"{sampler:8s} {value:14.5f} {lr:10.3g} {acc:>13s} {seconds:7.1f}s")


def _best_accuracy(result):
    """Validation accuracy of the best trial's run, at the epoch of its best objective value."""
    if result.best_run_dir is None:
        return None
    lines = (Path(result.best_run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    history = [json.loads(line) for line in lines if line.strip()]
    best = min(history, key=lambda h: h.get(result.metric, float("inf"))) if result.direction == "min" else \
        max(history, key=lambda h: h.get(result.metric, float("-inf")))
    return best.get("val_accuracy")


if __name__ == "__main__":
    main()
