"""Fit: overfitting while training, underfitting at the end.

* overfitting: the validation loss has stayed above its minimum for ``patience`` epochs (and
  is clearly above it now) while the training loss kept falling, epoch after epoch. It began at the epoch of the
  minimum; the gap is validation minus training loss.
* underfitting: at the end the model is no better on its own training rows than a trivial
  predictor (the majority class; the mean for regression: r2 <= 0.05), or its training and
  validation losses are still close to that predictor's loss.

The epoch checks run in ``on_validation_end`` rather than at epoch end: the checkpoint of the
epoch is written at epoch end, so it then holds what they saw.
"""
from __future__ import annotations

import math

import torch

from ..training._objective import is_objective_model
from ._common import finite, report

_RISE = 0.02          # validation loss this far (relative) above its minimum counts as risen
_SKILL = 0.05         # closing less than this share of the gap to perfect is "no better than trivial"
_NEAR_TRIVIAL = 0.9   # losses above this fraction of the trivial predictor's loss are "high"
_MAX_ROWS = 10_000    # training rows scored at the end (a bound on the cost for large sets)


class FitMonitor:
    """Report overfitting (during training) and underfitting (at the end)."""

    name = "monitor_fit"

    def __init__(self, patience: int = 3, lang: str = "en"):
        self.patience = patience
        self.lang = lang
        self.overfitting_reported = False

    def on_validation_end(self, state) -> None:
        if self.overfitting_reported:
            return
        val = [h.get("val_loss") for h in state.history] + [state.metrics.get("val_loss")]
        train = [h.get("train_loss_running_mean") for h in state.history] + \
                [state.metrics.get("train_loss_running_mean")]
        facts = overfitting_facts(val, train, self.patience)
        if facts is not None:
            self.overfitting_reported = True
            report(state, "overfitting", self.lang, **facts)

    def on_fit_end(self, state) -> None:
        if state.extra.get("diverged") or state.epoch == 0 or "train" not in state.splits:
            return  # a blown-up model is not underfit; and nothing was trained yet
        if is_objective_model(state.model):
            return  # a generative model has no trivial predictor to be compared with
        facts = underfitting_facts(state)
        if facts is not None:
            report(state, "underfitting", self.lang, epoch=state.epoch - 1, **facts)

    def state_dict(self) -> dict:
        return {"overfitting_reported": self.overfitting_reported}

    def load_state_dict(self, d: dict) -> None:
        self.overfitting_reported = d["overfitting_reported"]


def overfitting_facts(val: list, train: list, patience: int) -> dict | None:
    """The facts of overfitting from per-epoch losses, or None."""
    if not val or not finite(val[-1]) or not finite(train[-1]):
        return None
    known = [(v, i) for i, v in enumerate(val) if finite(v)]
    best_val, best = min(known)
    since = len(val) - 1 - best
    if since < patience or not finite(train[best]):
        return None
    risen = val[-1] > best_val + _RISE * abs(best_val)
    if not (risen and _falling(train[best:])):
        return None
    return {"epochs": since, "began_epoch": best + 1, "best_val_loss": best_val, "val_loss": val[-1],
            "train_loss": train[-1], "gap": val[-1] - train[-1]}


def _falling(losses: list) -> bool:
    """Training loss fell epoch after epoch (upticks of ``_RISE`` allowed): the model kept fitting
    the training rows. A loss that bounces around says unstable training, not overfitting."""
    if not all(finite(x) for x in losses):
        return False
    return losses[-1] < losses[0] and all(b < a * (1 + _RISE) for a, b in zip(losses, losses[1:]))


def underfitting_facts(state) -> dict | None:
    from ..training import evaluate_outputs, model_outputs

    X, y = state.splits["train"]
    X, y = X[:_MAX_ROWS], y[:_MAX_ROWS]
    out = model_outputs(state.model, X)
    figures = evaluate_outputs(out, y, state.loss_fn, state.loss_kind, state.info)
    if state.info.task == "classification":
        counts = torch.bincount(y.long().reshape(-1)).double()
        majority = float(counts.max() / counts.sum())
        accuracy = figures.get("accuracy")
        if finite(accuracy) and majority < 1 and (accuracy - majority) / (1 - majority) <= _SKILL:
            return {"variant": "metric", "metric": "accuracy", "value": accuracy, "trivial": majority}
    else:
        r2 = figures.get("r2")
        if finite(r2) and r2 <= _SKILL:
            return {"variant": "metric", "metric": "r2", "value": r2, "trivial": 0.0}
    trivial = trivial_loss(out, y, state)
    train_loss = figures.get("loss")
    val_loss = state.history[-1].get("val_loss") if state.history else None
    if trivial is None or trivial <= 0 or not finite(train_loss) or not finite(val_loss):
        return None
    if min(train_loss, val_loss) >= _NEAR_TRIVIAL * trivial:
        return {"variant": "loss", "train_loss": train_loss, "val_loss": val_loss, "trivial": trivial}
    return None


def trivial_loss(out: torch.Tensor, y: torch.Tensor, state) -> float | None:
    """The loss of the best constant prediction: class priors, or the mean target."""
    kind = state.loss_kind
    with torch.no_grad():
        if kind == "cross_entropy":
            counts = torch.bincount(y.long().reshape(-1), minlength=out.shape[1]).to(out.dtype)
            logits = torch.log(counts.clamp(min=0.5) / counts.sum())
            constant = logits.expand(len(y), -1)
        elif kind == "bce":
            p = y.to(out.dtype).mean().clamp(1e-6, 1 - 1e-6)
            constant = torch.log(p / (1 - p)).expand(out.shape)
        elif kind in ("mse", "mae", "huber"):
            target = y.to(out.dtype).reshape(len(y), -1)
            centre = target.median(0).values if kind == "mae" else target.mean(0)
            constant = centre.expand(out.shape)
        else:
            return None
        value = float(state.loss_fn(constant, y))
    return value if math.isfinite(value) else None
