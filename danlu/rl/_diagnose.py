"""Diagnosis of the reward curve: what the mean return of the last 100 episodes tells.

Read after every update, reported as events (events.jsonl and the progress display), each with
its facts, so that it can be told in English or Chinese, and the recipe key to turn:

* ``solved`` (good news): the training mean return reached the solved threshold;
* ``return_collapse``: the mean return fell by more than half from its best — typical of PPO
  steps that became too large once the policy was good (a sharp policy moves far per step);
* ``return_plateau``: no new best for a fifth of the run (at least 10 updates) while still
  below the solved threshold: the agent stopped finding anything better;
* ``entropy_collapse``: in the first half of the run the policy became nearly deterministic
  (entropy under a tenth of its maximum) while the return is still under half the threshold:
  it stopped exploring before it learned the task.

Each is reported once, and again only after the curve has moved on (a new best re-arms the
collapse and plateau checks).
"""
from __future__ import annotations

import math

_COLLAPSE = 0.5        # a fall by more than this fraction of the best mean return
_LEARNED = 2.0         # ... after the best had reached at least this many times the first mean
_PLATEAU_SHARE = 0.2   # updates without a new best, as a share of the run, that make a plateau
_PLATEAU_MIN = 10
_SHARP = 0.1           # entropy under this fraction of log(n_actions): nearly deterministic
_EARLY = 0.5           # "early": in this first share of the run
_UNLEARNED = 0.5       # ... with a mean return still under this fraction of the threshold

_TEXT = {
    "solved": (
        ("solved", "the mean return of the last 100 training episodes reached {mean_return} (threshold "
                   "{solved}) at step {step}, after {episodes} episodes", ""),
        ("已解决", "第 {step} 步时最近 100 个训练回合的平均回报达到 {mean_return}（阈值 {solved}），"
                   "共用了 {episodes} 个回合", "")),
    "return_collapse": (
        ("return collapsed", "the mean return fell from its best {best} (step {best_step}) to {mean_return} "
                             "at step {step}, {drop} lower",
         "the updates became too large for a good policy: lower optimizer.lr, use schedule.kind: linear "
         "(small late steps) or a smaller rl.clip"),
        ("回报崩塌", "平均回报从最佳的 {best}（第 {best_step} 步）跌到第 {step} 步的 {mean_return}，下降了 {drop}",
         "对已经不错的策略来说更新步子太大：调小 optimizer.lr、用 schedule.kind: linear（后期小步）或更小的 rl.clip")),
    "return_plateau": (
        ("return plateaued", "no new best mean return for {updates} updates (best {best} at step "
                             "{best_step}), below the threshold {solved}",
         "the agent stopped finding better actions: raise rl.entropy_coef (e.g. 0.01) to explore more, "
         "try another optimizer.lr, or train longer (rl.steps)"),
        ("回报停滞", "已有 {updates} 次更新没有刷新最佳平均回报（最佳 {best}，第 {best_step} 步），仍低于阈值 {solved}",
         "智能体找不到更好的动作了：调高 rl.entropy_coef（如 0.01）多探索、换一个 optimizer.lr，或训练更久（rl.steps）")),
    "entropy_collapse": (
        ("entropy collapsed early", "at step {step} the policy's entropy is {entropy}, {share} of its "
                                    "maximum {max_entropy}, while the mean return is only {mean_return}",
         "the policy stopped exploring before it learned the task: raise rl.entropy_coef (e.g. 0.01) "
         "or lower optimizer.lr"),
        ("熵过早坍缩", "第 {step} 步时策略的熵为 {entropy}，只有最大值 {max_entropy} 的 {share}，而平均回报只有 "
                       "{mean_return}",
         "策略还没学会任务就不再探索了：调高 rl.entropy_coef（如 0.01）或调小 optimizer.lr")),
}

_PERCENT = {"drop", "share"}

# The diagnoses that are problems, with something to turn; "solved" is good news.
PROBLEMS = ("return_collapse", "return_plateau", "entropy_collapse")


