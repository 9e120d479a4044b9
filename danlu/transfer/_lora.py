"""LoRA: low-rank adapters on the linear layers of a trained model.

A targeted ``nn.Linear`` computing ``x @ W.T + b`` becomes ``x @ (W + s * B @ A).T + b`` with
``W`` and ``b`` frozen, ``A`` (rank x in) and ``B`` (out x rank) trainable and ``s = alpha / rank``.
``B`` starts at zero, so the wrapped model computes exactly what the original did until the
first step. Only ``A`` and ``B`` (and optionally the task head) learn, which is a small fraction
of the weights, and only they need saving.

Why our own code rather than the ``peft`` library: peft pulls in ``transformers`` and is built
around Hugging Face model classes and their config objects, while danlu's models are plain
``nn.Module``s built from a recipe. The whole technique is a dozen lines of tensor algebra; the
wrapper below keeps the base layer's parameter names (``weight``, ``bias``), so a state dict of
the un-adapted model still loads into the adapted one and the run's own weights file stays
readable by ``load_model``.
"""
from __future__ import annotations

import fnmatch
import json
import math
import sys
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import CheckpointError, RecipeError

ADAPTER_FORMAT = "danlu-lora"


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``scaling * B @ A``.

    The base layer's ``weight`` and ``bias`` Parameters are taken over as they are (same names,
    same storage), so wrapping costs no copy and base state dicts load unchanged.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.alpha = int(rank), float(alpha)
        self.scaling = self.alpha / self.rank
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, **factory))
        # A gets nn.Linear's own initialisation; B = 0 makes the update start at exactly zero.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update ``scaling * B @ A`` in the shape of ``weight``."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.merged:  # the update already lives in self.weight
            return out
        # Two thin matmuls instead of forming B @ A: cheaper whenever rank << in, out.
        return out + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.sub_(self.delta_weight().to(self.weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}, merged={self.merged}")


# --- wrapping -----------------------------------------------------------------------------------

def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16, dropout: float = 0.0,
             target_modules: Sequence[str] | None = None, train_head: bool = True,
             verbose: bool = True) -> nn.Module:
    """Wrap the targeted ``nn.Linear`` layers of ``model`` in :class:`LoRALinear`, in place.

    ``target_modules``: module-name patterns (``fnmatch`` style, e.g. ``"body.*"``, or a plain
    name such as ``"head"`` that matches that module or any module ending in ``.head``); ``None``
    targets every linear layer except the task head when ``train_head`` is on. Every other
    parameter is frozen; with ``train_head`` the head (the last linear layer) stays fully
    trainable, since a new task usually needs a new output mapping. Prints the trainable share
    to stderr when ``verbose``; :func:`trainable_parameters` gives the same numbers.
    """
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA adapters; merge them or build a fresh model first")
    head = head_name(model)
    targets = _pick_targets(model, target_modules, skip=head if train_head and target_modules is None else None)
    if not targets:
        wanted = "every linear layer but the head" if target_modules is None else list(target_modules)
        raise RecipeError(f"lora.target_modules {wanted} matches no nn.Linear layer of the model; "
                          f"linear layers: {', '.join(_linear_names(model)) or 'none'}")
    model.requires_grad_(False)
    for name in targets:
        parent, attr = _parent_of(model, name)
        setattr(parent, attr, LoRALinear(getattr(parent, attr), rank, alpha, dropout))
    if train_head and head is not None:
        # Also when the head itself was targeted: its base weight then learns besides its adapter.
        for p in model.get_submodule(head).parameters():
            p.requires_grad_(True)
    if verbose:
        n_train, n_total = trainable_parameters(model)
        print(f"lora: {len(targets)} layers adapted (rank {rank}); trainable parameters {n_train:,} of "
              f"{n_total:,} ({100 * n_train / max(n_total, 1):.2f}%)", file=sys.stderr)
    return model


