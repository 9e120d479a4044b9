"""A variational autoencoder (VAE) and the pictures of a latent space.

The VAE (Kingma & Welling, 2014) encodes an input ``x`` to a Gaussian ``q(z|x) = N(mu, diag(sigma^2))``,
draws ``z = mu + sigma * eps`` (the reparameterization: the noise ``eps`` carries no parameter, so
gradients reach ``mu`` and ``sigma``), and decodes ``z`` to pixel probabilities. It minimises the
negative evidence lower bound per sample, ``reconstruction + beta * KL(q(z|x) || N(0, I))``.

The latent-space functions at the end serve ``danlu latent`` for any model with ``encode`` and
``decode``: the VAE (``encode`` returns ``(mu, logvar)``) and the plain autoencoder (a code tensor).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RecipeError
from ..models._nets import dense_stack
from ._grid import save_grid

_FIGURES_SEED = 0      # the fixed noise of the deterministic figures
_CHUNK = 1024          # rows per forward pass when scoring or encoding a whole split


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in closed form (summed over latent units).

    For one unit: ``0.5 * (mu^2 + sigma^2 - 1 - log sigma^2)``. The closed form has no sampling
    noise, which a Monte Carlo estimate of the KL would add to every step.
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over pixels, per sample: the negative log-likelihood of ``x``
    under independent Bernoulli pixels with probabilities ``sigmoid(logits)``.

    Why not MSE: a summed MSE is a Gaussian likelihood with a fixed variance that nobody chose,
    and that variance silently sets how much the KL term weighs (with variance 1 on [0, 1]
    pixels the KL term dominates and reconstructions blur towards the mean image).
    Cross-entropy has no such free scale, and computed from logits it stays finite where the
    sigmoid saturates. Grey levels between 0 and 1 are valid targets: for each pixel the loss
    is smallest at ``p = x``.
    """
    return F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(dim=1)


class VAE(nn.Module):
    """Fully connected VAE for inputs of any shape (images ``(C, H, W)`` or rows ``(D,)``) whose
    values are in [0, 1]; the decoder mirrors the encoder's hidden sizes.

    ``forward(x)`` is the reconstruction from the mean code (no sampling), so evaluation and
    export see a deterministic function; training uses :meth:`objective`.
    """

    def __init__(self, input_shape: tuple[int, ...], latent_dim: int = 2, hidden=(256, 128), beta: float = 1.0,
                 activation: str = "relu"):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.latent_dim = int(latent_dim)
        self.beta = float(beta)
        size = math.prod(self.input_shape)
        hidden = list(hidden)
        body, width = dense_stack(size, hidden, activation, dropout=0.0, batch_norm=False)
        # one head gives mu and log-variance side by side: (N, 2 * latent_dim)
        self.encoder = nn.Sequential(nn.Flatten(), body, nn.Linear(width, 2 * self.latent_dim))
        body, width = dense_stack(self.latent_dim, hidden[::-1], activation, dropout=0.0, batch_norm=False)
        self.decoder = nn.Sequential(body, nn.Linear(width, size))
        self._range_checked = False

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and log-variance of q(z|x), each (N, latent_dim)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits, flat (N, D): the losses take logits for numerical stability."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], shaped like the input: (N, *input_shape)."""
        return torch.sigmoid(self.decode_logits(z)).view(len(z), *self.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0])

    def terms(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) per sample, with ``z = mu + sigma * eps``."""
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps
        return reconstruction_nll(self.decode_logits(z), x), kl_to_standard_normal(mu, logvar)

    def objective(self, xb: torch.Tensor, yb=None) -> torch.Tensor:
        """The negative ELBO, averaged over the batch (labels are not used). The noise comes from
        the global torch RNG, which danlu seeds and checkpoints, so a resumed run is exact."""
        self._check_range(xb)
        eps = torch.randn(len(xb), self.latent_dim, device=xb.device, dtype=xb.dtype)
        recon, kl = self.terms(xb, eps)
        return (recon + self.beta * kl).mean()

    @torch.no_grad()
    def figures(self, X: torch.Tensor, y=None) -> dict[str, float]:
        """Loss, reconstruction and KL of a split, per sample. The one-sample ELBO estimate uses
        noise from a local generator with a fixed seed: the same model and rows always give
        the same figures, and the global RNG of training is not touched."""
        gen = torch.Generator(device=X.device).manual_seed(_FIGURES_SEED)
        recon_sum = kl_sum = 0.0
        for start in range(0, len(X), _CHUNK):
            xb = X[start:start + _CHUNK]
            eps = torch.randn(len(xb), self.latent_dim, generator=gen, device=X.device, dtype=X.dtype)
            recon, kl = self.terms(xb, eps)
            recon_sum += float(recon.sum())
            kl_sum += float(kl.sum())
        n = max(len(X), 1)
        recon, kl = recon_sum / n, kl_sum / n
        return {"loss": recon + self.beta * kl, "reconstruction": recon, "kl": kl}

    def write_plots(self, run_dir, splits: dict, info) -> list[Path]:
        """At the end of training, in ``run_dir/plots``: the latent map of the test split (the
        validation or training split when there is no test split) and a grid of 64 samples."""
        plots = Path(run_dir) / "plots"
        name = next(s for s in ("test", "validation", "train") if s in splits)
        X, y = splits[name]
        classes = list(getattr(info, "classes", None) or [])
        means = latent_means(self, X)
        points, axes = map_points(means)
        title = f"VAE latent space ({name} split, {len(points)} rows)"
        latent = plot_latent_map(points, y.cpu().numpy(), classes, plots / "latent_map.png", title, axes)
        samples = save_grid(vae_samples(self, 64, seed=0), plots / "samples.png", nrow=8)
        return [latent, samples]

    def _check_range(self, xb: torch.Tensor) -> None:
        """Refuse standardised inputs once, on the first batch: the cross-entropy needs targets
        in [0, 1] and would fall without bound otherwise. Checked once, not every batch, since
        reading a GPU tensor's value waits for the GPU."""
        if not self._range_checked:
            require_unit_range(xb, "model.kind vae reconstructs pixels in [0, 1]", "or rescale the data")
            self._range_checked = True


