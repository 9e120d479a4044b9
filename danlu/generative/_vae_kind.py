"""Registers the `vae` model kind (keys and a torch-free builder entry).

The network lives in :mod:`danlu.generative._vae`; it is imported by the builder only, so that
validating a recipe that names ``kind: vae`` stays free of torch.
"""
from __future__ import annotations

from ..recipe import NUM, Field, sizes
from ..models._builtin import _activation
from ..models._registry import register_model

VAE_PARAMS = {
    "latent_dim": Field(int, 2, min=1, nullable=False,
                        doc="size of the latent code z; 2 draws the latent map directly, more are mapped by PCA"),
    "hidden": sizes(default=[256, 128], nullable=False,
                    doc="hidden layer sizes of the encoder (the decoder mirrors them)"),
    "beta": Field(NUM, 1.0, min=0, nullable=False,
                  doc="weight of the KL term: 1 is the ELBO; more gives a smoother, blurrier latent space"),
    "activation": _activation(),
}


def build_vae(cfg, info, out_dim):
    """A VAE on inputs of ``info.input_shape``; ``out_dim`` does not apply (the model is trained
    on its own objective and outputs reconstructions)."""
    from ._vae import VAE

    return VAE(tuple(info.input_shape), latent_dim=cfg["latent_dim"], hidden=cfg["hidden"], beta=cfg["beta"],
               activation=cfg["activation"])


register_model("vae", build_vae, VAE_PARAMS)
