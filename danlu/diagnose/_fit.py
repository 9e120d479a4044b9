"""Fit: overfitting while training, underfitting and an absent signal at the end, and inputs
on wildly different scales at the start.

* overfitting, ``rising``: the validation loss has stayed above its minimum for ``patience``
  epochs, is clearly (20 %) above it now and its trend since the minimum rose as much (one noisy
  epoch is not a trend), while the training loss kept falling, epoch after epoch.
  It began at the epoch of the minimum; the gap is validation minus training loss.
* overfitting, ``gap``: for ``patience`` epochs in a row the model scores clearly better on (a
  slice of) its training rows than on validation, in its metric (accuracy, r2) and in its loss,
  even though the validation loss need not rise. It opened at the first epoch of that stretch;
  the stretch only ends once the gap has shrunk to half the threshold (hysteresis).
* no signal: at the end the model has learned its training rows, yet on validation it is no
  better than a trivial predictor (random labels, features unrelated to the label).
* underfitting: at the end the model is no better on its own training rows than a trivial
  predictor (the majority class; the mean for regression: r2 <= 0.05), or its training and
  validation losses are still close to that predictor's loss.
* unscaled features: with ``data.scale: none`` the largest feature standard deviation is more
  than ``_SPREAD`` times the median one (pixels on one scale are not flagged).

Epochs before the last rescue are left out: they were trained at a rate since cut.

The epoch checks run in ``on_validation_end`` rather than at epoch end: the checkpoint of the
epoch is written at epoch end, so it then holds what they saw.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..training._objective import is_objective_model
from ._common import finite, report, since_rescue, trend
from ._probe import train_outputs, want_rows

_RISE = 0.02          # validation loss this far (relative) above its minimum counts as risen
_RISEN = 0.2         # ... and this far above it at the end: clearly risen, not noise
_SKILL = 0.05         # closing less than this share of the gap to perfect is "no better than trivial"
_NEAR_TRIVIAL = 0.9   # losses above this fraction of the trivial predictor's loss are "high"
_MAX_ROWS = 10_000    # training rows scored at the end (a bound on the cost for large sets)
_GAP_ROWS = 1024      # training rows scored each epoch for the generalisation gap
_GAP = {"accuracy": 0.05, "r2": 0.1}   # metric gap (train - validation) that counts as overfitting ...
_GAP_LOSS = 10.0      # ... when the validation loss is also this many times the training loss
_NO_SIGNAL = 0.1      # validation skill at most this (share of the gap to perfect) ...
_LEARNT = 0.3         # ... while the training skill is at least this: no signal
_SPREAD = 30.0        # the largest feature standard deviation over the median one: unscaled


class FitMonitor:
    """Report overfitting (during training) and underfitting (at the end)."""

    name = "monitor_fit"

    def __init__(self, patience: int = 3, lang: str = "en"):
        self.patience = patience
        self.lang = lang
        self.overfitting_reported = False
        self.gap_since = None     # 1-based epoch at which the current gap opened
        self.gap_epochs = 0       # epochs in a row with the gap open
        self.scale_checked = False

    def on_fit_start(self, state) -> None:
        # the divergence monitor's probe pass covers these rows too, in the epochs that need them
        want_rows(state, self, self._gap_rows)
        if not self.scale_checked:
            self.scale_checked = True
            facts = unscaled_facts(state)
            if facts is not None:
                report(state, "unscaled_features", self.lang, **facts)

    def on_validation_end(self, state) -> None:
        if self.overfitting_reported:
            return
        start = since_rescue(state)
        rows = state.history[start:] + [state.metrics]
        val = [h.get("val_loss") for h in rows]
        train = [h.get("train_loss_running_mean") for h in rows]
        facts = overfitting_facts(val, train, self.patience)
        if facts is not None:
            facts["began_epoch"] += start
        else:
            facts = self._gap_facts(state)
        if facts is not None:
            self.overfitting_reported = True
            report(state, "overfitting", self.lang, **facts)

    def _gap_rows(self, state) -> int:
        """The training rows this epoch's gap check will score (0: none)."""
        return 0 if self.overfitting_reported or self._gap_settled(state) else _GAP_ROWS

    def _gap_settled(self, state) -> bool:
        """True when this epoch's training figures cannot change what the gap check finds, so
        they need not be computed: no gap is open, and even a perfect score on the training rows
        (accuracy and r2 are at most 1) would open none. ``_gap_facts`` then returns None and
        leaves the counts as they are, as it would with the figures."""
        told = _validation_figures(state)
        if told is None:
            return True
        metric, val_value, _ = told
        return self.gap_epochs == 0 and self.gap_since is None and self.patience > 0 \
            and 1.0 - val_value < _GAP[metric]

    def _gap_facts(self, state) -> dict | None:
        if self._gap_settled(state):
            return None
        figures = _epoch_figures(state)
        if figures is None:
            return None
        metric, train_value, val_value, train_loss, val_loss = figures
        gap = train_value - val_value
        wide = gap >= _GAP[metric] and val_loss >= _GAP_LOSS * max(train_loss, 1e-12)
        if wide:
            self.gap_epochs += 1
            self.gap_since = self.gap_since or state.epoch + 1
        elif gap < _GAP[metric] / 2:   # hysteresis: a gap just under the line is still open
            self.gap_epochs, self.gap_since = 0, None
        if self.gap_epochs < self.patience:
            return None
        return {"variant": "gap", "began_epoch": self.gap_since, "epochs": self.gap_epochs, "metric": metric,
                "train_value": train_value, "val_value": val_value, "gap": gap, "train_loss": train_loss,
                "val_loss": val_loss}

    def on_fit_end(self, state) -> None:
        if state.diverged or state.epoch == 0 or "train" not in state.splits:
            return  # a blown-up model is not underfit; and nothing was trained yet
        if is_objective_model(state.model):
            return  # a generative model has no trivial predictor to be compared with
        from ..training import model_outputs

        # the training rows' outputs, once for both checks
        train_out = model_outputs(state.model, state.splits["train"][0][:_MAX_ROWS])
        end = end_figures(state, train_out)
        if end is not None:
            state.fit_figures = end
            if end.get("val") is not None and _skill(end["val"], end) <= _NO_SIGNAL \
                    and _skill(end["train"], end) >= _LEARNT:
                report(state, "no_signal", self.lang, epoch=state.epoch - 1, metric=end["metric"],
                       train_value=end["train"], val_value=end["val"], trivial=end["trivial"])
                return
        facts = underfitting_facts(state, train_out)
        if facts is not None:
            report(state, "underfitting", self.lang, epoch=state.epoch - 1, **facts)

    def state_dict(self) -> dict:
        return {"overfitting_reported": self.overfitting_reported, "gap_since": self.gap_since,
                "gap_epochs": self.gap_epochs, "scale_checked": self.scale_checked}

    def load_state_dict(self, d: dict) -> None:
        self.overfitting_reported = d["overfitting_reported"]
        self.gap_since, self.gap_epochs = d.get("gap_since"), d.get("gap_epochs", 0)
        self.scale_checked = d.get("scale_checked", True)