def lora_from_recipe(model: nn.Module, cfg: Mapping) -> nn.Module:
    """Apply the recipe's ``lora`` section (danlu.transfer's LoRAAdapters callback calls it when the
    model is built, for training and for loading a finished run)."""
    if not cfg or not cfg.get("enabled"):
        return model
    return add_lora(model, rank=cfg["rank"], alpha=cfg["alpha"], dropout=cfg["dropout"],
                    target_modules=cfg["target_modules"], train_head=cfg["train_head"])


def head_name(model: nn.Module) -> str | None:
    """The task head: the last ``nn.Linear`` in registration order (the output layer of danlu's nets)."""
    names = _linear_names(model)
    return names[-1] if names else None


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]


def _matches(name: str, pattern: str) -> bool:
    """``body.*`` matches ``body.0`` and, inside a wrapper (the regression target scaling, a text
    encoder), ``inner.body.0``: the pattern is tried on the name and on each of its dotted tails."""
    parts = name.split(".")
    return any(fnmatch.fnmatchcase(".".join(parts[i:]), pattern) for i in range(len(parts)))


def _pick_targets(model: nn.Module, patterns: Sequence[str] | None, skip: str | None) -> list[str]:
    names = _linear_names(model)
    if patterns is None:
        return [n for n in names if n != skip]
    return [n for n in names if any(_matches(n, p) for p in patterns)]


def _parent_of(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, attr = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


def _lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


# --- merge / unmerge ----------------------------------------------------------------------------

def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (``W += scaling * B @ A``): inference at base cost."""
    layers = _require_lora(model)
    for layer in layers:
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take the adapters back out of the base weights (the inverse of :func:`merge_lora`)."""
    for layer in _require_lora(model):
        layer.unmerge()
    return model


def _require_lora(model: nn.Module) -> list[LoRALinear]:
    layers = _lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA adapters; call add_lora(model) first")
    return layers


# --- adapter files ------------------------------------------------------------------------------

def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapted part of the model: every LoRA ``A``/``B`` plus any other trainable tensor
    (the head, when it was trained). The frozen base weights are left out."""
    _require_lora(model)
    return {name: p.detach() for name, p in model.named_parameters()
            if p.requires_grad or name.endswith(("lora_A", "lora_B"))}


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write :func:`lora_state_dict` to a safetensors file (atomically); returns the path."""
    import os

    from ..training._checkpoint import save_tensors

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = _lora_layers(model)
    tensors = {k: v.contiguous().cpu() for k, v in lora_state_dict(model).items()}
    meta = {"format": ADAPTER_FORMAT, "layers": json.dumps([_layer_desc(model, m) for m in layers])}
    tmp = path.with_name(f".{path.name}.tmp")  # write then rename: no half file on a crash
    save_tensors(tmp, tensors, metadata=meta)
    os.replace(tmp, path)
    return path


def _layer_desc(model: nn.Module, layer: LoRALinear) -> dict:
    name = next(n for n, m in model.named_modules() if m is layer)
    return {"name": name, "rank": layer.rank, "alpha": layer.alpha}


def load_adapters(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter file written by :func:`save_adapters` into a model with the same adapters."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: adapter file not found; write one with save_adapters(model, path)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: cannot read the adapter file ({err}); it is damaged") from None
    if meta.get("format") != ADAPTER_FORMAT:
        raise CheckpointError(f"{path}: not a danlu LoRA adapter file (format {meta.get('format')!r})")
    _copy_adapters(model, tensors, path)
    return model


def _copy_adapters(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    params = dict(model.named_parameters())
    merged = [m for m in _require_lora(model) if m.merged]
    for layer in merged:  # the base weights must not keep the old update
        layer.unmerge()
    for name, value in tensors.items():
        if name not in params:
            raise CheckpointError(f"{path}: tensor {name!r} has no place in this model; add_lora with the "
                                  f"same target_modules as when the adapters were saved")
        if params[name].shape != value.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(params[name].shape)}; use the rank the adapters were trained with")
        with torch.no_grad():
            params[name].copy_(value.to(params[name].device, params[name].dtype))
    for layer in merged:
        layer.merge()
