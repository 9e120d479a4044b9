"""Standardised regression targets.

Regression targets come in their own units (the diabetes target runs from 25 to 346); a network
starting near zero would spend most of its steps just reaching that range. So the network learns
the standardised target: the loss compares ``(prediction - mean) / std`` with ``(y - mean) / std``
(``train_loss`` and ``val_loss`` are therefore in units of the target's standard deviation), and
the model's output is mapped back, so predictions and metrics are in the original units.
"""
from __future__ import annotations

import torch
from torch import nn


class TargetScaled(nn.Module):
    """Wraps a network: output = mean + std * net(x). Mean and std are buffers (saved with the weights)."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        self.register_buffer("target_mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("target_std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1))

    def forward(self, x):
        return self.target_mean + self.target_std * self.net(x)


def target_stats(y: torch.Tensor) -> tuple[list, list]:
    """Mean and std of training targets, per output; a constant target keeps std 1."""
    y2 = y.reshape(len(y), -1).double()
    mean = y2.mean(0)
    std = y2.std(0, unbiased=False) if len(y2) > 1 else torch.ones_like(mean)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.tolist(), std.tolist()


def scaled_loss(loss_fn, model: TargetScaled):
    """The same loss, measured on standardised values."""

    def loss(out, y):
        mean, std = model.target_mean, model.target_std
        # y is (N,) or (N, k); the flat statistics broadcast over either
        return loss_fn((out - mean) / std, (y - mean.reshape(-1)) / std.reshape(-1))

    return loss
