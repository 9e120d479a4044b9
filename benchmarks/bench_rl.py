"""Time to solve CartPole with the shipped PPO recipe, for a few seeds, on one CPU thread.

    python benchmarks/bench_rl.py                      # recipes/cartpole_ppo.yaml, seeds 0 1 2
    python benchmarks/bench_rl.py --seeds 0 --set rl.epochs=10 --set optimizer.lr=0.002

For each seed it trains the recipe through danlu (progress, checkpoints, diagnoses and all) and
reports: the environment steps and wall seconds until the mean return of the last 100 training
episodes first reached the solved threshold (475; training episodes sample their actions), the
whole run's wall and CPU seconds, and the final greedy evaluation: mean return over 100 episodes
on seeds never used in training, and whether that mean is >= 475 ("solved"). CPU seconds are
printed beside wall seconds because a shared machine stretches wall time; the load average is
printed for the same reason.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from danlu.recipe import Recipe
from danlu.rl import train_rl


def first_solved(run_dir: Path, solved: float) -> dict | None:
    """The first metrics row whose training mean return reached ``solved``."""
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["mean_return_100"] is not None and row["mean_return_100"] >= solved:
            return row
    return None


def bench_seed(recipe: Recipe, seed: int, root: Path) -> dict:
    recipe = recipe.with_overrides({"seed": seed, "output.progress": "none"})
    wall, cpu = time.perf_counter(), time.process_time()
    run = train_rl(recipe, root / f"seed{seed}")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    test = run.summary["test"]
    reached = first_solved(run.path, test["solved_return"])
    return {"seed": seed, "solve_step": reached["step"] if reached else None,
            "solve_s": reached["time_s"] if reached else None, "wall_s": wall, "cpu_s": cpu,
            "eval_mean": test["mean_return"], "solved": test["solved"], "events": run.summary["run"]["events"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "recipes" / "cartpole_ppo.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = Recipe.from_yaml(args.recipe, overrides=args.set)
    print(f"{args.recipe} {' '.join(args.set)}: {recipe.rl.steps:,} steps, torch threads 1, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'seed':>4} {'solve step':>11} {'solve s':>8} {'wall s':>7} {'cpu s':>6} {'greedy mean':>12} {'solved':>7}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            r = bench_seed(recipe, seed, Path(tmp))
            rows.append(r)
            step = f"{r['solve_step']:,}" if r["solve_step"] else "never"
            when = f"{r['solve_s']:.1f}" if r["solve_s"] is not None else "-"
            print(f"{r['seed']:>4} {step:>11} {when:>8} {r['wall_s']:7.1f} {r['cpu_s']:6.1f} {r['eval_mean']:12.1f} "
                  f"{str(r['solved']):>7}", flush=True)
    solved = sum(bool(r["solved"]) for r in rows)
    def mean(key):
        return sum(r[key] for r in rows) / len(rows)

    print(f"solved {solved}/{len(rows)} seeds; mean greedy return {mean('eval_mean'):.1f}; "
          f"mean wall {mean('wall_s'):.1f}s, cpu {mean('cpu_s'):.1f}s")


if __name__ == "__main__":
    main()
