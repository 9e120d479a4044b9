"""The agent: a policy (actor) and a value estimate (critic), built by danlu's model registry.

The recipe's ``model:`` section describes both networks (e.g. ``{kind: mlp, hidden: [64, 64],
activation: tanh}``): the actor maps an observation to one logit per action, the critic to the
expected discounted return from there. Two separate networks, as is usual for small control
tasks: a shared body would let the critic's loss, which is on another scale, pull the policy's
features around.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data._info import DataInfo


def env_info(obs_dim: int, n_actions: int) -> DataInfo:
    """What the model builders need to know: a flat input of ``obs_dim`` numbers, n actions."""
    return DataInfo(task="classification", kind="env", input_shape=(obs_dim,), n_classes=n_actions,
                    classes=list(range(n_actions)), feature_names=[f"obs_{i}" for i in range(obs_dim)])


class ActorCritic(nn.Module):
    """``forward`` gives action logits; ``value`` the critic's estimate; ``act`` samples actions
    from the global torch generator (seeded by danlu and saved in checkpoints)."""

    def __init__(self, model_cfg, obs_dim: int, n_actions: int, source: str = "recipe"):
        super().__init__()
        from ..models import build_model

        info = env_info(obs_dim, n_actions)
        self.actor = build_model(model_cfg, info, n_actions, source=source)
        self.critic = build_model(model_cfg, info, 1, source=source)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(actions, their log-probabilities, values) for a batch of observations."""
        logp = torch.log_softmax(self.actor(obs), dim=-1)
        actions = torch.multinomial(logp.exp(), 1).squeeze(-1)
        return actions, logp.gather(-1, actions.unsqueeze(-1)).squeeze(-1), self.value(obs)

    @torch.no_grad()
    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action of each observation: evaluation plays the policy's best guess."""
        return self.actor(obs.float()).argmax(-1)
