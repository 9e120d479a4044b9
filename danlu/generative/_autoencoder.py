"""A plain autoencoder: dimensionality reduction learned by a network.

The encoder squeezes each input into a short code (``code_dim`` numbers), the decoder rebuilds the
input from the code, and training minimises the mean squared reconstruction error. With linear
layers this recovers the subspace of PCA's first ``code_dim`` components; the nonlinear layers let
it bend that subspace to the data. Unlike the VAE, the codes are not pushed towards a known
distribution, so there is no sampling: the model is for codes and reconstructions.

danlu trains it through :meth:`Autoencoder.objective` (the "objective model" protocol); it has
``encode`` and ``decode``, so ``danlu latent`` maps and interpolates its codes like a VAE's.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models._nets import dense_stack
from ._vae import require_unit_range

_CHUNK = 1024              # rows per forward pass when scoring a whole split
_RECONSTRUCTIONS = 16      # inputs shown over their reconstructions


class Autoencoder(nn.Module):
    """Fully connected encoder -> code -> decoder for inputs of any shape (images ``(C, H, W)`` or
    rows ``(D,)``); the decoder mirrors the encoder's hidden sizes.

    ``output="sigmoid"`` ends the decoder in a sigmoid, for inputs in [0, 1] (pixels);
    ``"linear"`` leaves it unbounded, for standardised features.
    """

    def __init__(self, input_shape: tuple[int, ...], code_dim: int = 2, hidden=(128, 64), activation: str = "relu",
                 output: str = "sigmoid"):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.latent_dim = int(code_dim)
        self.output = output
        size = math.prod(self.input_shape)
        hidden = list(hidden)
        body, width = dense_stack(size, hidden, activation, dropout=0.0, batch_norm=False)
        self.encoder = nn.Sequential(nn.Flatten(), body, nn.Linear(width, self.latent_dim))
        body, width = dense_stack(self.latent_dim, hidden[::-1], activation, dropout=0.0, batch_norm=False)
        last = nn.Sigmoid() if output == "sigmoid" else nn.Identity()
        self.decoder = nn.Sequential(body, nn.Linear(width, size), last)
        self._range_checked = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code of each input, (N, code_dim)."""
        return self.encoder(x)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Reconstructions shaped like the input, (N, *input_shape)."""
        return self.decoder(code).view(len(code), *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def objective(self, xb: torch.Tensor, yb=None) -> torch.Tensor:
        """Mean squared reconstruction error of the batch (labels are not used; nothing random)."""
        self._check_range(xb)
        return F.mse_loss(self(xb), xb)

    @torch.no_grad()
    def figures(self, X: torch.Tensor, y=None) -> dict[str, float]:
        """``reconstruction_mse`` of a split, per value, which is also its ``loss``."""
        total = 0.0
        for start in range(0, len(X), _CHUNK):
            xb = X[start:start + _CHUNK]
            total += float(F.mse_loss(self(xb), xb, reduction="sum"))
        mse = total / max(X.numel(), 1)
        return {"loss": mse, "reconstruction_mse": mse}

    def write_plots(self, run_dir, splits: dict, info) -> list[Path]:
        """At the end of training, in ``run_dir/plots``: ``codes.png``, the codes of the test split
        (or the last split there is) coloured by label, and for [0, 1] inputs (sigmoid output)
        ``reconstructions.png``, its first inputs (top row) over their reconstructions (bottom row)."""
        from ._grid import save_grid
        from ._vae import as_images, latent_means, map_points, plot_latent_map

        plots = Path(run_dir) / "plots"
        name = next(s for s in ("test", "validation", "train") if s in splits)
        X, y = splits[name]
        points, axes = map_points(latent_means(self, X))
        classes = list(getattr(info, "classes", None) or [])
        title = f"Autoencoder codes ({name} split, {len(points)} rows)"
        written = [plot_latent_map(points, y.cpu().numpy(), classes, plots / "codes.png", title, axes)]
        if self.output == "sigmoid":   # standardised values have no picture
            shown = X[:_RECONSTRUCTIONS]
            with torch.no_grad():
                pairs = torch.cat([as_images(shown), as_images(self(shown))]).clamp(0.0, 1.0).float().cpu()
            written.append(save_grid(pairs, plots / "reconstructions.png", nrow=len(shown)))
        return written

    def _check_range(self, xb: torch.Tensor) -> None:
        """With a sigmoid output, refuse inputs outside [0, 1] on the first batch: the decoder could
        never reach them, and the loss would stall above zero with no hint why. Checked once,
        since reading a GPU tensor's value waits for the GPU."""
        if not self._range_checked and self.output == "sigmoid":
            require_unit_range(xb, "model.kind autoencoder with model.output sigmoid rebuilds values in [0, 1]",
                               "or model.output: linear")
            self._range_checked = True
