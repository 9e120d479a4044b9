"""Image grids as PNG: the picture that ``danlu generate`` and ``danlu latent`` write, and the
labelled CFG x seed grid of ``danlu generate --grid``."""
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


def save_labeled_grid(images, path, row_labels: list[str], col_labels: list[str], scale: int = 8) -> Path:
    """Write ``images`` (rows * cols, C, H, W in [0, 1], row by row) as one PNG with a label left of
    every row and above every column — an X/Y plot such as ``danlu generate --grid`` draws (CFG
    scale per row, seed per column)."""
    from PIL import Image, ImageDraw, ImageFont

    rows, cols = len(row_labels), len(col_labels)
    n = len(images)
    if n != rows * cols:
        raise ValueError(f"{rows} row and {cols} column labels need {rows * cols} images, got {n}")
    grid = image_grid(images, nrow=cols)
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    cells = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).convert("RGB")
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(cells)
    text_w = max(measure.textbbox((0, 0), t, font=font)[2] for t in row_labels + col_labels)
    text_h = max(measure.textbbox((0, 0), t, font=font)[3] for t in row_labels + col_labels)
    left, top = text_w + 8, text_h + 8
    picture = Image.new("RGB", (cells.width + left, cells.height + top), "white")
    picture.paste(cells, (left, top))
    draw = ImageDraw.Draw(picture)
    cell_h, cell_w = cells.height / rows, cells.width / cols
    for r, label in enumerate(row_labels):
        draw.text((4, top + r * cell_h + cell_h / 2 - text_h / 2), label, fill="black", font=font)
    for c, label in enumerate(col_labels):
        width = draw.textbbox((0, 0), label, font=font)[2]
        draw.text((left + c * cell_w + (cell_w - width) / 2, 4), label, fill="black", font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
    return path
