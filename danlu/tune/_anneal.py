"""Simulated annealing (模拟退火) as an Optuna sampler.

Optuna ships no annealing sampler, so here is a small one. The walk lives in the unit cube:
every parameter maps to [0, 1] (log-scaled where the distribution is log), categoricals to
their index. Each trial proposes a neighbour of the *current* point — a Gaussian step whose
width shrinks with the temperature, reflected at the edges; a categorical jumps to another
choice with a probability that also shrinks — and when the trial completes, the Metropolis rule
decides whether the walk moves there:

    accept if the new value is better, else with probability exp(-delta / (T * spread))

where ``delta`` is how much worse it is, ``spread`` the range of values seen so far (so the rule
does not depend on the metric's units), and ``T = t0 * cooling ** k`` after ``k`` completed trials.

The sampler keeps no state of its own: the walk is replayed from the study's completed trials,
and every random draw comes from a generator seeded by (seed, trial number, purpose). So the
same seed gives the same sequence, and a study continued in another process (after a kill, or
with several workers) picks the walk up where the storage says it is.
"""
from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

_PROPOSE, _ACCEPT, _INDEPENDENT = 0, 1, 2


class AnnealingSampler(BaseSampler):
    """Simulated annealing over an Optuna search space.

    Args:
        search_space: name -> distribution; by default the intersection of the completed
            trials' spaces (the first trial then samples uniformly).
        seed: fixes every draw; ``None`` picks one at random.
        t0: starting temperature (in units of the spread of the values seen).
        cooling: the temperature is multiplied by this after each completed trial.
        step: width (standard deviation, in the unit cube) of a move at ``T = t0``.
        min_step: the smallest width the moves shrink to.
        switch: probability that a move changes a categorical, at ``T = t0``.
    """

    def __init__(self, search_space: dict[str, BaseDistribution] | None = None, *, seed: int | None = None,
                 t0: float = 1.0, cooling: float = 0.85, step: float = 0.25, min_step: float = 0.02,
                 switch: float = 0.5):
        if not t0 > 0 or not 0 < cooling <= 1 or not step > 0 or not 0 < min_step <= step or not 0 <= switch <= 1:
            raise ValueError("need t0 > 0, 0 < cooling <= 1, 0 < min_step <= step and 0 <= switch <= 1")
        self._space = dict(search_space) if search_space is not None else None
        self._intersection = IntersectionSearchSpace()
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        self.t0, self.cooling, self.step, self.min_step, self.switch = t0, cooling, step, min_step, switch

    def reseed_rng(self) -> None:
        # parallel workers in one process must not draw the same moves
        self._seed = int(np.random.SeedSequence().entropy % 2**63)

    def _rng(self, number: int, purpose: int, extra: int = 0) -> np.random.Generator:
        return np.random.default_rng([self._seed, number, purpose, extra])

    def temperature(self, completed: int) -> float:
        return self.t0 * self.cooling ** completed

    # -- Optuna's sampler interface ----------------------------------------------------------

    def infer_relative_search_space(self, study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self._space is not None:
            return dict(self._space)
        return {k: v for k, v in self._intersection.calculate(study).items() if not v.single()}

    def sample_relative(self, study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        self._raise_error_if_multi_objective(study)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if all(name in t.params for name in search_space)]
        done.sort(key=lambda t: t.number)
        rng = self._rng(trial.number, _PROPOSE)
        if not done:
            return {name: _from_unit(d, rng.random()) for name, d in search_space.items()}
        current = self.walk(done, study.direction)
        temperature = self.temperature(len(done))
        return self._neighbour(current.params, search_space, temperature, rng)

    def sample_independent(self, study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        rng = self._rng(trial.number, _INDEPENDENT, zlib.crc32(param_name.encode()))
        return _from_unit(param_distribution, rng.random())

    # -- the walk ----------------------------------------------------------------------------

    def walk(self, done: list[FrozenTrial], direction: StudyDirection) -> FrozenTrial:
        """Replay the Metropolis decisions over the completed trials; returns the current point."""
        sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
        current = done[0]
        low = high = sign * current.value
        for k, cand in enumerate(done[1:], start=1):
            energy, now = sign * cand.value, sign * current.value
            low, high = min(low, energy), max(high, energy)
            delta = energy - now
            if delta <= 0:
                current = cand
                continue
            spread = high - low if high > low else 1.0
            chance = math.exp(-delta / (self.temperature(k) * spread))
            if self._rng(cand.number, _ACCEPT).random() < chance:
                current = cand
        return current

    def _neighbour(self, params: dict, space: dict[str, BaseDistribution], temperature: float,
                   rng: np.random.Generator) -> dict:
        heat = temperature / self.t0
        width = max(self.min_step, self.step * heat)
        out = {}
        for name, dist in space.items():
            if name not in params:
                out[name] = _from_unit(dist, rng.random())
            elif isinstance(dist, CategoricalDistribution):
                out[name] = _move_choice(dist, params[name], self.switch * heat, rng)
            else:
                u = _reflect(_to_unit(dist, params[name]) + rng.normal(0.0, width))
                out[name] = _from_unit(dist, u)
        return out


# ---------------------------------------------------------------------------------------------
# The unit cube
# ---------------------------------------------------------------------------------------------

def _reflect(u: float) -> float:
    """Fold a step that left [0, 1] back in, like a ball off a wall."""
    u = abs(u) % 2.0
    return 2.0 - u if u > 1.0 else u


def _move_choice(dist: CategoricalDistribution, value, chance: float, rng: np.random.Generator):
    choices = list(dist.choices)
    if len(choices) < 2 or rng.random() >= chance:
        return value
    others = [c for c in choices if c != value]
    return others[int(rng.integers(len(others)))]


def _to_unit(dist: BaseDistribution, value) -> float:
    low, high = float(dist.low), float(dist.high)
    if high == low:
        return 0.5
    if dist.log:
        return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    return (float(value) - low) / (high - low)


def _from_unit(dist: BaseDistribution, u: float):
    """A value of ``dist`` at position ``u`` in [0, 1] (ends included, steps respected)."""
    u = min(1.0, max(0.0, float(u)))
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(len(dist.choices) - 1, int(u * len(dist.choices)))]
    low, high = float(dist.low), float(dist.high)
    x = math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if dist.log else low + u * (high - low)
    if isinstance(dist, IntDistribution):
        step = dist.step
        x = int(dist.low) + step * round((x - low) / step)
        return int(min(int(dist.high), max(int(dist.low), x)))
    if isinstance(dist, FloatDistribution) and dist.step is not None:
        x = low + dist.step * round((x - low) / dist.step)
    return float(min(high, max(low, x)))
