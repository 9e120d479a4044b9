"""The ``env:`` and ``rl:`` sections of a recipe (reinforcement learning), registered by danlu.rl."""
from __future__ import annotations

from ..recipe import NUM, Field, Rule, Section, _f, register_section, sizes, union  # noqa: F401

# danlu/rl — reinforcement learning: an agent that learns by acting in an environment (no data set)
ENV = Section({
    "name": _f(str, None, doc="Gymnasium environment id, e.g. CartPole-v1; when set, the run trains a "
                               "reinforcement-learning agent in it and the data section is not used"),
    "num_envs": _f(int, 8, min=1, nullable=False,
                   doc="copies of the environment stepped side by side; one policy call acts in all of them"),
    "eval_episodes": _f(int, 100, min=1, nullable=False,
                        doc="episodes of the final evaluation (greedy policy, on seeds never used in training)"),
    "solved_return": _f(NUM, None, doc="mean evaluation return that counts as solved; null: the environment's "
                                       "own threshold (CartPole-v1: 475)"),
}, doc="the environment of a reinforcement-learning run (Gymnasium; pip install danlu[rl])")

RL = Section({
    "steps": _f(int, 100_000, min=1, nullable=False, doc="environment steps to train for, all copies together"),
    "rollout": _f(int, 32, min=1, nullable=False, doc="steps each environment copy takes between two updates"),
    "epochs": _f(int, 20, min=1, nullable=False, doc="PPO passes over each rollout"),
    "minibatches": _f(int, 1, min=1, nullable=False, doc="minibatches each pass over a rollout is split into"),
    "gamma": _f(NUM, 0.98, min=0, max=1, nullable=False, doc="discount: what a reward one step later is worth now"),
    "gae_lambda": _f(NUM, 0.8, min=0, max=1, nullable=False,
                     doc="GAE lambda: 0 trusts the critic's estimate (less variance), 1 the observed returns "
                         "(less bias)"),
    "clip": _f(NUM, 0.2, min=0, min_exclusive=True, nullable=False,
               doc="PPO clipping: one update may change an action's probability ratio by at most 1 +- clip"),
    "entropy_coef": _f(NUM, 0.0, min=0, nullable=False,
                       doc="weight of the entropy bonus that keeps the policy exploring"),
    "value_coef": _f(NUM, 0.5, min=0, nullable=False, doc="weight of the critic's (value) loss"),
    "checkpoint_every": _f(int, 10, min=0, nullable=False, doc="updates between checkpoints (0: only at the end)"),
}, doc="the PPO agent (policy-gradient, actor-critic) of a reinforcement-learning run")


def _defaults(section: Section) -> dict:
    from ..recipe import _check_section

    return _check_section(section, {}, "", "defaults")


def _rl_keys_need_env(name, env, rl) -> bool:
    return bool(name) or (env == _defaults(ENV) and rl == _defaults(RL))


RL_RULES = (
    Rule(keys=("env.name", "env", "rl"), check=_rl_keys_need_env,
         message="env.name is required when env or rl keys are set; name a Gymnasium environment, "
                 "e.g. env.name: CartPole-v1"),
    # danlu/rl: what a reinforcement-learning run (env.name set) cannot use
    Rule(keys=("env.name", "device"), check=lambda env, device: not env or device != "cuda",
         message="device: cuda is not used by RL runs (a small policy stepping CPU environments is fastest on "
                 "the CPU); use device: auto or cpu"),
    Rule(keys=("env.name", "env.num_envs", "rl.rollout", "rl.minibatches"),
         check=lambda env, num_envs, rollout, minibatches: not env or minibatches <= num_envs * rollout,
         message=lambda env, num_envs, rollout, minibatches: (
             f"rl.minibatches ({minibatches}) exceeds the {num_envs * rollout} steps of a rollout "
             f"(env.num_envs x rl.rollout); use at most {num_envs * rollout}")),
)

register_section("env", ENV)
register_section("rl", RL, rules=RL_RULES, dataless=lambda recipe: bool(recipe["env"]["name"]))
