"""Reinforcement learning: a PPO agent trained from a recipe in a Gymnasium environment.

A recipe with ``env: {name: CartPole-v1}`` is an RL run: ``danlu train`` and ``danlu resume``
hand it to :func:`train_rl` and :func:`resume_rl`. The run has what supervised runs have —
seeds, the progress display, exact checkpoints, metrics.jsonl, events.jsonl with diagnoses of
the reward curve, summary.json — and RUN/plots/returns.png. :func:`evaluate_rl` plays a
finished run's greedy policy again; :func:`story_rl` tells what happened (``danlu diagnose``).

Importing this package is cheap and needs neither torch nor gymnasium; they load on first use
(gymnasium is the ``rl`` extra: ``pip install danlu[rl]``).
"""

from .._lazy import lazy_getattr

_LAZY = {
    "train_rl": "_train",
    "resume_rl": "_train",
    "evaluate_rl": "_train",
    "load_policy": "_train",
    "story_rl": "_story",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["evaluate_rl", "load_policy", "resume_rl", "story_rl", "train_rl"]
