"""``train.precision`` and ``train.compile``: how a training step runs on the hardware.

``state.precision`` is to numeric precision what ``state.strategy`` is to processes: the loop asks
it for the context a forward pass runs in (``autocast``), to run the backward pass (``backward``),
to bring gradients to their true scale before the step's hooks and clipping see them
(``unscale``), to take the optimizer step (``step``) and to end the step (``update``). The loop
has no precision case of its own.

* ``32`` — :class:`FullPrecision`: float32 everywhere, and no work at all (the default run is
  bit-for-bit what it was before precision existed).
* ``bf16-mixed`` — :class:`MixedPrecision` with ``torch.autocast(device, torch.bfloat16)`` on
  CPU and CUDA; bfloat16 has float32's range, so no gradient scaler.
* ``16-mixed`` — float16 autocast with ``torch.amp.GradScaler("cuda")``: the loss is scaled up
  before backward, gradients are unscaled before clipping, a step whose gradients overflowed is
  skipped and the scale lowered. The scaler's state goes into every checkpoint, so a resume is
  exact. CUDA only: float16 autocast on CPU runs slower than float32 on common CPUs and torch
  keeps no CPU scaler a checkpoint could rely on, so it is refused in one line (use bf16-mixed).

The weights, the optimizer's state and everything saved stay float32 in every mode; validation
and the final figures are computed under the same autocast as training.

``train.compile: true`` runs the training forward (``state.net``) through ``torch.compile``; the
model that is saved and evaluated is the original module, so checkpoints and model.safetensors have
the same keys as without compiling. Where compiling fails (no compiler, an unsupported model or
platform) the run goes on eagerly after one warning line.
"""
from __future__ import annotations

import contextlib
import sys

import torch

from ..errors import RecipeError


class FullPrecision:
    """The default ``state.precision``: float32, and every method costs nothing."""

    name = "32"

    def autocast(self):
        return contextlib.nullcontext()

    def backward(self, loss) -> None:
        loss.backward()

    def unscale(self, optimizer) -> None:
        pass

    def step(self, optimizer) -> None:
        optimizer.step()

    def update(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


class MixedPrecision(FullPrecision):
    """Autocast to ``dtype`` on ``device_type``; with ``scaler`` (float16 on CUDA) the loss is scaled."""

    def __init__(self, name: str, device_type: str, dtype: torch.dtype, scaler=None):
        self.name, self.device_type, self.dtype, self.scaler = name, device_type, dtype, scaler

    def autocast(self):
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)   # skipped when the unscaled gradients hold inf or NaN
        else:
            optimizer.step()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, d: dict) -> None:
        if self.scaler is not None and d.get("scaler"):
            self.scaler.load_state_dict(d["scaler"])


def build_precision(recipe, device: torch.device):
    """``state.precision`` for ``train.precision`` on ``device``; a RecipeError where it cannot run."""
    name = str(recipe.train.precision)
    if name == "32":
        return FullPrecision()
    if name == "bf16-mixed":
        return MixedPrecision(name, device.type, torch.bfloat16)
    if device.type != "cuda":
        raise RecipeError(f"{recipe.source}: train.precision 16-mixed needs CUDA (device is {device.type}); "
                          f"use bf16-mixed on CPU")
    return MixedPrecision(name, "cuda", torch.float16, torch.amp.GradScaler("cuda"))


class CompiledForward(torch.nn.Module):
    """The training forward through ``torch.compile(model)``, eager from the first failure on.

    ``torch.compile`` compiles lazily, at the first call; a failure there (or in ``torch.compile``
    itself) prints one warning line and the batch runs again eagerly, as does every later one. The
    module holds the model as a plain attribute, not a submodule, so nothing about it is saved."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "compiled", None)
        try:
            object.__setattr__(self, "compiled", torch.compile(model))
        except Exception as err:  # noqa: BLE001 — any failure to compile means: run eagerly
            _fallback(err)

    def forward(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 — compile errors come in many types; eager re-raises real ones
                object.__setattr__(self, "compiled", None)
                _fallback(err)
        return self.model(*args, **kwargs)

    def train(self, mode: bool = True):
        self.model.train(mode)
        return super().train(mode)


def _fallback(err: Exception) -> None:
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    why = f"{type(err).__name__}: {first}"[:200]
    print(f"danlu: warning: train.compile: torch.compile failed ({why}); falling back to eager", file=sys.stderr)


def forward_model(recipe, model: torch.nn.Module) -> torch.nn.Module | None:
    """The module ``state.net`` runs in place of ``model`` (``train.compile``), or None for the model itself."""
    return CompiledForward(model) if recipe.train.get("compile") else None


def evaluation_autocast(recipe, device) -> contextlib.AbstractContextManager:
    """The autocast a saved run's figures are computed under (``danlu eval``), as at the end of its
    training: bf16-mixed on any device, 16-mixed on CUDA; float32 otherwise (and for no recipe)."""
    if recipe is None:
        return contextlib.nullcontext()
    name, device = str(recipe.train.get("precision", 32)), torch.device(device)
    if name == "bf16-mixed" or (name == "16-mixed" and device.type == "cuda"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if name == "bf16-mixed" else torch.float16)
    return contextlib.nullcontext()
