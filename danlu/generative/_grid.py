"""Image grids as PNG: the picture that ``danlu generate`` and ``danlu latent`` write."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def image_grid(images, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile ``images`` (N, C, H, W) with values in [0, 1] into one (rows*H, cols*W, C) uint8
    array, ``nrow`` images per row (default: as square as possible), ``pad`` white pixels apart."""
    arr = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"image_grid needs (N, C, H, W) images, got shape {arr.shape}")
    n, c, h, w = arr.shape
    cols = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, k = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[top:top + h, left:left + w] = arr[i].transpose(1, 2, 0)
    return (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8)


def save_grid(images, path, nrow: int | None = None, scale: int = 8, invert: bool = False) -> Path:
    """Write ``images`` (N, C, H, W in [0, 1]) as a PNG grid, each pixel drawn ``scale`` times
    larger (8x8 digits are unreadable at their own size). ``invert`` draws dark ink on white."""
    from PIL import Image

    grid = image_grid(1.0 - images if invert else images, nrow)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
    return path