def require_unit_range(xb: torch.Tensor, what: str, other_fix: str) -> None:
    """Refuse inputs outside [0, 1] with a one-line RecipeError: ``what`` says why they must be
    in range, ``other_fix`` offers a second way out besides ``data.scale: none``."""
    lo, hi = float(xb.min()), float(xb.max())
    if lo < 0.0 or hi > 1.0:
        raise RecipeError(f"{what}, but the inputs range over [{lo:.3g}, {hi:.3g}]; set data.scale: none "
                          f"(digits and image folders are already in [0, 1]) {other_fix}")


def as_images(x: torch.Tensor) -> torch.Tensor:
    """View a batch as (N, C, H, W) for an image grid: images pass through; a row of D values
    becomes a square one-channel picture when D is a square number, else a one-pixel-high strip."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:   # (N, H, W) sequences or one-channel images without the channel axis
        return x.unsqueeze(1)
    flat = x.flatten(1)
    side = math.isqrt(flat.shape[1])
    if side * side == flat.shape[1]:
        return flat.view(len(x), 1, side, side)
    return flat.view(len(x), 1, 1, flat.shape[1])


@torch.no_grad()
def vae_samples(model: VAE, n: int, seed: int) -> torch.Tensor:
    """``n`` new images (n, C, H, W) in [0, 1] on the CPU: codes ``z ~ N(0, I)`` decoded. The codes
    come from a CPU generator seeded with ``seed``, so a seed names the same images on any device."""
    if n < 1:
        raise ValueError(f"vae_samples needs n >= 1, got {n}")
    z = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    images = model.decode(z.to(param.device, param.dtype))
    model.train(was_training)
    return as_images(images).float().cpu()


# ---------------------------------------------------------------------------------------------
# Latent space: works for every model with encode and decode (VAE, autoencoder)
# ---------------------------------------------------------------------------------------------

def _code(encoded) -> torch.Tensor:
    """The point that stands for an input: the mean of a VAE's ``(mu, logvar)``, or an
    autoencoder's code itself."""
    return encoded[0] if isinstance(encoded, tuple) else encoded


@torch.no_grad()
def latent_means(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The latent point of every row of ``X``, (N, latent_dim), in eval mode and in chunks."""
    was_training = model.training
    model.eval()
    codes = [_code(model.encode(X[i:i + _CHUNK])).flatten(1) for i in range(0, len(X), _CHUNK)]
    model.train(was_training)
    return torch.cat(codes).float().cpu()


def map_points(means: torch.Tensor) -> tuple[np.ndarray, tuple[str, str]]:
    """Two coordinates per row and the axis names: the latent itself when it has two units (one
    unit is drawn against zero), else its first two principal components."""
    values = means.numpy().astype(np.float64)
    dim = values.shape[1]
    if dim == 2:
        return values, ("z1", "z2")
    if dim == 1:
        return np.column_stack([values[:, 0], np.zeros(len(values))]), ("z1", "")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(values)
    share = pca.explained_variance_ratio_ * 100
    return pca.transform(values), (f"PC1 of z ({share[0]:.0f}% of variance)", f"PC2 of z ({share[1]:.0f}%)")


def plot_latent_map(points: np.ndarray, y: np.ndarray, classes: list, path, title: str,
                    axes: tuple[str, str] = ("z1", "z2")) -> Path:
    """Scatter of the latent points, one colour per class with a legend (class labels), or a
    colour scale (regression targets)."""
    from matplotlib import colormaps

    from ..report._plots import _figure, _save

    fig, ax = _figure(6.4, 5.6)
    if classes:
        cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for c, name in enumerate(classes):
            mask = y == c
            if mask.any():
                ax.scatter(points[mask, 0], points[mask, 1], s=10, alpha=0.75, color=cmap(c % cmap.N),
                           label=str(name))
        ax.legend(title="label", fontsize="small", markerscale=1.8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        shown = ax.scatter(points[:, 0], points[:, 1], s=10, alpha=0.75, c=np.asarray(y, dtype=float).ravel())
        fig.colorbar(shown, ax=ax, label="target")
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def default_pair(y: np.ndarray) -> tuple[int, int]:
    """Rows 0 and the first row whose label differs from row 0's (row 1 if all agree)."""
    if len(y) < 2:
        raise ValueError("an interpolation needs at least two rows")
    for j in range(1, len(y)):
        if y[j] != y[0]:
            return 0, j
    return 0, 1


@torch.no_grad()
def interpolation(model: nn.Module, x_a: torch.Tensor, x_b: torch.Tensor, steps: int) -> torch.Tensor:
    """The two inputs with the decodes of ``steps`` evenly spaced points on the straight line
    between their latent points in between: (steps + 2, C, H, W)."""
    was_training = model.training
    model.eval()
    pair = torch.stack([x_a, x_b])
    codes = _code(model.encode(pair))
    t = torch.linspace(0.0, 1.0, steps, device=codes.device, dtype=codes.dtype)
    t = t.view(steps, *[1] * (codes.dim() - 1))   # broadcast over codes of any shape
    path = (1 - t) * codes[0:1] + t * codes[1:2]
    decoded = model.decode(path)
    model.train(was_training)
    strip = torch.cat([as_images(pair[:1]), as_images(decoded), as_images(pair[1:])])
    return strip.clamp(0.0, 1.0).float().cpu()
