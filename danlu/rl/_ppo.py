"""PPO: collect a rollout, estimate advantages (GAE), take clipped policy-gradient steps.

One update, top to bottom:

1. every environment copy takes ``rl.rollout`` steps with actions sampled from the policy;
2. the critic's values turn the rewards into advantages with generalised advantage estimation
   (how much better than expected each action turned out, looking ``1 / (1 - gamma * lambda)``
   steps ahead);
3. ``rl.epochs`` passes over the rollout, in ``rl.minibatches`` shuffled minibatches, minimise
   the clipped surrogate loss (the policy may not move an action's probability ratio beyond
   ``1 +- rl.clip``: the rollout only tells what happens near the policy that collected it),
   plus ``rl.value_coef`` times the critic's squared error, minus ``rl.entropy_coef`` times
   the policy's entropy (a bonus for staying undecided, i.e. exploring).

An episode cut by a time limit is not over: its last reward gets ``gamma * V(final observation)``
added, so the critic does not learn that the world ends at step 500.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._env import EnvCopies, Finished


@dataclass
class Rollout:
    obs: torch.Tensor        # (T, N, obs_dim)
    actions: torch.Tensor    # (T, N)
    logp: torch.Tensor       # (T, N) log-probability of the action when it was taken
    values: torch.Tensor     # (T, N) critic's estimate when it was taken
    advantages: torch.Tensor
    returns: torch.Tensor    # advantages + values: the critic's regression target


def collect(agent, envs: EnvCopies, steps: int, env_steps: int, gamma: float, lam: float,
            finished: Finished) -> Rollout:
    """``steps`` steps in every copy, starting at the run's environment-step count ``env_steps``."""
    n = len(envs.envs)
    obs, actions, logp, values, rewards, ended = [], [], [], [], [], []
    agent.eval()
    for t in range(steps):
        o = torch.tensor(envs.obs, dtype=torch.float32)   # a copy: envs.obs is overwritten in place
        a, lp, v = agent.act(o)
        r, term, trunc, final_obs = envs.step(a.numpy(), env_steps + (t + 1) * n, finished)
        r = torch.from_numpy(r)
        cut = [i for i, f in enumerate(final_obs) if f is not None]
        if cut:   # bootstrap the episodes a time limit cut short
            cut_obs = torch.as_tensor(np.stack([final_obs[i] for i in cut]), dtype=torch.float32)
            with torch.no_grad():
                r[cut] += gamma * agent.value(cut_obs)
        obs.append(o)
        actions.append(a)
        logp.append(lp)
        values.append(v)
        rewards.append(r)
        ended.append(torch.from_numpy(term | trunc))
    with torch.no_grad():
        last_value = agent.value(torch.as_tensor(envs.obs, dtype=torch.float32))
    values_t = torch.stack(values)
    advantages = gae(torch.stack(rewards), values_t, torch.stack(ended), last_value, gamma, lam)
    return Rollout(torch.stack(obs), torch.stack(actions), torch.stack(logp), values_t, advantages,
                   advantages + values_t)


def gae(rewards, values, ended, last_value, gamma: float, lam: float) -> torch.Tensor:
    """Generalised advantage estimates, (T, N): discounted sums of one-step TD errors, cut where
    an episode ended (the next observation then belongs to a new episode)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(len(rewards))):
        alive = (~ended[t]).float()
        delta = rewards[t] + gamma * next_value * alive - values[t]
        running = delta + gamma * lam * alive * running
        advantages[t] = running
        next_value = values[t]
    return advantages


def update(agent, optimizer, batch: Rollout, cfg, grad_clip: float | None) -> dict:
    """``cfg.epochs`` passes of clipped PPO over the rollout; returns the mean losses and the
    diagnostics people read (entropy, approximate KL, share of clipped ratios)."""
    obs = batch.obs.flatten(0, 1)
    actions, old_logp = batch.actions.flatten(), batch.logp.flatten()
    advantages, returns = batch.advantages.flatten(), batch.returns.flatten()
    totals = torch.zeros(5)
    count = 0
    agent.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(obs)).chunk(cfg.minibatches):
            logp_all = torch.log_softmax(agent(obs[idx]), dim=-1)
            logp = logp_all.gather(-1, actions[idx].unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
            log_ratio = logp - old_logp[idx]
            ratio = log_ratio.exp()
            adv = advantages[idx]
            if len(idx) > 1:   # per-minibatch normalisation: the step size no longer depends on the reward scale
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv).mean()
            value_loss = 0.5 * (agent.value(obs[idx]) - returns[idx]).pow(2).mean()
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(agent.parameters(), grad_clip)
            optimizer.step()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()   # low-variance estimate of KL(old || new)
                clipped = ((ratio - 1).abs() > cfg.clip).float().mean()
                totals += torch.stack([policy_loss, value_loss, entropy, approx_kl, clipped]).detach()
            count += 1
    means = (totals / count).tolist()
    return dict(zip(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), means))
