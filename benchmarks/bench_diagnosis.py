"""Is the colleague right? Provoked causes x seeds, and false alarms on the shipped recipes.

    python benchmarks/bench_diagnosis.py                  # scenarios x 3 seeds, shipped recipes x 3 seeds
    python benchmarks/bench_diagnosis.py --part scenarios # only the provoked causes
    python benchmarks/bench_diagnosis.py --part recipes --seeds 0

The scenarios are those of tests/diagnose/diagnose_scenarios.py (the test suite runs them on one
seed): each provokes one known cause (a learning rate far too high for Adam, SGD and RMSProp, far
too low, too few epochs, overfitting by gap and by rising loss, underfitting by capacity,
vanishing and exploding gradients, a NaN batch, labels without signal, unscaled features) or is
a healthy run. Printed:

* a confusion table, true cause x the verdict's cause (a blow-up counts as one family whatever
  the monitors saw first: collapse, divergence, rescue), and the share right (target >= 90 %);
* contradictory cures (target 0): a proposal that pushes against the true cause (more capacity
  for an overfitting model, a lower rate for one that is too low, ...) or against the run's own
  history (a higher learning rate after a rescue, a collapse or a "too high" finding);
* for the blow-ups, the rescued test accuracy next to the same optimizer at a sane rate (target:
  within 2 points);
* false alarms over the shipped recipes (target 0): a verdict other than "healthy" on a recipe
  at its defaults. Skipped, with the reason printed: the diffusion recipe (minutes per seed on a
  CPU; its monitors are the same as the VAE's), text_finetune (4+ minutes per seed; text_probe
  runs the same backbone), CartPole (an agent: danlu.rl tells its own story from the reward
  curve), k-means and PCA (fitted in one call, no training loop to watch).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "diagnose"))

import danlu  # noqa: E402
from danlu.diagnose._story import proposals  # noqa: E402
from danlu.models import register_model  # noqa: E402
from danlu.recipe import Recipe  # noqa: E402
from diagnose_scenarios import CONTRADICTS, SCENARIOS, family  # noqa: E402
from diagnose_testkit import POISONED, build_poisoned, run  # noqa: E402

SKIPPED = {
    "digits_diffusion": "minutes per seed on a CPU; the same monitors as digits_vae",
    "text_finetune": "4+ minutes per seed on a CPU (MiniLM, gradual unfreezing); text_probe covers text",
    "cartpole_ppo": "an agent: danlu.rl diagnoses the reward curve, not these monitors",
    "digits_kmeans": "fitted in one call: no training loop to watch",
    "digits_pca": "fitted in one call: no training loop to watch",
}
_LR_DOWN_HISTORY = {"rescue", "collapse", "divergence", "rescue_exhausted", "lr_too_high", "exploding_gradient"}


def contradictions(verdict: dict, cures: list, events: list, true_cause: str) -> list:
    """Cures that push against the true cause or against what the run went through."""
    seen = {e.get("kind") for e in events}
    bad = []
    for cure in cures:
        direction = cure["direction"]
        if direction in CONTRADICTS.get(true_cause, ()) or direction in verdict.get("forbid", ()):
            bad.append(cure)
        elif direction == "lr_up" and seen & _LR_DOWN_HISTORY:
            bad.append(cure)
    return bad


def _events(path: Path) -> list:
    return [json.loads(line) for line in (path / "events.jsonl").read_text().splitlines() if line.strip()]


def _score(summary: dict):
    test = summary.get("test") or {}
    return test.get("accuracy", test.get("r2"))


def run_scenarios(seeds: list[int]) -> dict:
    register_model(POISONED, build_poisoned, params=None, replace=True)
    rows = []
    for scenario in SCENARIOS:
        for seed in seeds:
            root = Path(tempfile.mkdtemp(prefix=f"diag-{scenario.name}-"))
            t0 = time.perf_counter()
            result = run(root, **scenario.spec(seed, root))
            verdict, cures = proposals(result.path)
            bad = contradictions(verdict, cures, _events(result.path), scenario.cause)
            rows.append({"scenario": scenario.name, "seed": seed, "true": scenario.cause,
                         "got": family(verdict["cause"]), "sure": verdict["sure"], "score": _score(result.summary),
                         "contradictions": [f"{c['key']} -> {c['proposal']} ({c['direction']})" for c in bad],
                         "seconds": time.perf_counter() - t0})
            r = rows[-1]
            print(f"  {scenario.name:18s} seed {seed}: {r['got']:20s} ({r['sure']}) score {r['score']:.3f}"
                  f"{'  CONTRADICTS ' + str(r['contradictions']) if bad else ''}  {r['seconds']:.1f}s", flush=True)
    return {"rows": rows}


def report_scenarios(rows: list) -> dict:
    truths = sorted({r["true"] for r in rows}, key=lambda c: [s.cause for s in SCENARIOS].index(c))
    verdicts = sorted({r["got"] for r in rows} | set(truths),
                      key=lambda c: truths.index(c) if c in truths else len(truths))
    counts = Counter((r["true"], r["got"]) for r in rows)
    width = max(len(c) for c in verdicts) + 1
    print("\nconfusion (rows: true cause, columns: verdict)")
    print(" " * 20 + "".join(f"{v[:width - 1]:>{width}s}" for v in verdicts))
    for t in truths:
        print(f"{t:20s}" + "".join(f"{counts[(t, v)] or '.':>{width}}" for v in verdicts))
    right = sum(r["true"] == r["got"] for r in rows)
    contra = sum(len(r["contradictions"]) for r in rows)
    print(f"\nright cause: {right}/{len(rows)} = {100 * right / len(rows):.1f}% (target >= 90%)")
    print(f"contradictory cures: {contra} (target 0)")
    by_name = defaultdict(list)
    for r in rows:
        by_name[r["scenario"]].append(r["score"])
    rescued = []
    print("\nblow-ups: rescued test accuracy vs the same optimizer at a sane rate (mean over seeds)")
    for scenario in SCENARIOS:
        if scenario.healthy:
            a, b = statistics.mean(by_name[scenario.name]), statistics.mean(by_name[scenario.healthy])
            rescued.append((scenario.name, a, b))
            print(f"  {scenario.name:18s} {100 * a:6.2f}%  vs {scenario.healthy:16s} {100 * b:6.2f}%  "
                  f"({100 * (a - b):+.2f} points; target >= -2)")
    return {"right": right, "total": len(rows), "contradictions": contra, "rescued": rescued}


def run_recipes(seeds: list[int], names: list[str] | None) -> list:
    rows = []
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        name = path.stem
        if names and name not in names:
            continue
        if name in SKIPPED:
            print(f"  {name:24s} skipped: {SKIPPED[name]}", flush=True)
            continue
        for seed in seeds:
            recipe = Recipe.from_yaml(path, [f"seed={seed}", "output.progress=none"])
            target = Path(tempfile.mkdtemp(prefix=f"diag-{name}-")) / "run"
            t0 = time.perf_counter()
            result = danlu.train(recipe, target)
            events = _events(result.path)
            verdict = [e for e in events if e.get("kind") == "verdict"]
            cause = verdict[-1]["cause"] if verdict else "healthy"
            findings = [e["kind"] for e in events if e.get("kind") != "verdict"]
            rows.append({"recipe": name, "seed": seed, "verdict": cause, "findings": findings,
                         "score": _score(result.summary), "seconds": time.perf_counter() - t0})
            score = rows[-1]["score"]
            print(f"  {name:24s} seed {seed}: {cause:18s} findings {findings}  "
                  f"score {score if score is None else round(score, 4)}  {rows[-1]['seconds']:.0f}s", flush=True)
    alarms = [r for r in rows if r["verdict"] != "healthy"]
    print(f"\nfalse alarms on shipped recipes: {len(alarms)}/{len(rows)} runs (target 0)")
    for r in alarms:
        print(f"  {r['recipe']} seed {r['seed']}: {r['verdict']} {r['findings']}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("all", "scenarios", "recipes"), default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="*", help="only these shipped recipes (by name)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.part in ("all", "scenarios"):
        print(f"scenarios x seeds {args.seeds}")
        report_scenarios(run_scenarios(args.seeds)["rows"])
    if args.part in ("all", "recipes"):
        print(f"\nshipped recipes at their defaults x seeds {args.seeds}")
        run_recipes(args.seeds, args.recipes)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
