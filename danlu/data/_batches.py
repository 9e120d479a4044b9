"""Batching in-memory tensors by indexing: no per-sample collation, no DataLoader."""
from __future__ import annotations

from collections.abc import Iterator

import torch


def iterate_batches(X: torch.Tensor, y: torch.Tensor, batch_size: int, perm: torch.Tensor,
                    start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(i, X[perm[a:b]], y[perm[a:b]])`` for batch index ``i >= start``.

    ``perm`` fixes the epoch's row order; ``start`` skips the batches already done, so a
    resumed epoch continues exactly where the checkpoint was taken. The last, partial
    batch is kept.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if perm.device != X.device:
        perm = perm.to(X.device)
    n_batches = (len(perm) + batch_size - 1) // batch_size
    for i in range(start, n_batches):
        idx = perm[i * batch_size:(i + 1) * batch_size]
        yield i, X[idx], y[idx]