def _skill(value: float, end: dict) -> float:
    """The share of the way from the trivial predictor to a perfect one."""
    trivial = end["trivial"]
    return (value - trivial) / (1 - trivial) if trivial < 1 else 0.0


def _validation_figures(state):
    """(metric, validation value, validation loss) of this epoch; None where the gap cannot be told."""
    splits = getattr(state, "splits", None) or {}
    if "validation" not in splits or "train" not in splits or is_objective_model(state.model):
        return None
    metric = "accuracy" if state.info.task == "classification" else "r2"
    val_value, val_loss = state.metrics.get(f"val_{metric}"), state.metrics.get("val_loss")
    if not finite(val_value) or not finite(val_loss):
        return None
    return metric, val_value, val_loss


def _epoch_figures(state):
    """(metric, train value, validation value, train loss, validation loss) of this epoch, the
    training figures on a slice of the training rows in evaluation mode; None where not told."""
    told = _validation_figures(state)
    if told is None:
        return None
    metric, val_value, val_loss = told
    y = state.splits["train"][1][:_GAP_ROWS]
    out = train_outputs(state, _GAP_ROWS)   # the pass the divergence monitor's dead units share
    train_value, train_loss = primary_figures(out, y, state.loss_fn, state.loss_kind, state.info, metric)
    if not finite(train_value) or not finite(train_loss):
        return None
    return metric, train_value, val_value, train_loss, val_loss


def primary_figures(out, y, loss_fn, loss_kind, info, metric: str) -> tuple:
    """(``metric``, loss) of outputs ``out``: the values ``evaluate_outputs`` gives, bit for bit,
    without the metrics left unused (ROC AUC sorts the scores of every class). ``metric`` is
    accuracy (classification) or r2 (regression); the same numpy steps as ``compute_metrics``."""
    from ..evaluation._metrics import _as_class_ids, _as_output_columns, _as_probability_matrix, _r2
    from ..training import evaluate_outputs
    from ..training._factory import scores_to_proba

    task = info.task
    if (task, metric) not in (("classification", "accuracy"), ("regression", "r2")):
        figures = evaluate_outputs(out, y, loss_fn, loss_kind, info)
        return figures.get(metric), figures.get("loss")
    with torch.no_grad():
        loss = float(loss_fn(out, y))
        scores = scores_to_proba(out, loss_kind, info)
    y_true, scores = y.detach().cpu().numpy(), scores.detach().cpu().numpy()
    if task == "regression":
        y_true, predicted = _as_output_columns(y_true, scores)
        return _r2(y_true, predicted - y_true), loss
    proba = _as_probability_matrix(scores, info.n_classes)
    labels = _as_class_ids(y_true, proba.shape[1], len(proba))
    return float(np.mean(np.argmax(proba, axis=1) == labels)), loss


