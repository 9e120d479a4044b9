"""Environments: made from a recipe, seeded per episode, stepped side by side, and resumable.

Every episode starts from ``env.reset(seed=s)`` with its own seed ``s``, a function of the
recipe's seed, the copy and the episode's number (:func:`episode_seed`). Training seeds are even
and evaluation seeds odd, so an evaluation never replays an episode the agent trained on.

A Gymnasium environment's state cannot be saved in general (no pickle, and no common API), but
every one of them is a deterministic function of its reset seed and the actions taken since:
all its randomness comes from the generator that ``reset(seed=...)`` re-seeds. So
:meth:`EnvCopies.state_dict` keeps, per copy, the episode's seed and its actions so far, and
:meth:`EnvCopies.load_state_dict` replays them — the copies are then exactly where they were,
which is what makes a resumed run identical to one that never stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import CheckpointError, RecipeError, UserError

TRAIN, EVAL = 0, 1   # the two seed streams


def gymnasium():
    """The gymnasium module, or a one-line error that says how to install it."""
    try:
        import gymnasium as gym
    except ImportError:
        raise UserError("reinforcement learning needs the gymnasium package; install it with "
                        "`pip install danlu[rl]`") from None
    return gym


def make_env(name: str, source: str = "recipe"):
    """One copy of the environment ``name``; unknown ids and unsupported spaces are user errors."""
    gym = gymnasium()
    try:
        env = gym.make(name)
    except gym.error.Error as err:   # NameNotFound, VersionNotFound, ... (their text suggests a close id)
        raise RecipeError(f"{source}: env.name {name!r} is not a Gymnasium environment ({err}); "
                          f"use an id such as CartPole-v1") from None
    check_spaces(env, name, source)
    return env


def check_spaces(env, name: str, source: str) -> None:
    """The agent reads a flat vector of numbers and picks one of n actions."""
    from gymnasium import spaces

    if not isinstance(env.action_space, spaces.Discrete):
        raise RecipeError(f"{source}: env.name {name!r} has {type(env.action_space).__name__} actions; danlu's "
                          f"agent needs discrete ones, e.g. CartPole-v1, Acrobot-v1, LunarLander-v3")
    if not isinstance(env.observation_space, spaces.Box) or len(env.observation_space.shape) != 1:
        raise RecipeError(f"{source}: env.name {name!r} observes {env.observation_space}; danlu's agent needs a "
                          f"flat vector of numbers, e.g. CartPole-v1, Acrobot-v1, LunarLander-v3")


def solved_return(env, configured: float | None) -> float | None:
    """The recipe's threshold, else the one the environment is registered with (may be None)."""
    if configured is not None:
        return float(configured)
    threshold = env.spec.reward_threshold if env.spec is not None else None
    return float(threshold) if threshold is not None else None


def episode_seed(seed: int, stream: int, *key: int) -> int:
    """A reset seed for one episode: hashed from the recipe's seed and the episode's place, then
    made even (training) or odd (evaluation) so that the two streams never meet."""
    raw = int(np.random.SeedSequence(seed, spawn_key=(stream, *key)).generate_state(1)[0]) >> 1
    return 2 * raw + stream


@dataclass
class Finished:
    """Episodes that ended during the last steps: their returns, lengths and end positions."""

    returns: list = field(default_factory=list)
    lengths: list = field(default_factory=list)
    steps: list = field(default_factory=list)


