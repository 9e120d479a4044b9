"""Batching by indexing: no per-sample collation. Data in memory is a tensor indexed in process;
a streamed split may be read ahead by DataLoader workers (``data.workers``)."""
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


class _BatchDataset(torch.utils.data.Dataset):
    """Items are whole batches: item ``idx`` (a tensor of split positions) is ``X[idx]`` read on the
    CPU, in a worker process."""

    def __init__(self, X):
        self.X = X.cpu()

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        return self.X[idx]

    def __len__(self) -> int:   # pragma: no cover - the sampler, not len(), drives the loader
        return len(self.X)


def streams(X) -> bool:
    """Whether ``X`` is read from disk when indexed (a streamed split) rather than held in memory."""
    return not isinstance(X, torch.Tensor) and hasattr(X, "read")


def read_batches(X, y: torch.Tensor, index_batches: list[torch.Tensor], workers: int = 0
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(X[idx], y[idx])`` for each ``idx`` of ``index_batches``, in that order.

    With ``workers`` > 0 and a streamed ``X``, batches are read ahead by that many DataLoader worker
    processes (into pinned memory when ``X`` lives on CUDA) while the model trains on the current
    one. The order and contents are those of the in-process reads, so a run is the same, and
    resumes the same, whatever the number of workers. Data in memory is indexed in process: a
    tensor index is faster than any worker.
    """
    if workers <= 0 or not streams(X) or len(index_batches) == 0:
        for idx in index_batches:
            yield X[idx], y[idx]
        return
    cuda = X.device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        _BatchDataset(X), sampler=[idx.cpu() for idx in index_batches], batch_size=None,
        num_workers=min(workers, len(index_batches)), pin_memory=cuda,
        generator=torch.Generator().manual_seed(0))   # its own: drawing the workers' seeds must not move the run's
    for idx, xb in zip(index_batches, loader):
        yield xb.to(X.device, non_blocking=cuda), y[idx]
