"""The figures of the property-based attack suite (issue 12), with a larger budget than CI's.

    python benchmarks/attack_figures.py                 # every surface, 10x the test suite's examples
    python benchmarks/attack_figures.py --scale 3 --failures /tmp/attack-failures.jsonl

It runs tests/reliability/test_properties_*.py — the same strategies, oracles and harness as the
test suite — with ``DANLU_ATTACK_SCALE`` examples per property and ``DANLU_ATTACK_KEEP_GOING=1``,
so that a failing input is counted (and written to ``--failures``) instead of stopping its
property, then prints the four figures:

* inputs tried: generated recipes, CSV files, arrays, request bodies and damaged run directories
  (one per command run on it);
* answered cleanly: exit 0 with a result the oracle accepts, or exit 2 with one ``danlu: error:``
  line and no traceback (HTTP: 200 with finite answers, or 4xx with a one-line JSON error);
* files outside run directories changed (must be 0);
* crashes: exits other than 0 and 2, tracebacks, HTTP 5xx (must be 0);

and, beside them, the messy errors (exit 2 but not one line) and wrong results (exit 0 with an
answer the oracle refuses), per surface.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="examples per property, times the suite's (10)")
    parser.add_argument("--failures", help="write every failing input (JSON lines) here")
    parser.add_argument("-k", dest="select", help="only the properties pytest -k selects")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="danlu-attack-") as tmp:
        figures_path = Path(tmp) / "figures.json"
        env = {**os.environ, "DANLU_ATTACK_SCALE": str(args.scale), "DANLU_ATTACK_KEEP_GOING": "1",
               "DANLU_ATTACK_FIGURES": str(figures_path), "OMP_NUM_THREADS": "1"}
        if args.failures:
            env["DANLU_ATTACK_FAILURES"] = str(Path(args.failures).resolve())
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "reliability").glob("test_properties_*.py"))]
        if args.select:
            cmd += ["-k", args.select]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if not figures_path.is_file():
            print(proc.stdout[-4000:] + proc.stderr[-4000:], file=sys.stderr)
            print("no figures: the suite did not run", file=sys.stderr)
            return 1
        figures = json.loads(figures_path.read_text())

    print(f"property-based attack suite, {args.scale:g}x the test suite's examples, {seconds:.0f} s")
    print(f"  inputs tried                                 {figures['inputs_tried']}")
    print(f"  answered cleanly                             {figures['answered_cleanly']}")
    print(f"  files outside run directories changed        {figures['outside_files_changed']}")
    print(f"  crashes                                      {figures['crashes']}")
    print(f"  (messy errors {figures['messy_errors']}, wrong results {figures['wrong_results']})")
    print()
    print(f"  {'surface':20s} {'tried':>6s} {'clean':>6s} {'exit 0':>6s} {'exit 2':>6s} {'crash':>6s} "
          f"{'messy':>6s} {'wrong':>6s} {'outside':>7s}")
    for surface, c in figures["by_surface"].items():
        print(f"  {surface:20s} {c.get('tried', 0):6d} {c.get('clean', 0):6d} {c.get('exit 0', 0):6d} "
              f"{c.get('exit 2', 0):6d} {c.get('crash', 0):6d} {c.get('messy', 0):6d} {c.get('wrong', 0):6d} "
              f"{c.get('outside_changed', 0):7d}")
    if proc.returncode != 0:
        print(f"\npytest exited {proc.returncode}:\n{proc.stdout[-3000:]}", file=sys.stderr)
    bad = figures["crashes"] + figures["outside_files_changed"] + figures["messy_errors"] + figures["wrong_results"]
    return 0 if bad == 0 and proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
