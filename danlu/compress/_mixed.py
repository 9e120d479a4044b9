"""Mixed precision by layer (混合精度, 分层量化): how much each layer suffers from fewer bits,
and which bits each layer gets under a size budget.

Sensitivity of a layer at ``b`` bits = validation loss with only that layer quantized to ``b``
bits minus the float model's validation loss (loss rather than accuracy: it moves smoothly, so
small differences between layers still show). The plan starts with every layer at the most
bits and, while the model is over budget, lowers the layer whose next step down costs the least
sensitivity per byte (or per bit x parameter, for an average-bits budget) saved.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UserError
from ._qmodel import quantize_layer, set_submodule
from ._spec import QuantSpec

MB = 1_000_000


@dataclass
class LayerSensitivity:
    name: str
    params: int
    float_bytes: int                                       # weight + bias as float
    loss_increase: dict[int, float] = field(default_factory=dict)   # bits -> validation loss increase
    metric_drop: dict[int, float] = field(default_factory=dict)     # bits -> primary metric lost
    nbytes: dict[int, int] = field(default_factory=dict)            # bits -> bytes quantized


def layer_float_bytes(layer: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in (layer.weight, layer.bias) if p is not None)


@torch.no_grad()
def measure_sensitivity(model: nn.Module, layers: dict[str, nn.Module], spec: QuantSpec, candidates, evaluate,
                        primary: str, higher_is_better: bool = True, progress: bool = True) -> list[LayerSensitivity]:
    """Quantize one layer at a time at each candidate bit width; ``evaluate(model) -> {loss, primary, ...}``.

    The layer is swapped in place and put back, so no copy of the model is made.
    """
    base = evaluate(model)
    rows = []
    for i, (name, layer) in enumerate(layers.items()):
        row = LayerSensitivity(name, layer.weight.numel(), layer_float_bytes(layer))
        for bits in candidates:
            qlayer = quantize_layer(layer, spec.with_bits(bits))
            set_submodule(model, name, qlayer)
            try:
                figures = evaluate(model)
            finally:
                set_submodule(model, name, layer)
            row.loss_increase[bits] = figures["loss"] - base["loss"]
            drop = base[primary] - figures[primary]
            row.metric_drop[bits] = drop if higher_is_better else -drop
            row.nbytes[bits] = qlayer.nbytes()
        rows.append(row)
        if progress:
            shown = ", ".join(f"{b}b {row.loss_increase[b]:+.4f}" for b in candidates)
            print(f"sensitivity {i + 1}/{len(layers)} {name}: {shown}", file=sys.stderr)
    return rows


def choose_bits(rows: list[LayerSensitivity], rest_bytes: int, *, budget_mb: float | None = None,
                avg_bits: float | None = None) -> dict[str, int]:
    """Bits per layer that meet the budget: total bytes <= ``budget_mb`` MB (10^6 bytes), or a
    parameter-weighted average of code bits <= ``avg_bits``. ``rest_bytes``: the float tensors
    that stay as they are."""
    if (budget_mb is None) == (avg_bits is None):
        raise ValueError("give exactly one of budget_mb and avg_bits")
    candidates = sorted({b for row in rows for b in row.nbytes}, reverse=True)
    bits = {row.name: candidates[0] for row in rows}
    by_name = {row.name: row for row in rows}

    def over() -> bool:
        if budget_mb is not None:
            return plan_bytes(rows, bits, rest_bytes) > budget_mb * MB
        return plan_avg_bits(rows, bits) > avg_bits + 1e-9

    while over():
        best = None
        for name, current in bits.items():
            lower = [b for b in candidates if b < current]
            if not lower:
                continue
            row, nxt = by_name[name], lower[0]
            saved = (row.nbytes[current] - row.nbytes[nxt]) if budget_mb is not None else row.params * (current - nxt)
            cost = (row.loss_increase[nxt] - row.loss_increase[current]) / max(saved, 1)
            key = (cost, -saved, name)
            if best is None or key < best[0]:
                best = (key, name, nxt)
        if best is None:
            raise UserError(_unreachable(rows, rest_bytes, candidates[-1], budget_mb, avg_bits))
        bits[best[1]] = best[2]
    return bits


def _unreachable(rows, rest_bytes, low, budget_mb, avg_bits) -> str:
    smallest = {row.name: low for row in rows}
    if budget_mb is not None:
        least = plan_bytes(rows, smallest, rest_bytes) / MB
        return (f"--budget-mb {budget_mb:g} is below the smallest plan ({least:.4f} MB with every layer at {low} "
                f"bits and the float rest); raise --budget-mb")
    return f"--avg-bits {avg_bits:g} is below the fewest bits available ({low}); use --avg-bits >= {low}"


def plan_bytes(rows: list[LayerSensitivity], bits: dict[str, int], rest_bytes: int) -> int:
    return rest_bytes + sum(row.nbytes[bits[row.name]] for row in rows)


def plan_avg_bits(rows: list[LayerSensitivity], bits: dict[str, int]) -> float:
    params = sum(row.params for row in rows)
    return sum(row.params * bits[row.name] for row in rows) / max(params, 1)


def plan_rows(rows: list[LayerSensitivity], bits: dict[str, int]) -> list[dict]:
    """The plan as JSON rows: layer, params, bits, sensitivity at the chosen and at every width."""
    return [{"layer": row.name, "params": row.params, "bits": bits[row.name],
             "sensitivity": row.loss_increase[bits[row.name]], "metric_drop": row.metric_drop[bits[row.name]],
             "bytes": row.nbytes[bits[row.name]],
             "sensitivity_by_bits": {str(b): v for b, v in row.loss_increase.items()}} for row in rows]


def format_plan(plan: list[dict]) -> str:
    """ASCII table of a plan: layer, params, bits, sensitivity (validation loss increase)."""
    widths = [max([len("layer")] + [len(r["layer"]) for r in plan]), 9, 4, 12, 12, 10]
    header = ["layer", "params", "bits", "sensitivity", "metric drop", "bytes"]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in plan:
        cells = [r["layer"], str(r["params"]), str(r["bits"]), f"{r['sensitivity']:+.5f}",
                 f"{r['metric_drop']:+.4f}", str(r["bytes"])]
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines)
