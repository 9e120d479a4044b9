"""Registers the `diffusion` model kind (keys and a torch-free builder entry).

A class-conditional denoising diffusion model for small images (danlu.generative): trained on its
own objective (noise prediction), sampled with ``danlu generate``.
"""
from __future__ import annotations

from ..errors import RecipeError
from ..recipe import NUM, Field, Rule
from ..models._registry import register_model

DIFFUSION_PARAMS = {
    "timesteps": Field(int, 200, min=2, nullable=False, doc="noise steps of the forward process (T)"),
    "schedule": Field(str, "cosine", choices=("linear", "cosine"), nullable=False,
                      doc="how the noise variance grows over the steps"),
    "channels": Field(int, 64, min=8, nullable=False, doc="feature maps of the noise-prediction network"),
    "blocks": Field(int, 3, min=1, nullable=False, doc="residual blocks of the noise-prediction network"),
    "embed_dim": Field(int, 64, min=2, nullable=False,
                       doc="size of the step embedding and of the learned label embedding (even)", rules=(
        Rule(check=lambda d: d % 2 == 0,
             message=lambda d: f"must be even (sine and cosine halves), got {d}; use {d + 1}"),)),
    "cond_dropout": Field(NUM, 0.15, min=0, max=0.9, nullable=False,
                          doc="chance that a training label is replaced by 'no label', so one network also "
                              "learns the unconditional prediction that guidance needs"),
    "guidance": Field(NUM, 2.0, min=0, nullable=False,
                      doc="recommended classifier-free guidance scale; danlu generate uses it when "
                          "--cfg-scale is not given"),
}


def build_diffusion(cfg, info, out_dim):
    """The model ignores ``out_dim``: it outputs images, not scores."""
    from ._diffusion import Diffusion

    shape = tuple(info.input_shape)
    if len(shape) != 3:
        raise RecipeError(f"model.kind diffusion needs images of shape (channels, height, width), but each sample "
                          f"has shape {shape}; set data.shape, e.g. data.shape: [1, 8, 8]")
    if info.task != "classification" or not info.n_classes:
        raise RecipeError("model.kind diffusion is conditioned on class labels; use a data set with a class "
                          "label column (data.task: classification)")
    return Diffusion(shape, info.n_classes, timesteps=cfg["timesteps"], schedule=cfg["schedule"],
                     channels=cfg["channels"], blocks=cfg["blocks"], embed_dim=cfg["embed_dim"],
                     cond_dropout=cfg["cond_dropout"], guidance=cfg["guidance"])


register_model("diffusion", build_diffusion, DIFFUSION_PARAMS)
