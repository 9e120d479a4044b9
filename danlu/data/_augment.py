"""Training-time augmentation of one batch, vectorised, on the batch's device.

All randomness comes from torch's global generator for that device (``torch.rand`` and
friends with no ``generator=``), so restoring the RNG state from a checkpoint replays the
same augmentations after a resume.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GEOMETRIC = ("shift", "rotate", "hflip", "vflip")


def is_active(cfg: dict) -> bool:
    return any(cfg.get(k) for k in GEOMETRIC + ("noise",))


def _flip(X: torch.Tensor, dim: int) -> torch.Tensor:
    flip = torch.rand(X.shape[0], device=X.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), X.flip(dim), X)


def _affine(X: torch.Tensor, shift: int, rotate: float) -> torch.Tensor:
    """Random rotation by up to ``rotate`` degrees and shift by up to ``shift`` whole pixels.

    affine_grid works in [-1, 1] coordinates on both axes; the rotation terms are scaled by
    the aspect ratio so that non-square images rotate without shearing, and one pixel of
    shift is 2 / size in those coordinates. Edges repeat the border pixels (padding
    'border'), so a shifted digit does not gain a frame of a new value.
    """
    n, _, h, w = X.shape
    angle = (torch.rand(n, device=X.device) * 2 - 1) * math.radians(rotate)
    dx = torch.randint(-shift, shift + 1, (n,), device=X.device).to(X.dtype) * (2.0 / w)
    dy = torch.randint(-shift, shift + 1, (n,), device=X.device).to(X.dtype) * (2.0 / h)
    cos, sin = torch.cos(angle).to(X.dtype), torch.sin(angle).to(X.dtype)
    theta = torch.stack([
        torch.stack([cos, -sin * (h / w), dx], dim=1),
        torch.stack([sin * (w / h), cos, dy], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, list(X.shape), align_corners=False)
    return F.grid_sample(X, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(X: torch.Tensor, cfg: dict, kind: str, noise_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Augmented copy of a batch; ``noise_mask`` (per feature) keeps noise off categorical codes."""
    if kind == "image" and X.dim() == 4:
        if cfg.get("hflip"):
            X = _flip(X, 3)
        if cfg.get("vflip"):
            X = _flip(X, 2)
        if cfg.get("shift") or cfg.get("rotate"):
            X = _affine(X, int(cfg.get("shift") or 0), float(cfg.get("rotate") or 0.0))
    noise = float(cfg.get("noise") or 0.0)
    if noise > 0:
        eps = torch.randn_like(X) * noise
        if noise_mask is not None:
            eps = eps * noise_mask.to(device=X.device, dtype=X.dtype)
        X = X + eps
    return X
