"""Starting torchrun, and reading what torchrun tells each process. Torch-free on purpose: the
command line decides here whether to launch before anything heavy is imported."""
from __future__ import annotations

import os
import subprocess
import sys

from ..errors import RecipeError, UserError


def world_size() -> int:
    """Number of processes of this training job (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def in_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def is_main_process() -> bool:
    """Rank 0 (or a plain single process): the one that writes and prints."""
    return os.environ.get("RANK", "0") == "0"


def check_batch_size(recipe, nproc: int) -> None:
    """``train.batch_size`` is the global batch: every process takes batch_size / nproc rows."""
    bs = recipe.train.batch_size
    if nproc > 1 and bs % nproc:
        lower, upper = bs - bs % nproc, bs + nproc - bs % nproc
        hint = f"{lower} or {upper}" if lower else f"{upper}"
        raise RecipeError(f"{recipe.source}: train.batch_size {bs} is the global batch and must be divisible by the "
                          f"{nproc} processes; use {hint} (--set train.batch_size={upper})")


def torchrun_command(nproc: int, danlu_args: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m danlu ...`` on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "-m", "danlu", *danlu_args]


def launch(nproc: int, danlu_args: list[str]) -> int:
    """Run ``danlu <danlu_args>`` in ``nproc`` processes on this machine; the exit code of torchrun."""
    if in_torchrun():
        raise UserError("--nproc was given inside a torchrun job; drop --nproc (torchrun already chose the processes)")
    env = dict(os.environ)
    # torchrun would otherwise set 1 thread per process and print a warning about it
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    print(f"danlu: starting {nproc} processes with torchrun", file=sys.stderr, flush=True)
    return subprocess.run(torchrun_command(nproc, danlu_args), env=env).returncode
