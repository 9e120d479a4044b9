"""Conformance check for model kinds: what every registered builder must satisfy.

The tests run :func:`check_model_builder` over every registered kind, and plugin authors can
run it on their own (``check_model_builder("my_net", info, 3)``).
"""
from __future__ import annotations

from typing import Any, Mapping

from ._registry import MODELS, build_model


def check_model_builder(name: str, info, out_dim: int, cfg: Mapping[str, Any] | None = None, *,
                        batch_size: int = 4, device=None, seed: int = 0):
    """Build kind ``name`` and check it; return the model or raise AssertionError saying what failed.

    Checks: the same torch seed gives the same initial weights; the output of a random batch
    has shape ``(batch_size, out_dim)`` and finite values; a backward pass reaches every
    parameter with a finite, not all-zero gradient; the eval-mode output is repeatable; the
    state dict can be written as safetensors (no shared or non-contiguous tensors). The
    caller's random state is left as it was.
    """
    import torch

    if name not in MODELS:
        raise KeyError(f"model kind {name!r} is not registered; registered: {', '.join(sorted(MODELS))}")
    device = torch.device(device or "cpu")
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        return _check(name, info, out_dim, {**(cfg or {}), "kind": name}, batch_size, device, seed)


def _require(condition, message: str) -> None:
    # An explicit raise, not `assert`: the check must also run under `python -O`.
    if not condition:
        raise AssertionError(message)


def _check(name, info, out_dim, cfg, batch_size, device, seed):
    import torch
    from safetensors.torch import save as safetensors_bytes

    torch.manual_seed(seed)
    model = build_model(cfg, info, out_dim).to(device)
    torch.manual_seed(seed)
    twin = build_model(cfg, info, out_dim).to(device)
    _check_same_weights(model, twin, name)
    _require(list(model.parameters()), f"{name}: the model has no parameters to train")

    if callable(getattr(model, "objective", None)):
        _check_objective(model, info, name, batch_size, device, seed)
    else:
        x = random_batch(info, batch_size, device, seed)
        model.train()
        out = model(x)
        _require(tuple(out.shape) == (batch_size, out_dim),
                 f"{name}: output shape {tuple(out.shape)}, expected {(batch_size, out_dim)}")
        _require(torch.isfinite(out).all(), f"{name}: non-finite values in the output")
        # Random weights on the outputs, so that no gradient cancels out by symmetry.
        (out * torch.randn_like(out)).sum().backward()
        _check_gradients(model, name)
        model.eval()
        with torch.no_grad():
            first, second = model(x), model(x)
        _require(torch.equal(first, second), f"{name}: eval-mode output differs between two calls")
    safetensors_bytes({k: v.detach().cpu() for k, v in model.state_dict().items()})  # raises if not storable
    return model


def _check_gradients(model, name: str) -> None:
    import torch

    for pname, p in model.named_parameters():
        _require(p.grad is not None, f"{name}: parameter {pname} gets no gradient (is it used in forward?)")
        _require(torch.isfinite(p.grad).all(), f"{name}: parameter {pname} has a non-finite gradient")
        _require(p.grad.abs().sum() > 0, f"{name}: parameter {pname} has an all-zero gradient")


def _check_objective(model, info, name: str, batch_size: int, device, seed: int) -> None:
    """Models with their own objective (generative kinds): a finite scalar loss whose gradient
    reaches every parameter, and repeatable figures. Inputs are pixels in [0, 1]."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch_size, *info.input_shape), generator=gen).to(device)
    y = torch.zeros(batch_size, dtype=torch.long, device=device)
    model.train()
    loss = model.objective(x, y)
    _require(loss.dim() == 0 and torch.isfinite(loss), f"{name}: objective must be a finite scalar, got {loss}")
    loss.backward()
    _check_gradients(model, name)
    if callable(getattr(model, "figures", None)):
        model.eval()
        with torch.no_grad():
            first, second = model.figures(x, y), model.figures(x, y)
        _require("loss" in first, f"{name}: figures() must include 'loss'")
        _require(first == second, f"{name}: figures() differ between two calls")


def random_batch(info, batch_size: int, device=None, seed: int = 0):
    """A standard-normal batch of ``info.input_shape``; categorical columns get valid codes."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch_size, *info.input_shape), generator=gen)
    if len(info.input_shape) == 1:
        for column, card in getattr(info, "categorical", None) or []:
            x[:, column] = torch.randint(0, card, (batch_size,), generator=gen).float()
    return x.to(device or "cpu")


def _check_same_weights(model, twin, name: str) -> None:
    import torch

    a, b = model.state_dict(), twin.state_dict()
    _require(a.keys() == b.keys(), f"{name}: two builds have different parameter names")
    for key in a:
        _require(torch.equal(a[key], b[key]), f"{name}: {key} differs between two builds with the same torch seed")
