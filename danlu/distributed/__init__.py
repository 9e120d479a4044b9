"""Multi-process training with torchrun and DistributedDataParallel.

``danlu train r.yaml --nproc N`` starts ``torchrun``; under torchrun (``WORLD_SIZE > 1``) every
process trains on its share of each global batch, DDP averages the gradients, and only rank 0
writes the run directory. ``train.batch_size`` is the global batch, so one recipe gives the same
optimisation on 1 or N processes, and a checkpoint resumes on any number of processes.

The launcher and the environment readers are torch-free (the command line uses them before torch
is imported); the DDP parts load on first use.
"""
from ._launch import check_batch_size, in_torchrun, is_main_process, launch, torchrun_command, world_size

_DDP_NAMES = ("Distributed", "DistributedTraining", "setup")


def __getattr__(name):
    # torch is imported only when the multi-process machinery is really used
    if name in _DDP_NAMES:
        from . import _ddp

        return getattr(_ddp, name)
    raise AttributeError(f"module 'danlu.distributed' has no attribute {name!r}")


__all__ = ["Distributed", "DistributedTraining", "check_batch_size", "in_torchrun", "is_main_process", "launch",
           "setup", "torchrun_command", "world_size"]
