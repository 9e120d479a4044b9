"""Generative models: a VAE and its latent space, conditional diffusion with classifier-free
guidance, seeds and ENSD, and text prompts through the packaged sentence encoder.

Importing the package does not import torch; the names below load on first use.
"""
from __future__ import annotations

from ._grid import image_grid, save_grid

_LAZY = {  # public name -> private module that needs torch
    "Autoencoder": "_autoencoder",
    "VAE": "_vae",
    "vae_samples": "_vae",
    "latent_means": "_vae",
    "map_points": "_vae",
    "plot_latent_map": "_vae",
    "interpolation": "_vae",
    "kl_to_standard_normal": "_vae",
    "reconstruction_nll": "_vae",
}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["image_grid", "save_grid", *_LAZY]
