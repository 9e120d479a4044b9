"""From recipe sections to torch objects: the loss, the optimizer and the learning-rate schedule.

Each builder accepts a validated recipe section or a plain dict (missing keys take the schema's
defaults; bad ones raise :class:`RecipeError`). Losses are short formulas over
``torch.nn.functional``; optimizers are torch's own; the schedule is a pure function of the
optimizer step, so its whole state is four numbers that go to JSON.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, RecipeError
from ..recipe import LOSS, OPTIMIZER, SCHEDULE, Node, Section, check_section

REGRESSION_LOSSES = ("mse", "mae", "huber")
CLASSIFICATION_LOSSES = ("cross_entropy", "bce", "exponential", "hinge")
BINARY_ONLY_LOSSES = ("bce", "exponential")


def _complete(section: Section, cfg: Mapping[str, Any] | None, where: str, source: str) -> Node:
    """Validate ``cfg`` against its schema section and fill in the defaults."""
    return check_section(section, dict(cfg or {}), where, source)


def _is_classification(info) -> bool:
    return info.task == "classification"


# ---------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------

def resolve_loss_kind(loss_cfg: Mapping[str, Any] | None, info, *, source: str = "recipe") -> str:
    """The loss kind to use: ``auto`` picks by task; a kind that does not fit the task is refused."""
    kind = _complete(LOSS, loss_cfg, "loss", source).kind
    if kind == "auto":
        return "cross_entropy" if _is_classification(info) else "mse"
    if _is_classification(info) and kind in REGRESSION_LOSSES:
        raise RecipeError(f"{source}: loss.kind {kind} is for regression, but the task is classification; "
                          f"use loss.kind cross_entropy (or auto)")
    if not _is_classification(info) and kind in CLASSIFICATION_LOSSES:
        raise RecipeError(f"{source}: loss.kind {kind} is for classification, but the task is regression; "
                          f"use loss.kind mse, mae or huber (or auto)")
    if kind in BINARY_ONLY_LOSSES and info.n_classes != 2:
        raise RecipeError(f"{source}: loss.kind {kind} needs exactly 2 classes, the data has {info.n_classes}; "
                          f"use loss.kind cross_entropy or hinge")
    return kind


def _single_logit(loss_kind: str, info) -> bool:
    return loss_kind in BINARY_ONLY_LOSSES or (loss_kind == "hinge" and info.n_classes == 2)


def output_dim(loss_kind: str, info) -> int:
    """How many outputs the model needs for this loss and data."""
    if not _is_classification(info):
        return int(getattr(info, "n_targets", 1) or 1)
    return 1 if _single_logit(loss_kind, info) else int(info.n_classes)


class Loss:
    """``loss(out, y)``: the mean loss of a batch, or per-sample losses with ``reduction="none"``.

    ``out`` is the raw model output ``(N, out_dim)``. ``y`` holds class indices ``(N,)`` for
    classification (``{0, 1}`` for single-logit heads) or targets ``(N,)`` / ``(N, k)`` for
    regression. A multi-target regression loss is averaged over targets per sample.
    """

    def __init__(self, kind: str, per_sample: Callable, reduction: str = "mean"):
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.kind = kind
        self.reduction = reduction
        self._per_sample = per_sample

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = self._per_sample(out, y)
        return losses.mean() if self.reduction == "mean" else losses

    def __repr__(self) -> str:
        return f"Loss(kind={self.kind!r}, reduction={self.reduction!r})"


def _regression_pair(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets as ``(N, k)`` floats matching the output (``(N,)`` targets meet an ``(N, 1)`` head)."""
    y = y.to(out.dtype)
    if y.dim() == 1:
        y = y.unsqueeze(1)
    if y.shape != out.shape:
        raise ValueError(f"regression targets of shape {tuple(y.shape)} do not match the model output "
                         f"{tuple(out.shape)}")
    return out, y


