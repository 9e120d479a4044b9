"""Textual inversion (文本反演) for danlu's class-conditional diffusion model.

Textual inversion (Gal et al. 2022) teaches a frozen text-to-image model a new concept from a
few pictures: it learns one new word embedding and nothing else. danlu's diffusion model is
conditioned on a vector (a learned class embedding, see ``_diffusion.py``), so the analogue here
is one new condition vector ``v``: every weight of the model stays frozen, and ``v`` alone is
fitted by DDPM's own loss on the concept's images,

    min_v  E_{x, t, noise} || eps(sqrt(a_t) x + sqrt(1 - a_t) noise, t, v) - noise ||^2,

starting from the mean of the class embeddings. The result is saved as a safetensors file with
its name and settings in the metadata (``danlu textual-inversion``) and used like a class:
``danlu generate RUN --concept FILE``, with classifier-free guidance as for a label.

Every random draw (which images, steps and noise) comes from a local generator seeded with
``seed``, so the same command learns the same vector, and the global RNG is left alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from ..errors import UserError

FORMAT = "danlu.concept"
VERSION = "1"
EVAL_SEED = 20240607   # the fixed steps and noise of the before/after loss (as Diffusion.figures)


@dataclass(frozen=True)
class Concept:
    """A learned condition vector and what it was learned from."""

    name: str
    vector: torch.Tensor   # (embed_dim,)
    meta: dict


def _check_model(model) -> None:
    if not (hasattr(model, "label_embedding") and hasattr(model, "eps") and hasattr(model, "alpha_bar")):
        raise UserError("textual inversion needs a diffusion run (model.kind: diffusion), e.g. one trained "
                        "from recipes/digits_diffusion.yaml")


def _as_images(model, X: torch.Tensor, source: str) -> torch.Tensor:
    shape = tuple(model.image_shape)
    if X.dim() == 2 and X.shape[1] == int(torch.tensor(shape).prod()):
        X = X.reshape(len(X), *shape)
    if tuple(X.shape[1:]) != shape:
        raise UserError(f"{source}: images of shape {tuple(X.shape[1:])}, but the model draws {shape}")
    if len(X) == 0:
        raise UserError(f"{source}: no images; give at least one")
    lo, hi = float(X.min()), float(X.max())
    if lo < 0.0 or hi > 1.0:
        raise UserError(f"{source}: pixels range over [{lo:.3g}, {hi:.3g}] after the run's pipeline, but the "
                        f"diffusion model works on [0, 1]; give images like the ones it was trained on")
    return X.float()


def _loss(model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model.eps(model.noisy(x0, t, noise), t, cond.expand(len(x0), -1)), noise)


@torch.no_grad()
def concept_loss(model, X: torch.Tensor, cond: torch.Tensor, repeats: int = 8) -> float:
    """The DDPM loss of images ``X`` (in [0, 1]) under one condition vector, on fixed steps and noise:
    lower means the condition explains the images better. Comparable between vectors."""
    gen = torch.Generator().manual_seed(EVAL_SEED)
    device = model.alpha_bar.device
    x0 = (X * 2 - 1).to(device)
    total = 0.0
    for _ in range(repeats):
        t = torch.randint(0, model.timesteps, (len(x0),), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        total += float(_loss(model, x0, t, noise, cond.to(device)))
    return total / repeats


def learn_concept(model, X: torch.Tensor, name: str, *, steps: int = 400, lr: float = 0.02,
                  batch_size: int = 32, seed: int = 0, source: str = "images", progress=None) -> Concept:
    """Fit one condition vector to the images ``X`` (N, C, H, W) or (N, C*H*W), pixels in [0, 1],
    with every weight of ``model`` frozen. ``progress(step, steps, loss)`` is called now and then."""
    _check_model(model)
    if steps < 1 or lr <= 0 or batch_size < 1:
        raise UserError(f"textual inversion needs steps >= 1, lr > 0 and batch size >= 1; "
                        f"got {steps}, {lr:g}, {batch_size}")
    X = _as_images(model, X, source)
    device = model.alpha_bar.device
    was_training = model.training
    model.eval()
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    classes = model.label_embedding.weight[:model.n_classes].detach()
    start = classes.mean(0).clone()
    vector = torch.nn.Parameter(start.clone().to(device))
    optimizer = torch.optim.Adam([vector], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    x_all = (X * 2 - 1).to(device)
    try:
        with torch.enable_grad():
            for step in range(1, steps + 1):
                rows = torch.randint(0, len(x_all), (batch_size,), generator=gen)
                t = torch.randint(0, model.timesteps, (batch_size,), generator=gen).to(device)
                noise = torch.randn((batch_size, *x_all.shape[1:]), generator=gen).to(device)
                loss = _loss(model, x_all[rows.to(device)], t, noise, vector)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if progress is not None:
                    progress(step, steps, float(loss.detach()))
    finally:
        for p, needed in frozen:
            p.requires_grad_(needed)
        model.train(was_training)
    learned = vector.detach().clone()
    null = model.null_conditions(1)[0].detach()
    meta = {"name": name, "images": len(X), "steps": steps, "lr": lr, "batch_size": batch_size, "seed": seed,
            "embed_dim": int(learned.numel()),
            "loss": {"null": concept_loss(model, X, null), "start": concept_loss(model, X, start),
                     "learned": concept_loss(model, X, learned)},
            "nearest_class": _nearest(learned, classes)}
    return Concept(name, learned.cpu(), meta)


def _nearest(vector: torch.Tensor, classes: torch.Tensor) -> dict:
    """Cosine similarity of the learned vector to the closest class embedding (its index)."""
    sims = F.cosine_similarity(classes.to(vector), vector[None], dim=1)
    best = int(sims.argmax())
    return {"index": best, "cosine": round(float(sims[best]), 4)}


def save_concept(concept: Concept, path: str | Path, run_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the vector as safetensors (tensor ``concept``; name and settings in the metadata),
    atomically; an existing file is kept unless ``overwrite``."""
    from safetensors.torch import save_file

    from .._integrity import atomic_write

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"{path}: a concept is saved as safetensors; give a path ending in .safetensors")
    if path.exists() and not overwrite:
        raise UserError(f"{path}: already exists; choose another -o path, another --name, or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "version": VERSION, "name": concept.name, "run": str(run_dir),
                "settings": json.dumps(concept.meta, ensure_ascii=False)}
    vector = concept.vector.detach().to("cpu", torch.float32).contiguous().clone()
    atomic_write(path, lambda tmp: save_file({"concept": vector}, str(tmp), metadata=metadata))
    return path


