"""Helpers for the diagnose tests: small recipes, a model that can be poisoned on purpose, and
readers of a run's files."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

import danlu
from danlu.recipe import Recipe

POISONED = "diagnose_poisoned"


def recipe(**spec) -> Recipe:
    """A digits recipe (1274 training rows: 20 batches of 64) with the given sections merged in."""
    base = {"data": {"source": "sklearn", "name": "digits"}, "model": {"kind": "mlp", "hidden": [64]},
            "optimizer": {"lr": 0.01}, "train": {"epochs": 3}, "output": {"progress": "none"}}
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "model":
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return Recipe.from_dict(base)


def run(tmp_path: Path, name: str = "run", **spec):
    return danlu.train(recipe(**spec), tmp_path / name)


def events(run_dir: Path, kind: str | None = None) -> list[dict]:
    """The events of ``kind``; without one, the monitors' findings (the closing ``verdict``, which
    weighs them, only when asked for by name)."""
    rows = [json.loads(line) for line in (Path(run_dir) / "events.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind or (kind is None and r["kind"] != "verdict")]


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def weights_finite(run_dir: Path) -> bool:
    from safetensors.torch import load_file

    return all(bool(torch.isfinite(t).all()) for t in load_file(str(Path(run_dir) / "model.safetensors")).values())


def write_npz(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, X=X.astype(np.float32), y=y.astype(np.float32))
    return path


# ---------------------------------------------------------------------------------------------
# A model that breaks on purpose
# ---------------------------------------------------------------------------------------------

class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


class Poisoned(nn.Module):
    """A one-hidden-layer MLP. Its training forward passes are counted from 1; those listed in
    ``nan_loss_at`` give NaN outputs (so a NaN loss and NaN gradients), those in ``nan_grad_at``
    a finite output with NaN gradients."""

    def __init__(self, in_dim: int, out_dim: int, nan_loss_at=(), nan_grad_at=()):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, 32), nn.ReLU())
        self.head = nn.Linear(32, out_dim)
        self.nan_loss_at, self.nan_grad_at = set(nan_loss_at), set(nan_grad_at)
        self.calls = 0

    def forward(self, x):
        out = self.head(self.body(x))
        if self.training:
            self.calls += 1
            if self.calls in self.nan_loss_at:
                out = out * math.nan
            if self.calls in self.nan_grad_at:
                out = _NanGradient.apply(out)
        return out


BUILT: list[Poisoned] = []   # the models built, so that tests can look at them


def build_poisoned(cfg, info, out_dim):
    model = Poisoned(int(np.prod(info.input_shape)), out_dim, cfg.get("nan_loss_at", ()), cfg.get("nan_grad_at", ()))
    BUILT.append(model)
    return model


def poisoned_model(nan_loss_at=(), nan_grad_at=()) -> dict:
    return {"kind": POISONED, "nan_loss_at": list(nan_loss_at), "nan_grad_at": list(nan_grad_at)}
