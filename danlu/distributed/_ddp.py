"""One process of a torchrun job: the process group, the share of each batch, the DDP wrapper.

Semantics (the same recipe gives the same optimisation on 1 or N processes):

* the data order of an epoch is the global permutation seeded by (seed, epoch); global batch i
  is the same rows as in one process, and process r takes the r-th of N near-equal parts of it;
* each process weights its mean loss by its share of the batch, so that DDP's average of the
  gradients is the gradient of the whole batch's mean loss;
* the batch loss is all-reduced, so every process sees the same ``state.batch_loss`` as one
  process would (monitors then take the same decisions on every rank);
* validation runs on every process on the whole split (same weights, same figures), and rank 0's
  decision to stop is broadcast so no process is left waiting in a collective;
* only rank 0 writes the run directory; checkpoints hold the unwrapped model and the position in
  global batches, so they resume on any number of processes.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from ..errors import RecipeError
from ._launch import check_batch_size


@dataclass
class Distributed:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device   # where collective tensors live (cuda:LOCAL_RANK under NCCL)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
        """This process's part of a global batch and its weight (part size * N / batch size;
        exactly 1.0 when the batch splits evenly)."""
        part = torch.tensor_split(idx, self.world_size)[self.rank]
        return part, len(part) * self.world_size / len(idx)

    def mean_loss(self, weighted_loss: torch.Tensor) -> torch.Tensor:
        """The whole batch's mean loss from every process's weighted loss."""
        total = weighted_loss.detach().to(self.device, torch.float32).clone()
        tdist.all_reduce(total)
        return (total / self.world_size).to(weighted_loss.device)

    def broadcast_text(self, text: str | None) -> str:
        """Rank 0's string on every rank (sent as bytes in a tensor: nothing is pickled)."""
        data = (text or "").encode("utf-8") if self.is_main else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        tdist.broadcast(size, 0)
        buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.is_main and len(data):
            buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        tdist.broadcast(buf, 0)
        return bytes(buf.cpu().tolist()).decode("utf-8")

    def wait_for_all(self) -> None:
        """Block until every process of the job reaches this point."""
        tdist.barrier()

    def callbacks(self) -> list:
        """The callbacks a run in this job adds: the DDP strategy (danlu.training._extend)."""
        return [DistributedTraining(self)]

    def broadcast_flag(self, flag: bool) -> bool:
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        tdist.broadcast(value, 0)
        return bool(value.item())


def setup(recipe) -> Distributed | None:
    """Join the torchrun job described by the environment; None in a single process.

    Backend: NCCL with one GPU per process (cuda:LOCAL_RANK) when the recipe may use CUDA and it
    is present, gloo on CPU otherwise. Several machines need nothing more than torchrun's usual
    rendezvous arguments: everything is read from the environment it sets.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    check_batch_size(recipe, world)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = recipe.device != "cpu" and torch.cuda.is_available()
    if recipe.device == "cuda" and not use_cuda:
        raise RecipeError("device: cuda was asked for but no CUDA GPU is visible; use device: auto or cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)   # "cuda" now means this process's GPU everywhere
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                 device_id=device if use_cuda else None)
        atexit.register(_destroy)
    return Distributed(rank=rank, world_size=world, local_rank=local_rank, device=device)


def _destroy() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


class DataParallel:
    """``state.strategy`` under torchrun: this process's share of each global batch, the forward
    pass through the DistributedDataParallel wrapper, the batch loss averaged over the processes."""

    def __init__(self, dist: Distributed, module: torch.nn.Module):
        self.dist = dist
        self.module = module

    def shard(self, idx: torch.Tensor) -> tuple[torch.Tensor, float]:
        return self.dist.shard(idx)

    def forward_module(self, model) -> torch.nn.Module:
        return self.module

    def reduce(self, loss: torch.Tensor) -> torch.Tensor:
        # every rank then records the whole batch's loss, as one process would
        return self.dist.mean_loss(loss)


class DistributedTraining:
    """The callback that makes the loop multi-process: wraps the model and installs the
    :class:`DataParallel` strategy at fit start, keeps stop decisions in step, puts the
    one-process strategy back at fit end. It holds no state of its own, so checkpoints stay the
    same as in one process."""

    def __init__(self, dist: Distributed):
        self.dist = dist
        self._before = None

    def on_fit_start(self, state) -> None:
        self._check_last_batch(state)
        model = state.model
        ddp_args = {}
        if self.dist.device.type == "cuda":
            # batch-norm statistics over the whole global batch, as in one process (CUDA only)
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            state.model = model
            ddp_args["device_ids"] = [self.dist.local_rank]
        # built after any checkpoint was restored: DDP starts from rank 0's weights and buffers
        self._before = state.strategy
        state.strategy = DataParallel(self.dist, torch.nn.parallel.DistributedDataParallel(model, **ddp_args))
        if not self.dist.is_main:
            # dropout and augmentation draw differently on each rank; rank 0 keeps the seeded
            # stream that its checkpoints record
            torch.manual_seed(state.recipe.seed * 1_000_003 + 7919 * self.dist.rank + state.step)

    def _check_last_batch(self, state) -> None:
        n, bs, batches = len(state.splits["train"][0]), state.recipe.train.batch_size, state.batches_per_epoch
        last = n - (batches - 1) * bs
        if last < self.dist.world_size:
            raise RecipeError(f"{state.recipe.source}: the last batch of each epoch has {last} rows, fewer than the "
                              f"{self.dist.world_size} processes; change train.batch_size or run fewer processes")

    def on_validation_end(self, state) -> None:
        # Every rank validated the same weights on the same rows; rank 0's verdict is the one
        # that counts, so no rank stops while another waits for it in a collective.
        stop = self.dist.broadcast_flag(state.stop_reason is not None)
        if stop and state.stop_reason is None:
            state.request_stop("stopped with rank 0")
        elif not stop:
            state.stop_reason = None

    def on_fit_end(self, state) -> None:
        if self._before is not None:
            state.strategy, self._before = self._before, None
