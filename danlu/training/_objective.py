"""Models that carry their own training objective (VAE, diffusion, autoencoder).

A module with a method ``objective(xb, yb) -> scalar loss`` is trained on it instead of
``loss_fn(model(xb), yb)``: the loss of a generative model needs more than the model's output
(a KL term, a random timestep and noise). Optionally it has:

* ``figures(X, y) -> dict`` — the figures of one split (``loss`` among them), deterministic;
* ``write_plots(run_dir, splits, info) -> list[Path]`` — pictures written when training ends.

Without ``figures`` a split's loss is the mean of ``objective`` over batches, drawn from a forked
random stream with a fixed seed: the figure is repeatable and the training stream is untouched.
"""
from __future__ import annotations

import torch


def is_objective_model(model) -> bool:
    return callable(getattr(model, "objective", None))


@torch.no_grad()
def objective_figures(model, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> dict:
    """One split's figures in eval mode: ``model.figures`` or the batched mean objective."""
    was_training = model.training
    model.eval()
    try:
        if callable(getattr(model, "figures", None)):
            figures = model.figures(X, y)
        else:
            devices = [X.device.index or 0] if X.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(0)
                total = sum(float(model.objective(X[i:i + batch_size], y[i:i + batch_size])) * len(X[i:i + batch_size])
                            for i in range(0, len(X), batch_size))
            figures = {"loss": total / max(len(X), 1)}
    finally:
        model.train(was_training)
    return {k: _plain(v) for k, v in figures.items()}


def _plain(value):
    """Tensors and NumPy scalars as JSON numbers (lists stay lists)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
