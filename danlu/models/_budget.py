"""Refuse a model whose parameters cannot fit in memory, before any of them is allocated.

``model.hidden: [100000000]`` would otherwise try to allocate gigabytes and end in a MemoryError
(or the machine swapping). The builder runs once on PyTorch's ``meta`` device, where tensors have
shapes but no storage, so counting parameters costs nothing; the count times the bytes training
needs per parameter must fit in half of the memory the machine has free (the other half is left
to activations, the data and the rest of the process).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

# float32 weights, their gradients and the optimizer's state (Adam keeps two moments)
BYTES_PER_PARAMETER = 4 * 4
# the rest of the free memory is left to activations, the data and everything else
MEMORY_SHARE = 0.5


def parameter_count(builder, cfg: Mapping[str, Any], info, out_dim: int) -> int | None:
    """Parameters and buffers the builder would allocate, or None when it cannot run on ``meta``."""
    import torch

    try:
        with torch.device("meta"):
            model = builder(cfg, info, out_dim)
    except Exception:   # noqa: BLE001 - not every builder runs on meta; the real build reports its own errors
        return None
    if not isinstance(model, torch.nn.Module):
        return None
    return sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers())


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_parameter_memory(builder, cfg: Mapping[str, Any], info, out_dim: int, source: str = "recipe",
                           available: int | None = None) -> int | None:
    """Raise RecipeError when training the model ``cfg`` describes needs more memory than is free;
    return the parameter count (None when it could not be estimated)."""
    from ..errors import RecipeError

    count = parameter_count(builder, cfg, info, out_dim)
    available = available_memory() if available is None else available
    if count is None or available is None:
        return count
    needed = count * BYTES_PER_PARAMETER
    if needed > MEMORY_SHARE * available:
        raise RecipeError(f"{source}: the model would have about {_amount(count)} parameters, which need about "
                          f"{_bytes(needed)} to train (weights, gradients and optimizer state), more than half of "
                          f"the {_bytes(available)} of memory free; lower {_key_to_lower(cfg)}")
    return count


def _key_to_lower(cfg: Mapping[str, Any]) -> str:
    """The model key holding the largest size: the likeliest cause of a too large model."""
    best, key = 0, None
    for name, value in cfg.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        sizes = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if sizes and max(sizes) > best:
            best, key = max(sizes), name
    return f"model.{key}" if key else "the model's sizes (model.*)"


def _amount(count: int) -> str:
    for unit, size in (("billion", 1e9), ("million", 1e6)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,}"


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} bytes"
