"""Generative models: a VAE and its latent space, conditional diffusion with classifier-free
guidance, seeds and ENSD, and text prompts through the packaged sentence encoder."""
from __future__ import annotations

from ._grid import image_grid, save_grid

__all__ = ["image_grid", "save_grid"]