def _signed(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A single-logit head as ``f`` of shape (N,) and labels {0, 1} as signs ``s`` in {-1, +1}."""
    f = out.reshape(-1)
    return f, 2 * y.to(f.dtype).reshape(-1) - 1


def _per_sample_fn(kind: str, cfg: Node, info) -> Callable:
    if kind == "mse":
        return lambda out, y: F.mse_loss(*_regression_pair(out, y), reduction="none").mean(1)
    if kind == "mae":
        return lambda out, y: F.l1_loss(*_regression_pair(out, y), reduction="none").mean(1)
    if kind == "huber":
        return lambda out, y: F.huber_loss(*_regression_pair(out, y), reduction="none", delta=cfg.delta).mean(1)
    if kind == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y.long(), reduction="none",
                                              label_smoothing=cfg.label_smoothing)
    if kind == "bce":
        return lambda out, y: F.binary_cross_entropy_with_logits(out.reshape(-1), y.to(out.dtype).reshape(-1),
                                                                 reduction="none")
    if kind == "exponential":
        return _exponential
    if kind == "hinge" and info.n_classes == 2:
        return _binary_hinge
    if kind == "hinge":
        return lambda out, y: F.multi_margin_loss(out, y.long(), reduction="none")
    raise ValueError(f"unknown loss kind {kind!r}")


def _exponential(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # AdaBoost's loss exp(-s f); it grows without bound on confident mistakes.
    f, s = _signed(out, y)
    return torch.exp(-s * f)


def _binary_hinge(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    f, s = _signed(out, y)
    return torch.clamp(1 - s * f, min=0)


def build_loss(loss_cfg: Mapping[str, Any] | None, info, *, reduction: str = "mean",
               source: str = "recipe") -> Loss:
    """The loss of the ``loss`` section for this data (``auto`` resolved, mismatches refused)."""
    cfg = _complete(LOSS, loss_cfg, "loss", source)
    kind = resolve_loss_kind(cfg, info, source=source)
    return Loss(kind, _per_sample_fn(kind, cfg, info), reduction)


def scores_to_proba(out: torch.Tensor, loss_kind: str, info) -> torch.Tensor:
    """Model outputs as predictions: class probabilities ``(N, n_classes)`` or regression values.

    Single-logit heads become ``[1 - p, p]`` with ``p = sigmoid(f)``; for the exponential loss
    ``p = sigmoid(2 f)``, because its minimiser is half the log-odds. Hinge scores (binary and
    multiclass, the latter through a softmax) are ranking scores, not calibrated probabilities.
    Regression returns ``(N,)`` for one target and ``(N, k)`` otherwise.
    """
    if not _is_classification(info):
        k = int(getattr(info, "n_targets", 1) or 1)
        return out.reshape(len(out)) if k == 1 else out.reshape(len(out), k)
    if out.shape[-1] == 1:
        f = out.reshape(-1)
        p = torch.sigmoid(2 * f if loss_kind == "exponential" else f)
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(out, dim=1)


# ---------------------------------------------------------------------------------------------
# Optimizer
# ---------------------------------------------------------------------------------------------

def build_optimizer(opt_cfg: Mapping[str, Any] | None, params: Iterable, *,
                    source: str = "recipe") -> torch.optim.Optimizer:
    """A torch optimizer from the ``optimizer`` section; ``params`` may be parameters or param groups.

    Keys a kind does not use are ignored (``momentum`` for Adam, ``betas`` for SGD); ``eps``
    and ``betas`` left null take torch's defaults.
    """
    cfg = _complete(OPTIMIZER, opt_cfg, "optimizer", source)
    eps = {} if cfg.eps is None else {"eps": cfg.eps}
    if cfg.kind == "sgd":
        if cfg.nesterov and cfg.momentum <= 0:
            raise RecipeError(f"{source}: optimizer.nesterov needs optimizer.momentum > 0, got {cfg.momentum}; "
                              f"set optimizer.momentum: 0.9 or optimizer.nesterov: false")
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.kind == "adagrad":
        return torch.optim.Adagrad(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **eps)
    if cfg.kind == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.alpha, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, **eps)
    betas = {} if cfg.betas is None else {"betas": tuple(cfg.betas)}
    optimizer_class = torch.optim.AdamW if cfg.kind == "adamw" else torch.optim.Adam
    return optimizer_class(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **betas, **eps)


# ---------------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------------

ONECYCLE_RISE = 0.3        # fraction of the (post-warmup) steps spent rising to max_lr (PyTorch's pct_start)
ONECYCLE_FINAL = 1e-4      # one-cycle ends at lr * this (PyTorch's 1 / final_div_factor)
ONECYCLE_DEFAULT_PEAK = 10.0
ONECYCLE_MOMENTUM = (0.85, 0.95)   # PyTorch's base_momentum, max_momentum
_EPS = 1e-9                # guards floor() against 2.9999999 at epoch boundaries


class Schedule:
    """Learning rate as a pure function of the optimizer step: ``base_lr * warmup(s) * decay(s)``.

    Call :meth:`step` after every optimizer step and :meth:`epoch_end` after validation.

    * warmup: ``(s + 1) / (W + 1)`` for the first ``W = warmup_epochs * steps_per_epoch +
      warmup_steps`` steps (the first step uses a small, non-zero rate), then 1.
    * ``linear`` / ``cosine``: from 1 to ``min_lr / lr`` over the steps after warmup, reaching
      ``min_lr`` at the end of the last epoch.
    * ``onecycle``: PyTorch's ``OneCycleLR`` (two phases, cosine annealing) with ``max_lr`` as its
      peak (default ``10 * lr``), ``div_factor = max_lr / lr`` (it starts at the recipe's ``lr``)
      and ``final_div_factor = 1e4``: a cosine rise from ``lr`` to ``max_lr`` reached at step
      ``0.3 * T - 1``, then a cosine fall to ``lr * 1e-4`` reached at the last step ``T - 1``
      (``T`` = the steps after warmup; later steps stay there instead of raising an error).
      With ``cycle_momentum`` (default, as in PyTorch) the momentum moves the other way, from 0.95
      down to 0.85 at the peak and back to 0.95: SGD's ``momentum`` or Adam's / AdamW's
      ``beta1``. Unlike PyTorch, an optimizer without momentum (SGD with momentum 0, AdaGrad) is
      left without it rather than given some, and a recipe warmup runs before the cycle.
    * ``exponential``: ``gamma ** (s / steps_per_epoch)``, smooth per step, equal to
      ``gamma ** epoch`` at epoch boundaries. ``step``: ``gamma ** floor(epoch / step_size)``.
      ``multistep``: ``gamma`` per milestone epoch passed. These count epochs from the start.
    * ``plateau``: a factor that shrinks by ``factor`` once ``patience`` epochs in a row bring
      no strict improvement of the monitored value; never below ``min_lr``.

    Each param group keeps its own base rate (``group["initial_lr"]``); ``min_lr`` and
    ``max_lr`` are given for the recipe's ``lr`` (the first group) and scale with the others.
    """

    def __init__(self, cfg: Node, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
                 mode: str = "min"):
        if steps_per_epoch < 1 or epochs < 1:
            raise ValueError(f"steps_per_epoch and epochs must be >= 1, got {steps_per_epoch} and {epochs}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.kind = cfg.kind
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * epochs
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch) + cfg.warmup_steps
        self.mode = mode
        self._cfg = cfg
        for group in optimizer.param_groups:
            # Saved with the optimizer state, so a resumed run finds the base rate, not the current one.
            group.setdefault("initial_lr", group["lr"])
        self._base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        base = self._base_lrs[0]
        self._floor = cfg.min_lr / base
        self._peak = cfg.max_lr / base if cfg.max_lr is not None else ONECYCLE_DEFAULT_PEAK
        self._step = 0
        self._scale = 1.0        # plateau factor
        self._rescue = 1.0       # lowered by divergence rescues (see rescale)
        self._best: float | None = None
        self._bad_epochs = 0
        self._momentum_keys = self._cycled_momentum(cfg, optimizer)
        self._apply()

    # -- the pure part -----------------------------------------------------------------------

    def multiplier(self, step: int) -> float:
        """The factor on every group's base rate at ``step`` (current plateau and rescue factors included)."""
        return self._warmup(step) * self._decay(step) * self._rescue

    def lr_at(self, step: int) -> float:
        """The first group's learning rate at ``step``."""
        return self._base_lrs[0] * self.multiplier(step)

    def _warmup(self, step: int) -> float:
        if step >= self.warmup_steps:
            return 1.0
        return (step + 1) / (self.warmup_steps + 1)

    def _progress(self, step: int) -> float:
        """Fraction of the post-warmup steps done, in [0, 1]."""
        span = max(1, self.total_steps - self.warmup_steps)
        return min(1.0, max(0.0, (step - self.warmup_steps) / span))

    def _decay(self, step: int) -> float:
        cfg, kind = self._cfg, self.kind
        epoch = step / self.steps_per_epoch
        if kind == "constant":
            return 1.0
        if kind == "plateau":
            return max(self._scale, self._floor)
        if kind == "exponential":
            return cfg.gamma ** epoch
        if kind == "step":
            return cfg.gamma ** math.floor(epoch / cfg.step_size + _EPS)
        if kind == "multistep":
            return cfg.gamma ** sum(epoch + _EPS >= m for m in cfg.milestones)
        if kind == "linear":
            return 1.0 + (self._floor - 1.0) * self._progress(step)
        if kind == "cosine":
            return _cosine(1.0, self._floor, self._progress(step))
        if kind == "onecycle":
            return self._onecycle(step)[0]
        raise ValueError(f"unknown schedule kind {kind!r}")

    def _onecycle(self, step: int) -> tuple[float, float]:
        """(lr factor, momentum) at ``step``, as ``torch.optim.lr_scheduler.OneCycleLR`` computes them
        at its step ``step - warmup``: phase one ends at step ``0.3 * T - 1``, phase two at ``T - 1``,
        and phase two starts from phase one's end (a float, as in PyTorch)."""
        span = max(1, self.total_steps - self.warmup_steps)
        s = min(max(0, step - self.warmup_steps), span - 1)
        rise_end = float(ONECYCLE_RISE * span) - 1
        low, high = ONECYCLE_MOMENTUM
        if s <= rise_end:
            pct = s / rise_end if rise_end > 0 else 1.0
            return _cosine(1.0, self._peak, pct), _cosine(high, low, pct)
        end = span - 1
        pct = (s - rise_end) / (end - rise_end) if end > rise_end else 1.0
        return _cosine(self._peak, ONECYCLE_FINAL, pct), _cosine(low, high, pct)

    # -- the stateful part -------------------------------------------------------------------

    def step(self) -> None:
        """Advance one optimizer step and set the new rate on every param group."""
        self._step += 1
        self._apply()

    def epoch_end(self, monitored: float | None) -> None:
        """Plateau bookkeeping with the monitored validation value; a no-op for other kinds."""
        if self.kind != "plateau" or monitored is None:
            return
        value = float(monitored)
        if self._improves(value):
            self._best, self._bad_epochs = value, 0
            return
        self._bad_epochs += 1
        if self._bad_epochs >= self._cfg.patience:
            self._scale *= self._cfg.factor
            self._bad_epochs = 0
            self._apply()

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self._best is None:
            return True
        return value < self._best if self.mode == "min" else value > self._best

    def rescale(self, factor: float) -> None:
        """Multiply the whole schedule by ``factor`` from now on (a divergence rescue lowers the LR
        this way; the shape of the schedule is kept)."""
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        self._rescue *= factor
        self._apply()

    def lr(self) -> float:
        """The first group's current learning rate."""
        return self.lr_at(self._step)

    def _apply(self) -> None:
        factor = self.multiplier(self._step)
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor
        if self._momentum_keys:
            momentum = self._onecycle(self._step)[1]
            for group, key in zip(self.optimizer.param_groups, self._momentum_keys):
                if key == "betas":
                    group["betas"] = (momentum, *tuple(group["betas"])[1:])
                elif key == "momentum":
                    group["momentum"] = momentum

    @staticmethod
    def _cycled_momentum(cfg: Node, optimizer: torch.optim.Optimizer) -> list | None:
        """Per param group, the key one-cycle moves the momentum of ("betas", "momentum" or None)."""
        if cfg.kind != "onecycle" or not cfg.get("cycle_momentum", True):
            return None
        keys = []
        for group in optimizer.param_groups:
            if "betas" in group:
                keys.append("betas")
            elif group.get("momentum", 0) > 0:
                keys.append("momentum")
            else:
                keys.append(None)
        return keys if any(keys) else None

    def state_dict(self) -> dict:
        """Everything needed to continue: plain numbers, JSON-ready."""
        return {"step": self._step, "scale": self._scale, "best": self._best, "bad_epochs": self._bad_epochs,
                "rescue": self._rescue}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = {"step", "scale", "best", "bad_epochs"} - set(state)
        if missing:
            raise CheckpointError(f"schedule state lacks {', '.join(sorted(missing))}; "
                                  f"the checkpoint is incomplete, resume from another one")
        self._step = int(state["step"])
        self._scale = float(state["scale"])
        self._best = None if state["best"] is None else float(state["best"])
        self._bad_epochs = int(state["bad_epochs"])
        self._rescue = float(state.get("rescue", 1.0))
        self._apply()

    def __repr__(self) -> str:
        return f"Schedule(kind={self.kind!r}, step={self._step}, lr={self.lr():.3g})"


def _cosine(start: float, end: float, progress: float) -> float:
    """Half a cosine from ``start`` (progress 0) to ``end`` (progress 1)."""
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2


def build_schedule(sched_cfg: Mapping[str, Any] | None, optimizer: torch.optim.Optimizer, steps_per_epoch: int,
                   epochs: int, *, mode: str = "min", source: str = "recipe") -> Schedule:
    """The ``schedule`` section as a :class:`Schedule` driving ``optimizer``.

    ``steps_per_epoch`` counts optimizer steps (batches / accumulation). ``mode`` says whether
    a lower (``min``) or higher (``max``) monitored value is better, for ``plateau``.
    """
    cfg = _complete(SCHEDULE, sched_cfg, "schedule", source)
    if cfg.kind == "multistep" and not cfg.milestones:
        raise RecipeError(f"{source}: schedule.milestones is required for schedule.kind multistep, e.g. [10, 20]")
    return Schedule(cfg, optimizer, steps_per_epoch, epochs, mode)