class EnvCopies:
    """``n`` copies of one environment stepped in lock-step, each reset (with its next seed) as
    soon as its episode ends. ``obs`` is always the observation the policy acts on next."""

    def __init__(self, name: str, n: int, seed: int, source: str = "recipe"):
        self.envs = [make_env(name, source) for _ in range(n)]
        self.seed = seed
        self.episodes = [0] * n           # episodes started per copy
        self.seeds = [0] * n              # reset seed of each copy's current episode
        self.actions = [[] for _ in range(n)]
        self.returns = [0.0] * n          # of the episode in progress
        self.obs = np.stack([self._reset(i) for i in range(n)])

    def _reset(self, i: int) -> np.ndarray:
        self.seeds[i] = episode_seed(self.seed, TRAIN, i, self.episodes[i])
        self.episodes[i] += 1
        self.actions[i] = []
        self.returns[i] = 0.0
        obs, _ = self.envs[i].reset(seed=self.seeds[i])
        return obs

    def step(self, actions: np.ndarray, steps_after: int, finished: Finished):
        """Act in every copy. Returns (rewards, terminated, truncated, final observations of the
        truncated copies or None); episodes that ended go to ``finished``, stamped with the run's
        environment-step count ``steps_after`` this step."""
        n = len(self.envs)
        rewards = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_obs = [None] * n
        for i, env in enumerate(self.envs):
            a = int(actions[i])
            obs, r, term, trunc, _ = env.step(a)
            self.actions[i].append(a)
            self.returns[i] += float(r)
            rewards[i], terminated[i], truncated[i] = r, term, trunc
            if term or trunc:
                finished.returns.append(self.returns[i])
                finished.lengths.append(len(self.actions[i]))
                finished.steps.append(steps_after)
                if trunc and not term:
                    final_obs[i] = obs   # the episode was cut, not over: its value is bootstrapped
                obs = self._reset(i)
            self.obs[i] = obs
        return rewards, terminated, truncated, final_obs

    def close(self) -> None:
        for env in self.envs:
            env.close()

    # -- checkpoints -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"episodes": list(self.episodes), "seeds": list(self.seeds),
                "actions": [torch.tensor(a, dtype=torch.int64) for a in self.actions],
                "obs": torch.from_numpy(self.obs.copy())}

    def load_state_dict(self, d: dict) -> None:
        """Put every copy back mid-episode by replaying its actions from the episode's seed."""
        if len(d["seeds"]) != len(self.envs):
            raise CheckpointError(f"the checkpoint has {len(d['seeds'])} environment copies, the recipe "
                                  f"{len(self.envs)}; resume with the recipe the run started with")
        for i, env in enumerate(self.envs):
            self.episodes[i], self.seeds[i] = int(d["episodes"][i]), int(d["seeds"][i])
            self.actions[i] = [int(a) for a in d["actions"][i].tolist()]
            obs, _ = env.reset(seed=self.seeds[i])
            self.returns[i] = 0.0
            for a in self.actions[i]:
                obs, r, *_ = env.step(a)
                self.returns[i] += float(r)
            self.obs[i] = obs
        if not np.array_equal(self.obs, d["obs"].numpy()):
            raise CheckpointError("replaying the saved actions did not bring the environments back to the "
                                  "saved observations (the environment is not deterministic given its seed); "
                                  "this run cannot be resumed exactly — train it again")


def evaluate_policy(policy, name: str, seed: int, episodes: int, batch: int = 25) -> list[float]:
    """Returns of ``episodes`` greedy episodes on evaluation seeds (never used in training),
    played ``batch`` at a time so that one policy call serves many environments."""
    returns: list[float] = []
    while len(returns) < episodes:
        ids = range(len(returns), min(episodes, len(returns) + batch))
        envs = [make_env(name) for _ in ids]
        obs = np.stack([env.reset(seed=episode_seed(seed, EVAL, j))[0] for env, j in zip(envs, ids)])
        totals = np.zeros(len(envs))
        alive = np.ones(len(envs), dtype=bool)
        while alive.any():
            actions = policy.greedy(torch.from_numpy(obs)).numpy()
            for i in np.flatnonzero(alive):
                o, r, term, trunc, _ = envs[i].step(int(actions[i]))
                obs[i] = o
                totals[i] += r
                alive[i] = not (term or trunc)
        returns.extend(float(t) for t in totals)
        for env in envs:
            env.close()
    return returns
