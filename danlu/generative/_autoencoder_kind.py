"""Registers the `autoencoder` model kind (keys and a torch-free builder entry).

The network lives in :mod:`danlu.generative._autoencoder`; it is imported by the builder only, so
that validating a recipe that names ``kind: autoencoder`` stays free of torch.
"""
from __future__ import annotations

from ..errors import RecipeError
from ..recipe import Field, sizes
from ..models._builtin import _activation
from ..models._registry import register_model

AUTOENCODER_PARAMS = {
    "code_dim": Field(int, 2, min=1, nullable=False,
                      doc="size of the code each input is squeezed into; 2 draws the codes directly, "
                          "more are mapped by PCA"),
    "hidden": sizes(default=[128, 64], nullable=False,
                    doc="hidden layer sizes of the encoder (the decoder mirrors them)"),
    "activation": _activation(),
    "output": Field(str, "sigmoid", choices=("sigmoid", "linear"), nullable=False,
                    doc="last layer of the decoder: sigmoid for values in [0, 1] (images with data.scale: none), "
                        "linear for standardised data"),
}


def build_autoencoder(cfg, info, out_dim):
    """An autoencoder on inputs of ``info.input_shape``; ``out_dim`` does not apply (the model
    trains on its own reconstruction objective and outputs reconstructions)."""
    from ._autoencoder import Autoencoder

    if getattr(info, "categorical", None):
        raise RecipeError("model.kind autoencoder reconstructs numeric features, but the data has categorical "
                          "columns; keep only numeric ones with data.features")
    return Autoencoder(tuple(info.input_shape), code_dim=cfg["code_dim"], hidden=cfg["hidden"],
                       activation=cfg["activation"], output=cfg["output"])


register_model("autoencoder", build_autoencoder, AUTOENCODER_PARAMS)
