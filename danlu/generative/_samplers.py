"""Sampling a trained :class:`~danlu.generative._diffusion.Diffusion`: DDIM and ancestral steps,
classifier-free guidance, and the seeds that make every image reproducible (采样器).

Seeds follow the Stable Diffusion WebUI, so its habits carry over:

* image ``i`` of a batch starts from noise drawn with seed ``seed + i``; one image of a grid can
  be made again alone with ``n=1`` and its own seed;
* the noise an ancestral sampler adds along the way continues that image's generator, or, when
  ``ensd`` (eta noise seed delta) is not 0, comes from a generator seeded ``seed + i + ensd``.
  DDIM with eta 0 adds no noise, so ENSD cannot change its pictures.

All noise is drawn by CPU generators and then moved to the model's device: the same settings
start from the same noise on a CPU and on a GPU.

The two samplers differ in the noise they add (Ho et al. 2020 give DDPM two choices of variance):

* ``ddim`` with ``eta`` 1 draws from the true posterior q(x_prev | x_t, x0): its variance is
  ``beta_tilde = (1 - a_prev) / (1 - a_t) * beta``, with ``beta = 1 - a_t / a_prev`` over the
  sub-sequence of steps;
* ``ancestral`` is DDPM's ancestral sampler with the other variance, ``sigma^2 = beta`` (the
  larger one, the variance of the forward step itself): the same mean, more fresh noise at every
  step, ``eta`` times its standard deviation. Samples come out grainier with few steps and the
  two agree as the steps shrink (beta_tilde -> beta).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

SAMPLERS = ("ddim", "ancestral")
DEFAULT_ETA = {"ddim": 0.0, "ancestral": 1.0}


@dataclass(frozen=True)
class SamplerSettings:
    """Everything besides the model and the condition that decides the pictures."""

    sampler: str = "ddim"
    steps: int = 25
    eta: float | None = None     # None: the sampler's default (ddim 0, ancestral 1)
    cfg_scale: float = 1.0      # plain conditional; 0 unconditional
    seed: int = 0
    ensd: int = 0

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.eta is None:
            object.__setattr__(self, "eta", DEFAULT_ETA[self.sampler])
        if self.eta < 0 or self.cfg_scale < 0 or self.seed < 0 or self.ensd < 0:
            raise ValueError(f"eta, cfg_scale, seed and ensd must be >= 0, got {asdict(self)}")

    def as_dict(self) -> dict:
        return asdict(self)


def timestep_sequence(timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced training steps from the noisiest (T - 1) down to 0."""
    if steps > timesteps:
        raise ValueError(f"steps must be at most the model's {timesteps} timesteps, got {steps}")
    return [int(t) for t in torch.linspace(timesteps - 1, 0, steps).round().long()]


class NoiseSource:
    """One CPU generator per image for its starting noise and one for the noise added later."""

    def __init__(self, n: int, seed: int, ensd: int):
        self.start = [torch.Generator().manual_seed(seed + i) for i in range(n)]
        # ENSD 0: the added noise continues each image's own stream (after its starting noise)
        self.added = self.start if ensd == 0 else [torch.Generator().manual_seed(seed + i + ensd) for i in range(n)]

    def _draw(self, generators, shape: tuple, device) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)

    def start_noise(self, shape: tuple, device) -> torch.Tensor:
        return self._draw(self.start, shape, device)

    def step_noise(self, shape: tuple, device) -> torch.Tensor:
        return self._draw(self.added, shape, device)


def guided_eps(model, x: torch.Tensor, t: int, cond: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + scale * (eps_cond - eps_uncond).

    Scale 0 is the unconditional model and never looks at the condition (so the label cannot
    leak in through rounding); scale 1 is the plain conditional model. Other scales run both
    predictions as one batch.
    """
    n = len(x)
    steps = torch.full((n,), t, dtype=torch.long, device=x.device)
    if scale == 0 or cond is None:
        return model.eps(x, steps, model.null_conditions(n))
    if scale == 1:
        return model.eps(x, steps, cond)
    both = model.eps(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([cond, model.null_conditions(n)]))
    eps_cond, eps_uncond = both.chunk(2)
    return eps_uncond + scale * (eps_cond - eps_uncond)


def _predict_x0(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean image the noise prediction implies, clipped to the pixel range, and the noise
    that the clipped image implies (clipping keeps strong guidance from overshooting)."""
    x0 = ((x - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
    return x0, (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()


def ddim_step(x, eps, a_t, a_prev, eta: float, noise) -> torch.Tensor:
    """DDIM (Song et al. 2021): jump to the previous step along the predicted noise; ``eta``
    scales the fresh noise from 0 (deterministic) to 1 (as random as DDPM)."""
    x0, eps = _predict_x0(x, eps, a_t)
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    out = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp(min=0).sqrt() * eps
    return out + sigma * noise if noise is not None else out


def ancestral_step(x, eps, a_t, a_prev, eta: float, noise) -> torch.Tensor:
    """DDPM's ancestral step over the sub-sequence: the posterior mean of q(x_prev | x_t, x0) plus
    ``eta`` times ``sqrt(beta)`` fresh noise — DDPM's ``sigma^2 = beta`` choice, not the posterior's
    own ``beta_tilde``, which is what ``ddim_step`` with eta 1 draws (see the module docstring)."""
    x0, _ = _predict_x0(x, eps, a_t)
    beta = 1 - a_t / a_prev
    mean = (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x) / (1 - a_t)
    return mean + eta * beta.sqrt() * noise if noise is not None else mean


STEPS = {"ddim": ddim_step, "ancestral": ancestral_step}


@torch.no_grad()
def sample(model, cond: torch.Tensor | None, n: int, settings: SamplerSettings,
           progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``n`` images (n, C, H, W) in [0, 1] from ``model`` (a Diffusion in eval mode).

    ``cond`` holds one condition vector per image (``model.conditions`` or
    ``model.mixed_condition``), or None for unconditional samples. ``progress(i, steps)`` is
    called after each step.
    """
    device = model.alpha_bar.device
    ts = timestep_sequence(model.timesteps, settings.steps)
    noise = NoiseSource(n, settings.seed, settings.ensd)
    x = noise.start_noise(model.image_shape, device)
    cond = None if cond is None else cond.to(device)
    step = STEPS[settings.sampler]
    for i, t in enumerate(ts):
        a_t = model.alpha_bar[t]
        last = i + 1 == len(ts)
        a_prev = torch.ones_like(a_t) if last else model.alpha_bar[ts[i + 1]]
        eps = guided_eps(model, x, t, cond, settings.cfg_scale)
        fresh = None if last or settings.eta == 0 else noise.step_noise(model.image_shape, device)
        x = step(x, eps, a_t, a_prev, settings.eta, fresh)
        if progress is not None:
            progress(i + 1, len(ts))
    return ((x + 1) / 2).clamp(0, 1)
