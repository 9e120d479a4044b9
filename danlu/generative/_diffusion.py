"""A small class-conditional denoising diffusion model (DDPM training, 扩散模型) for small images.

The network predicts the noise ``eps`` that was mixed into an image at a random step ``t`` of a
fixed noise schedule (Ho et al. 2020). Its condition is a vector: the learned embedding of the
class label, or of one extra "null" class that stands for "no condition". While training, the
label is replaced by null with probability ``cond_dropout``, so one network learns both the
conditional and the unconditional prediction that classifier-free guidance mixes when sampling
(Ho & Salimans 2022). A condition vector rather than a label also lets a text prompt steer the
model through a weighted mix of class embeddings (see ``_prompt.py``).

Pixels live in [0, 1] outside (``data.scale: none``) and in [-1, 1] inside, where the noise has
unit variance.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

FIGURES_SEED = 20240607   # the fixed noise of the validation figures (never the global RNG)


# ---------------------------------------------------------------------------------------------
# Noise schedule
# ---------------------------------------------------------------------------------------------

def make_betas(kind: str, timesteps: int) -> torch.Tensor:
    """Per-step noise variances ``beta_t``, float64.

    ``linear`` is DDPM's 1e-4 .. 0.02 over 1000 steps, rescaled so that fewer steps destroy the
    image just as completely. ``cosine`` (Nichol & Dhariwal 2021) adds noise more slowly at
    the start, which keeps small images recognisable for more of the steps.
    """
    if kind == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    alpha_bar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


# ---------------------------------------------------------------------------------------------
# The noise-prediction network eps(x_t, t, c)
# ---------------------------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the step number (as the Transformer's positions): nearby steps get
    similar vectors, so the network can share what it learns across neighbouring noise levels."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _groups(channels: int) -> int:
    """Group count for GroupNorm: 8 where it divides the channels, else the largest divisor below."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection; the embedding of (t, c) scales and shifts the
    features between them, so every block knows the noise level and the condition."""

    def __init__(self, channels: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * channels)
        self.norm2 = nn.GroupNorm(_groups(channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        out = self.norm2(out) * (1 + scale) + shift
        return h + self.conv2(F.silu(out))


class NoiseNet(nn.Module):
    """eps(x_t, t, c) for images of shape (C, H, W). No down-sampling: on 8x8 images a few 3x3
    blocks already see the whole picture."""

    def __init__(self, image_channels: int, channels: int, blocks: int, emb_dim: int):
        super().__init__()
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(image_channels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(channels, emb_dim) for _ in range(blocks))
        self.head_norm = nn.GroupNorm(_groups(channels), channels)
        self.head = nn.Conv2d(channels, image_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = F.silu(self.time_mlp(timestep_embedding(t, self.emb_dim)) + cond)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.head(F.silu(self.head_norm(h)))


# ---------------------------------------------------------------------------------------------
# The model danlu trains: objective + figures
# ---------------------------------------------------------------------------------------------

class Diffusion(nn.Module):
    """The noise network, its schedule and the class embeddings (row ``n_classes`` is null).

    danlu trains it through :meth:`objective` (the "objective model" protocol) and reports
    :meth:`figures`; sampling lives in :mod:`danlu.generative._samplers`.
    """

    def __init__(self, image_shape: tuple, n_classes: int, *, timesteps: int = 200, schedule: str = "cosine",
                 channels: int = 64, blocks: int = 3, embed_dim: int = 64, cond_dropout: float = 0.15,
                 guidance: float = 2.0):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.n_classes = n_classes
        self.timesteps = timesteps
        self.cond_dropout = cond_dropout
        self.guidance = guidance   # the recommended CFG scale; `danlu generate` uses it by default
        self.net = NoiseNet(self.image_shape[0], channels, blocks, embed_dim)
        self.label_embedding = nn.Embedding(n_classes + 1, embed_dim)
        betas = make_betas(schedule, timesteps)
        # float64 for the products, stored as float32 buffers; saved with the weights, so a run's
        # schedule is in its model.safetensors as well as in its recipe
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float())

    @property
    def null_label(self) -> int:
        return self.n_classes

    def conditions(self, labels: torch.Tensor) -> torch.Tensor:
        """Condition vectors of class indices (``null_label`` for no condition)."""
        return self.label_embedding(labels)

    def mixed_condition(self, weights: torch.Tensor) -> torch.Tensor:
        """The condition of a weighted mix of classes: ``weights`` (N, n_classes) rows summing to 1."""
        return weights.to(self.label_embedding.weight) @ self.label_embedding.weight[:self.n_classes]

    def null_conditions(self, n: int) -> torch.Tensor:
        labels = torch.full((n,), self.null_label, dtype=torch.long, device=self.alpha_bar.device)
        return self.conditions(labels)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t, cond)

    def noisy(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise: any step in one jump."""
        a = self.alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def _loss(self, x: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        x0 = x * 2 - 1
        return F.mse_loss(self.eps(self.noisy(x0, t, noise), t, self.conditions(labels)), noise)

    def objective(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """DDPM's simple loss: the squared error of the predicted noise at a random step.

        Step, noise and the condition dropout come from the global RNG, which danlu seeds and
        saves in checkpoints, so a resumed run draws exactly what it would have drawn.
        """
        n = len(xb)
        t = torch.randint(0, self.timesteps, (n,), device=xb.device)
        noise = torch.randn_like(xb)
        drop = torch.rand(n, device=xb.device) < self.cond_dropout
        labels = torch.where(drop, torch.full_like(yb, self.null_label), yb.long())
        return self._loss(xb, labels, t, noise)

    @torch.no_grad()
    def figures(self, X: torch.Tensor, y: torch.Tensor, repeats: int = 1, batch_size: int = 512) -> dict:
        """The loss of one split on fixed steps and noise: comparable across epochs and runs.

        ``loss`` is the conditional noise error, ``loss_uncond`` the same with the null label;
        the gap is how much the label tells the network. Each image is scored at ``repeats``
        random steps (a local generator seeded with a constant), so the figures are exact repeats
        and two epochs are compared on the same steps and noise. One repeat keeps the validation
        pass cheap (it would otherwise rival an epoch of training).
        """
        gen = torch.Generator().manual_seed(FIGURES_SEED)
        totals = {"loss": 0.0, "loss_uncond": 0.0}
        count = 0
        for _ in range(repeats):
            t = torch.randint(0, self.timesteps, (len(X),), generator=gen).to(X.device)
            noise = torch.randn(X.shape, generator=gen).to(X.device)
            for i in range(0, len(X), batch_size):
                part = slice(i, i + batch_size)
                xb, tb, nb = X[part], t[part], noise[part]
                null = torch.full((len(xb),), self.null_label, dtype=torch.long, device=X.device)
                totals["loss"] += float(self._loss(xb, y[part].long(), tb, nb)) * len(xb)
                totals["loss_uncond"] += float(self._loss(xb, null, tb, nb)) * len(xb)
                count += len(xb)
        return {k: v / max(count, 1) for k, v in totals.items()}

    def write_plots(self, run_dir, splits: dict, info, per_class: int = 8) -> list[Path]:
        """At the end of training: ``run_dir/plots/samples.png``, one row per class, sampled
        with the recommended guidance scale (DDIM, 25 steps, seed 0)."""
        from ._grid import save_grid
        from ._samplers import SamplerSettings, sample

        labels = torch.arange(self.n_classes, device=self.alpha_bar.device).repeat_interleave(per_class)
        settings = SamplerSettings(steps=min(25, self.timesteps), cfg_scale=self.guidance, seed=0)
        images = sample(self, self.conditions(labels), len(labels), settings)
        return [save_grid(images, Path(run_dir) / "plots" / "samples.png", nrow=per_class)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unconditional noise prediction for ``x`` read as an image at the middle step.
        danlu trains and scores this model through :meth:`objective`; this keeps it a valid module."""
        t = torch.full((len(x),), self.timesteps // 2, dtype=torch.long, device=x.device)
        return self.eps(x * 2 - 1, t, self.null_conditions(len(x)))
