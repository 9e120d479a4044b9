"""Progress of an RL run, in the same display as supervised training (bar, lines or none)."""
from __future__ import annotations

import time

from ..training._progress import Progress, _fmt


class ReturnProgress(Progress):
    """Shows update, environment steps, the mean return of the last 100 episodes, its best and the
    learning rate: redrawn in place on a terminal, one line every ``line_every`` seconds in logs.
    Events (diagnoses) print as in supervised runs, through :meth:`Progress.show_event`."""

    def start(self, env: str, parameters: int, updates: int, run_dir) -> None:
        self._t0 = time.perf_counter()
        self.updates = updates
        if self.mode != "none":
            where = f" -> {run_dir}" if run_dir else ""
            self._write(f"danlu: training a PPO agent ({parameters:,} parameters) in {env}, "
                        f"{updates} updates{where}\n")

    def _row_text(self, row: dict) -> str:
        return "  ".join([f"update {row['update']}/{self.updates}", f"step {row['step']:,}",
                          f"episodes {row['episodes']}", f"mean_return_100 {_fmt(row['mean_return_100'])}",
                          f"best {_fmt(row['best_mean_return_100'])}", f"lr {row['lr']:.3g}"])

    def update(self, row: dict) -> None:
        if self.mode == "none":
            return
        now = time.perf_counter()
        last = row["update"] == self.updates
        if self.mode == "bar" and (now - self._last >= self.refresh or last):
            self._last = now
            width = 24
            done = int(width * row["update"] / max(1, self.updates))
            self._write(f"\r[{'#' * done}{'.' * (width - done)}] {self._row_text(row)}\x1b[K")
        elif self.mode == "lines" and (now - self._last >= self.line_every or last):
            self._last = now
            self._write(self._row_text(row) + "\n")

    def finish(self, summary: dict) -> None:
        if self.mode == "none":
            return
        test, run = summary["test"], summary["run"]
        verdict = {True: "solved", False: "not solved", None: "no threshold"}[test["solved"]]
        self._write(("\n" if self.mode == "bar" else "") +
                    f"danlu: finished after {run['updates']} updates, {run['env_steps']:,} steps, "
                    f"{time.perf_counter() - self._t0:.1f}s; greedy evaluation over {test['episodes']} episodes: "
                    f"mean return {test['mean_return']:.4g} ({verdict})\n")
