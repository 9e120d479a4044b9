"""Gradient health: per-layer gradient norms, sampled every few steps, and what they say.

A sample is one fused norm over all gradients (``torch._foreach_norm``), summed per layer on
the device and read back once. Layers are the modules that own parameters directly, in the
order the model registers them (for the built-in networks: input to output).

* vanishing: the first weight layer's gradient norm stays below ``vanish_ratio`` times the
  last one's for ``window`` samples in a row;
* exploding: the total norm exceeds ``explode_norm``, or it grew more than 10x over a window
  of samples that mostly rose.

Each is reported when it starts (and again only after it has cleared).
"""
from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path

import torch

from .._jsonl import read_jsonl
from ._common import report

_GROWTH = 10.0            # total norm growth within the window that counts as exploding
_RISING = 0.75            # ... when at least this fraction of the window's steps rose
_HISTORY = 1000           # samples kept in state.grad_norms
FILE = "grad_norms.jsonl"


class GradientMonitor:
    """Sample per-layer gradient norms; report vanishing and exploding gradients."""

    name = "monitor_gradients"

    def __init__(self, every: int = 50, window: int = 5, vanish_ratio: float = 1e-3, explode_norm: float = 1e3,
                 lang: str = "en"):
        self.every = every
        self.window = window
        self.vanish_ratio = vanish_ratio
        self.explode_norm = explode_norm
        self.lang = lang
        self.low_ratio_run = 0          # consecutive samples with a vanishing ratio
        self.totals = deque(maxlen=window + 1)
        self.vanishing = False
        self.exploding = False
        self.last_step = -1
        self._layers = None             # (names, params, layer of each param, first, last)
        self._where = None              # the layer of each param, as a tensor on the model's device
        self._path = None

    # -- set-up ----------------------------------------------------------------------------------

    def on_fit_start(self, state) -> None:
        self._layers = _layers(state.model)
        if self._layers is not None:
            self._where = torch.tensor(self._layers[2], device=state.device)
        if state.run_dir is not None:
            self._path = Path(state.run_dir) / FILE
            state.grad_norms[:] = _reload(self._path, self.last_step)

    # -- sampling --------------------------------------------------------------------------------

    def on_backward_end(self, state) -> None:
        # Sample by the optimizer step counter, so that a resumed run samples the same steps.
        if state.step % self.every or state.step == self.last_step or self._layers is None:
            return
        self.last_step = state.step
        sample = self._sample()
        if sample is None:
            return
        total, norms = sample
        state.grad_total = (state.step, total)  # the divergence monitor reads this
        self._record(state, total, norms)
        if math.isfinite(total):
            self._check_vanishing(state, norms)
            self._check_exploding(state, total, norms)

    def _sample(self):
        names, params, layer_of, _, _ = self._layers
        present = [i for i, p in enumerate(params) if p.grad is not None]
        if not present:
            return None
        norms = torch.stack(_norms([params[i].grad for i in present])).double()
        everything = len(present) == len(params)
        where = self._where if everything else self._where[present]
        per_layer = torch.zeros(len(names), dtype=torch.float64, device=norms.device)
        per_layer.index_add_(0, where, norms.square())
        values = per_layer.sqrt().tolist()  # the one host read of this sample
        total = math.sqrt(sum(v * v for v in values))
        # Only layers that got a gradient this time: an unused layer's zero would read as vanishing.
        got = range(len(names)) if everything else sorted({layer_of[i] for i in present})
        return total, {names[j]: values[j] for j in got}

    def _record(self, state, total: float, norms: dict) -> None:
        row = {"step": state.step, "epoch": state.epoch + 1, "total": _json(total),
               "layers": {k: _json(v) for k, v in norms.items()}}
        history = state.grad_norms
        history.append(row)
        del history[:-_HISTORY]
        if self._path is not None:
            with open(self._path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    # -- diagnoses -------------------------------------------------------------------------------

    def _check_vanishing(self, state, norms: dict) -> None:
        _, _, _, first, last = self._layers
        if first is None or first == last:
            return
        if first not in norms or last not in norms:
            return
        top = norms[last]
        if not top > 0:  # nothing to compare with (a dead or finished head)
            return
        ratio = norms[first] / top
        if ratio < self.vanish_ratio:
            self.low_ratio_run += 1
        else:
            self.low_ratio_run = 0
            self.vanishing = False
        if self.low_ratio_run >= self.window and not self.vanishing:
            self.vanishing = True
            report(state, "vanishing_gradient", self.lang, first=first, first_norm=norms[first], last=last,
                   last_norm=top, ratio=ratio, samples=self.low_ratio_run)

    def _check_exploding(self, state, total: float, norms: dict) -> None:
        self.totals.append(total)
        facts = None
        if total > self.explode_norm:
            facts = {"variant": "norm", "total": total, "limit": self.explode_norm}
        elif len(self.totals) == self.totals.maxlen and self.totals[0] > 0:
            growth = total / self.totals[0]
            steps = list(self.totals)
            rising = sum(b > a for a, b in zip(steps, steps[1:])) / (len(steps) - 1)
            if growth > _GROWTH and rising >= _RISING:
                facts = {"variant": "growth", "total": total, "growth": growth, "samples": len(steps)}
        if facts is None:
            self.exploding = False
            return
        if not self.exploding:
            self.exploding = True
            layer = max(norms, key=norms.get)
            report(state, "exploding_gradient", self.lang, layer=layer, layer_norm=norms[layer], **facts)

    # -- checkpoints -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"low_ratio_run": self.low_ratio_run, "totals": list(self.totals), "vanishing": self.vanishing,
                "exploding": self.exploding, "last_step": self.last_step}

    def load_state_dict(self, d: dict) -> None:
        self.low_ratio_run = d["low_ratio_run"]
        self.totals.clear()
        self.totals.extend(d["totals"])
        self.vanishing, self.exploding = d["vanishing"], d["exploding"]
        self.last_step = d["last_step"]


def _layers(model: torch.nn.Module):
    """Parameter-owning modules in registration order: (names, params, the layer of each param,
    the first and the last layer with a weight matrix)."""
    names, params, layer_of, weighted = [], [], [], []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        names.append(name or type(module).__name__)
        params.extend(own)
        layer_of.extend([len(names) - 1] * len(own))
        if any(p.dim() >= 2 for p in own):
            weighted.append(names[-1])
    if not names:
        return None
    first = weighted[0] if weighted else None
    last = weighted[-1] if weighted else None
    return names, params, layer_of, first, last


def _norms(grads: list) -> list:
    foreach = getattr(torch, "_foreach_norm", None)
    if foreach is not None:
        try:
            return list(foreach(grads))
        except (RuntimeError, TypeError):  # mixed devices or dtypes: one by one
            pass
    return [torch.linalg.vector_norm(g) for g in grads]


def _json(x: float):
    return x if math.isfinite(x) else str(x)


def _reload(path: Path, last_step: int) -> list:
    """After a resume, drop the samples written after the checkpoint (those past the restored
    ``last_step``), so that the file reads as one uninterrupted run."""
    if not path.is_file():
        return []
    rows = [row for row in read_jsonl(path) if row.get("step", math.inf) <= last_step]   # cut lines skipped
    from ..training._checkpoint import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return rows[-_HISTORY:]