def _shown(facts: dict) -> dict:
    out = {}
    for key, value in facts.items():
        if key in _PERCENT:
            out[key] = f"{100 * value:.0f}%"
        elif isinstance(value, float):
            out[key] = f"{value:.4g}"
        else:
            out[key] = str(value)
    return out


def hint(kind: str, lang: str) -> str:
    """What to turn for a diagnosis (empty for good news)."""
    return _TEXT[kind][1 if lang == "zh" else 0][2]


def message(kind: str, lang: str, facts: dict) -> str:
    """One line: title, what was seen, and what to turn."""
    title, seen, hint = _TEXT[kind][1 if lang == "zh" else 0]
    sep, join = ("：", "；") if lang == "zh" else (": ", "; ")
    text = seen.format(**_shown(facts))
    return f"{title}{sep}{text}{join}{hint}" if hint else f"{title}{sep}{text}"


class ReturnMonitor:
    """Watches the training rows (metrics.jsonl) of an RL run; :meth:`check` returns the new
    diagnoses as ``(kind, facts)``."""

    def __init__(self, solved: float | None, n_actions: int, updates: int):
        self.solved = solved
        self.max_entropy = math.log(n_actions)
        self.updates = updates
        self.first = None               # first mean return seen
        self.best = None
        self.best_step = None
        self.best_update = None
        self.reported: set = set()      # kinds reported since the last new best (entropy, solved: once)

    def check(self, row: dict) -> list[tuple[str, dict]]:
        mean = row.get("mean_return_100")
        if mean is None:
            return []
        found = []
        if self.first is None:
            self.first = mean
        if self.best is None or mean > self.best:
            self.best, self.best_step, self.best_update = mean, row["step"], row["update"]
            self.reported -= {"return_collapse", "return_plateau"}
        for kind, facts in (self._solved(row), self._collapse(row), self._plateau(row), self._entropy(row)):
            if kind is not None and kind not in self.reported:
                self.reported.add(kind)
                found.append((kind, facts))
        return found

    def _solved(self, row):
        if self.solved is not None and row["mean_return_100"] >= self.solved:
            return "solved", {"mean_return": row["mean_return_100"], "solved": self.solved, "episodes": row["episodes"]}
        return None, None

    def _collapse(self, row):
        mean = row["mean_return_100"]
        learned = self.best >= _LEARNED * self.first and self.best > 0
        if learned and mean < (1 - _COLLAPSE) * self.best:
            return "return_collapse", {"best": self.best, "best_step": self.best_step, "mean_return": mean,
                                       "drop": 1 - mean / self.best}
        return None, None

    def _plateau(self, row):
        waited = row["update"] - self.best_update
        below = self.solved is None or self.best < self.solved
        if below and waited >= max(_PLATEAU_MIN, _PLATEAU_SHARE * self.updates):
            return "return_plateau", {"updates": waited, "best": self.best, "best_step": self.best_step,
                                      "solved": self.solved if self.solved is not None else "-"}
        return None, None

    def _entropy(self, row):
        early = row["update"] <= _EARLY * self.updates
        unlearned = self.solved is not None and row["mean_return_100"] < _UNLEARNED * self.solved
        share = row["entropy"] / self.max_entropy if self.max_entropy > 0 else 1.0
        if early and unlearned and share < _SHARP:
            return "entropy_collapse", {"entropy": row["entropy"], "max_entropy": self.max_entropy,
                                        "share": share, "mean_return": row["mean_return_100"]}
        return None, None

    def state_dict(self) -> dict:
        return {"first": self.first, "best": self.best, "best_step": self.best_step,
                "best_update": self.best_update, "reported": sorted(self.reported)}

    def load_state_dict(self, d: dict) -> None:
        self.first, self.best, self.best_step = d["first"], d["best"], d["best_step"]
        self.best_update, self.reported = d["best_update"], set(d["reported"])
