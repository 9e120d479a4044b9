"""A small one-dimensional k-means (Lloyd's algorithm) over many rows at once, for lookup-table
quantization: each row (a tensor, a channel or a group of weights) gets its own codebook.

In one dimension the nearest centroid is found by binary search between the midpoints of the
sorted centroids, so memory stays proportional to the data, not data x centroids. The start is
deterministic — centroids at evenly spaced quantiles of each row — so the same weights always
give the same codebook; no random seed is needed.
"""
from __future__ import annotations

import torch

MAX_ITERS = 30


def assign(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for each value; ``centroids`` (rows, k) must be sorted per row."""
    bounds = (centroids[:, 1:] + centroids[:, :-1]) / 2
    return torch.searchsorted(bounds.contiguous(), values.contiguous())


def quantile_init(values: torch.Tensor, k: int) -> torch.Tensor:
    """Centroids at the (i + 0.5) / k quantiles of each row: dense where the data is dense."""
    ordered, _ = values.sort(dim=1)
    n = values.shape[1]
    positions = ((torch.arange(k, device=values.device, dtype=torch.float64) + 0.5) * n / k).long().clamp(max=n - 1)
    return ordered[:, positions]


def kmeans_1d(values: torch.Tensor, k: int, iters: int = MAX_ITERS) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster each row of ``values`` (rows, n) into ``k`` centroids.

    Returns ``(centroids, codes)``: centroids (rows, k) sorted ascending per row, and codes
    (rows, n) int64, the index of each value's nearest centroid. A centroid left without
    members keeps its place (a row with fewer distinct values than ``k`` has repeats).
    """
    values = values.float()
    centroids = quantile_init(values, k)
    codes = assign(values, centroids)
    for _ in range(iters):
        sums = torch.zeros_like(centroids).scatter_add_(1, codes, values)
        counts = torch.zeros_like(centroids).scatter_add_(1, codes, torch.ones_like(values))
        centroids, _ = torch.where(counts > 0, sums / counts.clamp_min(1), centroids).sort(dim=1)
        new_codes = assign(values, centroids)
        if torch.equal(new_codes, codes):
            break
        codes = new_codes
    return centroids, codes
