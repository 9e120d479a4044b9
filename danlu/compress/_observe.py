"""Activation ranges: observers that watch a layer's inputs on calibration batches, and the
8-bit parameters (scale, zero point) that a range gives.

* ``minmax`` keeps the smallest and largest value seen — every value fits, but one outlier
  stretches the grid for all the others;
* ``percentile`` averages each batch's low and high percentiles (0.1 % and 99.9 % by default),
  so rare outliers are clipped and the common values get a finer grid.
"""
from __future__ import annotations

import torch

ACT_BITS = 8
OBSERVERS = ("minmax", "percentile")
# torch.quantile refuses very large inputs; a fixed stride sample is plenty for two percentiles.
_QUANTILE_SAMPLE = 1_000_000


class MinMaxObserver:
    def __init__(self):
        self.lo = None
        self.hi = None

    def update(self, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)

    def range(self) -> tuple[float, float]:
        if self.lo is None:
            raise RuntimeError("observer saw no data")
        return self.lo, self.hi


class PercentileObserver:
    def __init__(self, percentile: float = 99.9):
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.q = percentile / 100
        self.los: list[float] = []
        self.his: list[float] = []

    def update(self, x: torch.Tensor) -> None:
        flat = x.detach().reshape(-1).float()
        if flat.numel() > _QUANTILE_SAMPLE:
            flat = flat[:: -(-flat.numel() // _QUANTILE_SAMPLE)]
        qs = torch.quantile(flat, torch.tensor([1 - self.q, self.q], device=flat.device))
        self.los.append(float(qs[0]))
        self.his.append(float(qs[1]))

    def range(self) -> tuple[float, float]:
        if not self.los:
            raise RuntimeError("observer saw no data")
        return sum(self.los) / len(self.los), sum(self.his) / len(self.his)


def make_observer(kind: str, percentile: float = 99.9):
    if kind == "minmax":
        return MinMaxObserver()
    if kind == "percentile":
        return PercentileObserver(percentile)
    raise ValueError(f"observer must be one of {', '.join(OBSERVERS)}, got {kind!r}")


def act_qparams(lo, hi, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero point) of 8-bit activation codes for the range [lo, hi].

    sym: codes in [-127, 127], zero point 0. asym: codes in [0, 255]; the range is stretched to
    hold zero so that zeros (padding, ReLU outputs) stay exact. ``lo``/``hi`` may be floats or
    0-d tensors (dynamic quantization passes the batch's own, on its device).
    """
    lo = torch.as_tensor(lo, dtype=torch.float32).clamp(max=0)
    hi = torch.as_tensor(hi, dtype=torch.float32, device=lo.device).clamp(min=0)
    if scheme == "sym":
        amax = torch.maximum(-lo, hi)
        scale = torch.where(amax > 0, amax / (2 ** (ACT_BITS - 1) - 1), torch.ones_like(amax))
        return scale, torch.zeros((), dtype=torch.int32, device=lo.device)
    top = 2 ** ACT_BITS - 1
    scale = torch.where(hi > lo, (hi - lo) / top, torch.ones_like(hi))
    zero_point = torch.round(-lo / scale).clamp(0, top).to(torch.int32)
    return scale, zero_point


def act_codes(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: str) -> torch.Tensor:
    """8-bit codes of ``x`` as int32 (sym: [-127, 127]; asym: [0, 255])."""
    if scheme == "sym":
        top = 2 ** (ACT_BITS - 1) - 1
        return torch.round(x / scale).clamp_(-top, top).to(torch.int32)
    return (torch.round(x / scale) + zero_point).clamp_(0, 2 ** ACT_BITS - 1).to(torch.int32)


def fake_quant_act(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, scheme: str) -> torch.Tensor:
    """``x`` rounded to its 8-bit grid and back to float."""
    return (act_codes(x, scale, zero_point, scheme) - zero_point).to(x.dtype) * scale


def batch_qparams(x: torch.Tensor, scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic quantization: the batch's own range, computed at inference."""
    return act_qparams(x.detach().min(), x.detach().max(), scheme)


@torch.no_grad()
def calibrate(model: torch.nn.Module, layer_names, batches, observer: str = "minmax",
              percentile: float = 99.9) -> dict[str, tuple[float, float]]:
    """Run ``batches`` through ``model`` and return each named layer's input range."""
    observers = {name: make_observer(observer, percentile) for name in layer_names}
    hooks = [model.get_submodule(name).register_forward_pre_hook(_watch(observers[name])) for name in layer_names]
    was_training = model.training
    model.eval()
    try:
        for xb in batches:
            model(xb)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {name: obs.range() for name, obs in observers.items()}


def _watch(observer):
    def hook(_module, args):
        observer.update(args[0])

    return hook
