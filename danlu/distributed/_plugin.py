"""The distributed capability's registration (no torch): how a run joins a torchrun job."""
from ..training._extend import register_process_group

register_process_group("danlu.distributed._ddp:setup")