def load_concept(path: str | Path, model=None) -> Concept:
    """Read a concept file (never unpickles); checked against ``model``'s condition size when given."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: concept file not found; make one with `danlu textual-inversion RUN --images ... "
                        f"--name NAME`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            keys = list(f.keys())
            vector = f.get_tensor("concept") if "concept" in keys else None
    except UserError:
        raise
    except Exception as err:   # noqa: BLE001 - a damaged or foreign file is the user's to replace
        raise UserError(f"{path}: not a readable safetensors file ({err}); make it again with "
                        f"`danlu textual-inversion`") from None
    if metadata.get("format") != FORMAT or vector is None or vector.dim() != 1:
        raise UserError(f"{path}: not a danlu concept file (no '{FORMAT}' metadata and 1-D 'concept' tensor); "
                        f"make one with `danlu textual-inversion`")
    if model is not None:
        _check_model(model)
        size = int(model.label_embedding.weight.shape[1])
        if vector.numel() != size:
            raise UserError(f"{path}: a concept of size {vector.numel()}, but this model's conditions have size "
                            f"{size}; learn it on this run with `danlu textual-inversion`")
    meta = json.loads(metadata.get("settings", "{}"))
    meta["run"] = metadata.get("run")
    return Concept(metadata.get("name", path.stem), vector.float(), meta)
