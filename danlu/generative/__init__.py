"""Generative models: a VAE and its latent space, conditional diffusion with classifier-free
guidance, seeds and ENSD, and text prompts through the packaged sentence encoder.

Importing the package does not import torch; the names below load on first use.
"""
from __future__ import annotations

from .._lazy import lazy_getattr

_LAZY = {  # public name -> private module that needs torch (or numpy)
    "image_grid": "_grid",
    "save_grid": "_grid",
    "Autoencoder": "_autoencoder",
    "Diffusion": "_diffusion",
    "SamplerSettings": "_samplers",
    "sample": "_samplers",
    "match_prompt": "_prompt",
    "VAE": "_vae",
    "vae_samples": "_vae",
    "latent_means": "_vae",
    "map_points": "_vae",
    "plot_latent_map": "_vae",
    "interpolation": "_vae",
    "kl_to_standard_normal": "_vae",
    "reconstruction_nll": "_vae",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [*_LAZY]
