"""Quantization-aware training (QAT, 训练感知量化).

The forward pass sees quantized weights, so the loss measures the model that will be shipped;
the backward pass treats rounding as the identity (the straight-through estimator), so the
float "latent" weights keep receiving gradients and drift to places where their rounded
values work well.

It is done with ``torch.nn.utils.parametrize``: each Linear / Conv weight gets a
:class:`FakeQuant` parametrization. The module tree stays the one the model builder made; the
state dict names the latent weight ``<layer>.parametrizations.weight.original``. The transform
is a pure function of the model and the ``quant`` section, so training and ``load_model`` build
identical modules and keys.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._qmodel import quantizable_layers
from ._quantize import dequantize, quantize
from ._spec import QuantSpec


class FakeQuant(nn.Module):
    """weight -> its quantized value in the forward pass; gradient passed straight through."""

    def __init__(self, spec: QuantSpec):
        super().__init__()
        self.spec = spec
        self.enabled = True  # a plain attribute: switched per epoch by QATSchedule, never saved

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return weight
        rounded = dequantize(quantize(weight, self.spec)).to(weight.dtype)
        # value: rounded; gradient: d(weight) — the straight-through estimator
        return weight + (rounded - weight).detach()

    def extra_repr(self) -> str:
        return self.spec.tag


def prepare_qat(model: nn.Module, quant_cfg: Mapping | None, info=None) -> nn.Module:
    """Put fake quantization on every quantizable layer of ``model`` (in place; also returned).

    Called by the run when ``quant.enabled`` (:class:`QATRun`'s ``transform_model``), both for
    training and for loading the finished run. ``info`` is unused today (kept for the
    transform's common signature).
    """
    spec = QuantSpec.from_cfg(quant_cfg)
    for layer in quantizable_layers(model).values():
        parametrize.register_parametrization(layer, "weight", FakeQuant(spec))
    return model


def fake_quant_modules(model: nn.Module) -> list[FakeQuant]:
    return [m for m in model.modules() if isinstance(m, FakeQuant)]


def qat_spec(model: nn.Module) -> QuantSpec | None:
    """The spec a QAT model was trained with (None if it has no fake quantization)."""
    found = fake_quant_modules(model)
    return found[0].spec if found else None


def set_qat_enabled(model: nn.Module, enabled: bool) -> None:
    for m in fake_quant_modules(model):
        m.enabled = enabled


def strip_qat(model: nn.Module) -> nn.Module:
    """Remove the fake quantization, keeping the latent float weights (in place; also returned)."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight") and any(
                isinstance(p, FakeQuant) for p in module.parametrizations["weight"]):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    return model


class QATSchedule:
    """Callback: float training for ``start_epoch`` epochs, fake quantization after that.

    Validation runs with the same setting as the epoch's training. At the end of fitting the
    model is left quantized (as it is used and exported).
    """

    name = "qat"

    def __init__(self, start_epoch: int = 0):
        self.start_epoch = start_epoch

    def on_epoch_start(self, state) -> None:
        on = state.epoch >= self.start_epoch
        if on and state.epoch == self.start_epoch and self.start_epoch > 0 and state.batch == 0:
            state.record_event("qat_start", message=f"fake quantization starts at epoch {state.epoch + 1}")
        set_qat_enabled(state.model, on)

    def on_fit_end(self, state) -> None:
        set_qat_enabled(state.model, True)


def qat_callbacks(recipe) -> list:
    """The callbacks a recipe's ``quant`` section asks for (empty when QAT is off)."""
    quant = recipe.get("quant")
    if not quant or not quant.get("enabled"):
        return []
    return [QATSchedule(int(quant.get("start_epoch", 0)))]


class QATRun:
    """The run's side of QAT: fake quantization put on the model when it is built (and when a
    finished run is rebuilt for eval/predict), and the integer model written to RUN/quantized-qat/
    when the run ends (``quant.export``)."""

    def __init__(self, quant, run_dir=None, progress: str = "none"):
        self.quant, self.run_dir, self.progress = quant, run_dir, progress

    def transform_model(self, model, info):
        return prepare_qat(model, self.quant, info)

    def on_run_end(self, state) -> None:
        if not self.quant.get("export") or state.run_dir is None:
            return
        import sys

        from ._export import export_qat

        shown = self.progress != "none"
        result = export_qat(state.run_dir, progress=shown)
        if shown and result is not None:
            print(result.table(), file=sys.stderr)


def qat_run_callbacks(recipe, run_dir=None, progress: str = "none") -> list:
    """Registered for recipes with ``quant.enabled`` (danlu.compress._plugin)."""
    return [QATRun(recipe.quant, run_dir, progress), *qat_callbacks(recipe)]
