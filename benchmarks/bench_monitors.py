"""What the monitors cost: the same run with every monitor on and with every monitor off.

    python benchmarks/bench_monitors.py            # digits MLP and CNN, 7 interleaved repeats
    python benchmarks/bench_monitors.py --quick    # 3 repeats
    python benchmarks/bench_monitors.py --threads 1

Both runs are danlu.train on the same recipe in this one process; only ``monitors.*.enabled``
differs. Repeats are interleaved (on/off, then off/on, ...) so that a machine getting busier
or quieter hurts both alike, and medians are reported. Two figures per model:

* per step: the training batches of each epoch, timed from epoch start to its last batch
  (the first epoch is left out as warm-up). This is where the divergence monitor's per-step
  loss check and the gradient monitor's samples land; the target is within 3 %.
* whole run: ``danlu.train`` end to end, which adds the once-per-epoch checks and the
  underfitting check's pass over the training rows at the end.
* in hooks: the time spent inside the monitors' per-step hooks, measured in the monitors-on
  runs, as a share of the step time of the same runs. On a busy machine the two timings above
  move by more than the monitors cost; this share does not, since both parts slow down alike.

On a GPU the divergence check reads the loss every step (one host sync, as a grad scaler
does); the figure printed there is the one that tells whether that matters.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import danlu
from danlu.recipe import Recipe

MLP = {"data": {"source": "sklearn", "name": "digits", "shape": [64]},
       "model": {"kind": "mlp", "hidden": [256, 128], "dropout": 0.2, "batch_norm": True},
       "optimizer": {"kind": "adam", "lr": 0.002}, "train": {"epochs": 5, "batch_size": 64},
       "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}
CNN = {"data": {"source": "sklearn", "name": "digits"},
       "model": {"kind": "cnn", "channels": [32, 64], "hidden": [128]},
       "optimizer": {"kind": "adamw", "lr": 0.003}, "train": {"epochs": 4, "batch_size": 64},
       "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}
MONITORS = ("divergence", "gradients", "fit", "convergence")


class StepTimer:
    """Seconds per training batch of each epoch (epoch start to its last batch)."""

    def __init__(self):
        self.per_step = []

    def on_epoch_start(self, state):
        self.t0 = time.perf_counter()

    def on_batch_end(self, state):
        if state.batch == state.batches_per_epoch:
            self.per_step.append((time.perf_counter() - self.t0) / state.batches_per_epoch)


class HookClock:
    """Wraps monitors so that the time spent in their per-step hooks is added up."""

    PER_STEP = ("on_backward_end", "on_batch_end")

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, monitor):
        return _Timed(monitor, self)


class _Timed:
    def __init__(self, inner, clock: HookClock):
        self._inner, self._clock = inner, clock

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in HookClock.PER_STEP:
            return attr

        def timed(state):
            t0 = time.perf_counter()
            attr(state)
            self._clock.seconds += time.perf_counter() - t0

        return timed


def with_monitors(spec: dict, enabled: bool) -> Recipe:
    return Recipe.from_dict({**spec, "monitors": {name: {"enabled": enabled} for name in MONITORS}})


def time_run(recipe: Recipe, clock: HookClock | None = None) -> tuple[float, float, float]:
    """(median seconds per step after the first epoch, seconds for the whole run, seconds in the
    monitors' per-step hooks per step)."""
    from danlu.diagnose import _monitors

    build = _monitors.default_monitors
    if clock is not None:  # danlu.train asks danlu.diagnose for its monitors: hand it timed ones
        _monitors.default_monitors = lambda r: [clock.wrap(m) for m in build(r)]
    timer = StepTimer()
    run_dir = tempfile.mkdtemp(prefix="danlu-bench-monitors-") + "/run"
    t0 = time.perf_counter()
    try:
        run = danlu.train(recipe, run_dir=run_dir, progress="none", callbacks=[timer])
    finally:
        _monitors.default_monitors = build
    in_hooks = clock.seconds / run.summary["run"]["steps"] if clock is not None else 0.0
    return statistics.median(timer.per_step[1:]), time.perf_counter() - t0, in_hooks


def compare(name: str, spec: dict, repeats: int) -> None:
    on, off = with_monitors(spec, True), with_monitors(spec, False)
    time_run(off)  # warm-up: first use of every kernel and allocation
    steps = {True: [], False: []}
    runs = {True: [], False: []}
    shares = []
    for i in range(repeats):
        for enabled in ((True, False) if i % 2 == 0 else (False, True)):
            clock = HookClock() if enabled else None
            step, whole, in_hooks = time_run(on if enabled else off, clock)
            steps[enabled].append(step)
            runs[enabled].append(whole)
            if enabled:
                shares.append(in_hooks / step)
    s_on, s_off = statistics.median(steps[True]), statistics.median(steps[False])
    w_on, w_off = statistics.median(runs[True]), statistics.median(runs[False])
    print(f"{name:11s} per step: monitors on {s_on * 1e3:7.3f} ms  off {s_off * 1e3:7.3f} ms  "
          f"ratio {s_on / s_off:.3f} ({(s_on / s_off - 1) * 100:+.1f}%)   "
          f"whole run: on {w_on:6.2f} s  off {w_off:6.2f} s  ratio {w_on / w_off:.3f}   "
          f"in hooks: {statistics.median(shares) * 100:.2f}% of a step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads, "
          f"median of {repeats} interleaved repeats")
    compare("digits MLP", MLP, repeats)
    compare("digits CNN", CNN, repeats)


if __name__ == "__main__":
    main()