def end_figures(state, train_out=None) -> dict | None:
    """The model's metric at the end on training and validation rows, and the trivial predictor's.
    ``train_out``: the model's outputs on the first ``_MAX_ROWS`` training rows, if already computed."""
    from ..training import model_outputs

    metric = "accuracy" if state.info.task == "classification" else "r2"
    out = {"metric": metric}
    for split in ("train", "validation"):
        if split not in state.splits:
            continue
        X, y = state.splits[split]
        X, y = X[:_MAX_ROWS], y[:_MAX_ROWS]
        outputs = train_out if split == "train" and train_out is not None else model_outputs(state.model, X)
        value, _ = primary_figures(outputs, y, state.loss_fn, state.loss_kind, state.info, metric)
        out["train" if split == "train" else "val"] = value if finite(value) else None
        if split == "train":
            if metric == "accuracy":
                counts = torch.bincount(y.long().reshape(-1)).double()
                out["trivial"] = float(counts.max() / counts.sum())
            else:
                out["trivial"] = 0.0
    if out.get("train") is None:
        return None
    out.setdefault("val", None)
    return out


def unscaled_facts(state) -> dict | None:
    scale = getattr(getattr(state.recipe, "data", None), "scale", None)
    if scale != "none" or "train" not in state.splits or is_objective_model(state.model):
        return None
    X = state.splits["train"][0]
    if not torch.is_floating_point(X) or X.dim() != 2 or len(X) < 2 or X.shape[1] < 2:
        return None
    std = X[:_MAX_ROWS].double().std(0)
    std = std[std > 0]
    if len(std) < 2:
        return None
    lo, mid, hi = float(std.min()), float(std.median()), float(std.max())
    if hi < _SPREAD * mid:
        return None
    return {"min_std": lo, "median_std": mid, "max_std": hi, "ratio": hi / mid}


def overfitting_facts(val: list, train: list, patience: int) -> dict | None:
    """The facts of overfitting from per-epoch losses, or None."""
    if not val or not finite(val[-1]) or not finite(train[-1]):
        return None
    known = [(v, i) for i, v in enumerate(val) if finite(v)]
    best_val, best = min(known)
    since = len(val) - 1 - best
    if since < patience or not finite(train[best]):
        return None
    risen = val[-1] > best_val + _RISEN * abs(best_val) and trend(val[best:]) >= _RISEN * abs(best_val)
    if not (risen and _falling(train[best:])):
        return None
    return {"variant": "rising", "epochs": since, "began_epoch": best + 1, "best_val_loss": best_val,
            "val_loss": val[-1], "train_loss": train[-1], "gap": val[-1] - train[-1]}


def _falling(losses: list) -> bool:
    """Training loss fell epoch after epoch (upticks of ``_RISE`` allowed): the model kept fitting
    the training rows. A loss that bounces around says unstable training, not overfitting."""
    if not all(finite(x) for x in losses):
        return False
    return losses[-1] < losses[0] and all(b < a * (1 + _RISE) for a, b in zip(losses, losses[1:]))


def underfitting_facts(state, train_out=None) -> dict | None:
    """``train_out``: the model's outputs on the first ``_MAX_ROWS`` training rows, if already computed."""
    from ..training import model_outputs

    X, y = state.splits["train"]
    X, y = X[:_MAX_ROWS], y[:_MAX_ROWS]
    out = train_out if train_out is not None else model_outputs(state.model, X)
    metric = "accuracy" if state.info.task == "classification" else "r2"
    value, train_loss = primary_figures(out, y, state.loss_fn, state.loss_kind, state.info, metric)
    if state.info.task == "classification":
        counts = torch.bincount(y.long().reshape(-1)).double()
        majority = float(counts.max() / counts.sum())
        if finite(value) and majority < 1 and (value - majority) / (1 - majority) <= _SKILL:
            return {"variant": "metric", "metric": "accuracy", "value": value, "trivial": majority}
    elif finite(value) and value <= _SKILL:
        return {"variant": "metric", "metric": "r2", "value": value, "trivial": 0.0}
    trivial = trivial_loss(out, y, state)
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
