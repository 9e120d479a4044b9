"""From recipe sections to torch objects: the loss, the optimizer and the learning-rate schedule.

Each builder accepts a validated recipe section or a plain dict (missing keys take the schema's
defaults; bad ones raise :class:`RecipeError`). Losses are short formulas over
``torch.nn.functional``; optimizers are torch's own; the schedule is a pure function of the
optimizer step, so its whole state is four numbers that go to JSON.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, RecipeError, UserError
from ..recipe import LOSS, LOSS_KINDS, OPTIMIZER, SCHEDULE, Node, Section, check_section

REGRESSION_LOSSES = ("mse", "mae", "huber")
CLASSIFICATION_LOSSES = ("cross_entropy", "bce", "exponential", "hinge")
BINARY_ONLY_LOSSES = ("bce", "exponential")
# What a model's outputs are, for a loss of your own: scores_to_proba turns them into predictions.
OUTPUT_MODES = ("logits", "probabilities", "values")


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
    kind = _complete_loss(loss_cfg, source).kind
    if kind in _LOSSES:
        return _registered_kind(_LOSSES[kind], info, source)
    if getattr(info, "task", None) == "multilabel":
        return _multilabel_kind(kind, source)
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


def _multilabel_kind(kind: str, source: str) -> str:
    """Multilabel: binary cross-entropy with logits on each label (one sigmoid output per label)."""
    if kind not in ("auto", "bce"):
        raise RecipeError(f"{source}: loss.kind {kind} does not fit data.task multilabel, which learns one "
                          f"sigmoid output per label with bce; use loss.kind bce (or auto)")
    return "bce"


def _complete_loss(loss_cfg: Mapping[str, Any] | None, source: str) -> Node:
    """The ``loss`` section with its defaults; a registered kind passes the schema's list of built-ins."""
    kind = dict(loss_cfg or {}).get("kind")
    if isinstance(kind, str) and kind in _LOSSES:
        checked = _complete(LOSS, {**dict(loss_cfg), "kind": "auto"}, "loss", source)
        return Node({**checked, "kind": kind})
    return _complete(LOSS, loss_cfg, "loss", source)


def _single_logit(loss_kind: str, info) -> bool:
    return loss_kind in BINARY_ONLY_LOSSES or (loss_kind == "hinge" and info.n_classes == 2)


def output_dim(loss_kind: str, info) -> int:
    """How many outputs the model needs for this loss and data."""
    if getattr(info, "task", None) == "multilabel":
        return int(info.n_targets)   # one logit per label
    if not _is_classification(info):
        return int(getattr(info, "n_targets", 1) or 1)
    return 1 if _single_logit(loss_kind, info) else int(info.n_classes)


class Loss:
    """``loss(out, y)``: the mean loss of a batch, or per-sample losses with ``reduction="none"``.

    ``out`` is the raw model output ``(N, out_dim)``. ``y`` holds class indices ``(N,)`` for
    classification (``{0, 1}`` for single-logit heads) or targets ``(N,)`` / ``(N, k)`` for
    regression. A multi-target regression loss is averaged over targets per sample.
    """

    def __init__(self, kind: str, per_sample: Callable, reduction: str = "mean", *, outputs: str | None = None,
                 class_weights: torch.Tensor | None = None):
        if reduction not in ("mean", "none"):
            raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
        self.kind = kind
        self.reduction = reduction
        self.outputs = outputs   # set for losses of your own: what the model's outputs are (OUTPUT_MODES)
        self.class_weights = class_weights   # (n_classes,) float, or None: every row alike
        self._per_sample = per_sample

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = self._per_sample(out, y)
        if self.reduction == "none":
            return losses
        if self.class_weights is None:
            return losses.mean()
        # The per-sample losses carry their row's class weight: a weighted mean, as torch's
        # CrossEntropyLoss(weight=w) divides by the weights of the batch's targets.
        return losses.sum() / self.class_weights.to(losses.device, losses.dtype)[y.long().reshape(-1)].sum()

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


def _per_sample_fn(kind: str, cfg: Node, info, weights: torch.Tensor | None = None) -> Callable:
    """Per-sample losses; with class ``weights`` each is multiplied by its row's class weight
    (cross-entropy through torch's own ``weight``, which also weighs the label-smoothing terms)."""
    if kind == "cross_entropy" and weights is not None:
        return lambda out, y: F.cross_entropy(out, y.long(), weight=weights.to(out.device, out.dtype),
                                              reduction="none", label_smoothing=cfg.label_smoothing)
    fn = _unweighted_fn(kind, cfg, info)
    if weights is None:
        return fn
    return lambda out, y: fn(out, y) * weights.to(out.device, out.dtype)[y.long().reshape(-1)]


def _unweighted_fn(kind: str, cfg: Node, info) -> Callable:
    if kind == "bce" and getattr(info, "task", None) == "multilabel":   # mean over the labels of each row
        return lambda out, y: F.binary_cross_entropy_with_logits(out, y.to(out.dtype).reshape(out.shape),
                                                                 reduction="none").mean(1)
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
    cfg = _complete_loss(loss_cfg, source)
    kind = resolve_loss_kind(cfg, info, source=source)
    if kind in _LOSSES:
        if cfg.class_weights is not None:
            raise RecipeError(f"{source}: loss.class_weights applies to the built-in classification losses, not "
                              f"the registered loss {kind!r}; weigh the classes inside it (its factory gets the "
                              f"data's info) and remove loss.class_weights")
        fn = _LOSSES[kind].make(info)
        if not callable(fn):
            raise UserError(f"loss {kind!r}: its factory returned {type(fn).__name__}, not a loss function; "
                            f"return fn(outputs, targets) -> scalar tensor")
        return _user_loss(kind, fn, f"'{kind}' ({_describe(fn)})", loss_outputs(kind, info), info, reduction)
    weights = class_weights(cfg.class_weights, info, source=source)
    return Loss(kind, _per_sample_fn(kind, cfg, info, weights), reduction, class_weights=weights)


def class_weights(setting, info, *, source: str = "recipe") -> torch.Tensor | None:
    """``loss.class_weights`` as one float weight per class id, or None when it is off.

    ``auto`` is scikit-learn's ``"balanced"``: ``n_train / (n_classes * count[c])`` over the
    training split only (``info.class_counts``); a list gives the weights in the order of the
    classes, sorted labels as the run encodes them (``info.classes``).
    """
    if setting is None:
        return None
    if not _is_classification(info):
        raise RecipeError(f"{source}: loss.class_weights applies to classification, but the task is "
                          f"{info.task}; remove loss.class_weights")
    n_classes = int(info.n_classes)
    if setting == "auto":
        counts = getattr(info, "class_counts", None)
        if counts is None or len(counts) != n_classes:
            raise ValueError("loss.class_weights auto needs info.class_counts, the training rows per class "
                             "(training.with_positive sets them)")
        if min(counts) == 0:
            missing = _class_names(info)[counts.index(0)]
            raise RecipeError(f"{source}: loss.class_weights auto cannot weigh class {missing!r}: the training "
                              f"split has no row of it (of {n_classes} classes); give loss.class_weights as a "
                              f"list of {n_classes} numbers or change the split")
        counts = torch.tensor(counts, dtype=torch.float64)
        return (counts.sum() / (n_classes * counts)).to(torch.float32)
    if len(setting) != n_classes:
        raise RecipeError(f"{source}: loss.class_weights has {len(setting)} weights but the data has {n_classes} "
                          f"classes ({_shown_classes(info)}); give one weight per class, in this order")
    return torch.tensor([float(w) for w in setting], dtype=torch.float32)


def _class_names(info) -> list:
    return list(getattr(info, "classes", None) or range(int(info.n_classes)))


def _shown_classes(info) -> str:
    names = _class_names(info)
    return ", ".join(str(c) for c in names[:10]) + (", ..." if len(names) > 10 else "")


def scores_to_proba(out: torch.Tensor, loss_kind: str, info) -> torch.Tensor:
    """Model outputs as predictions: class probabilities ``(N, n_classes)`` or regression values.

    Single-logit heads become ``[1 - p, p]`` with ``p = sigmoid(f)``; for the exponential loss
    ``p = sigmoid(2 f)``, because its minimiser is half the log-odds. Hinge scores (binary and
    multiclass, the latter through a softmax) are ranking scores, not calibrated probabilities.
    Regression returns ``(N,)`` for one target and ``(N, k)`` otherwise.
    """
    if getattr(info, "task", None) == "multilabel":   # one independent probability per label
        out = out.reshape(-1, int(info.n_targets))   # -1, not len(out): an ONNX export keeps the batch size free
        return out if loss_outputs(loss_kind, info) == "probabilities" else torch.sigmoid(out)
    if not _is_classification(info):
        k = int(getattr(info, "n_targets", 1) or 1)
        return out.reshape(len(out)) if k == 1 else out.reshape(len(out), k)
    probabilities = loss_outputs(loss_kind, info) == "probabilities"   # a loss of your own says so
    if out.shape[-1] == 1:
        f = out.reshape(-1)
        p = f if probabilities else torch.sigmoid(2 * f if loss_kind == "exponential" else f)
        return torch.stack([1 - p, p], dim=1)
    return out if probabilities else torch.softmax(out, dim=1)


# ---------------------------------------------------------------------------------------------
# Losses of your own: registered by name (recipes: loss.kind) or given as a callable (Python API)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LossEntry:
    name: str
    make: Callable[[Any], Callable]   # info -> loss_fn(outputs, targets)
    task: str | None                  # None: any task
    outputs: str | None               # None: logits for classification, values for regression
    origin: str | None = None         # the module that registered it (a run's recipe names it under plugins:)


_LOSSES: dict[str, LossEntry] = {}
_TASKS = ("classification", "regression")


def register_loss(name: str, fn_or_factory: Callable | None = None, *, task: str | None = None,
                  outputs: str | None = None, replace: bool = False):
    """Register a loss under ``name``, so that a recipe's ``loss: {kind: name}`` uses it.

    ``fn_or_factory`` is one of:

    * a loss function ``fn(outputs, targets) -> scalar tensor`` (two positional arguments), or an
      ``nn.Module`` instance with that ``forward``;
    * a factory ``factory(info) -> loss function`` (one positional argument), called once per run
      with the data's :class:`~danlu.data.DataInfo` (classes, targets), e.g. for class weights;
    * a class such as an ``nn.Module`` subclass, instantiated without arguments once per run.

    ``outputs`` are the model's raw outputs ``(N, n_classes)`` for classification, ``(N, k)`` for
    regression. ``targets`` are class ids ``(N,)`` (int64) for classification and float targets of
    the outputs' shape ``(N, k)`` for regression. The loss must return one finite number as a
    tensor that depends on the outputs; it is checked once on a tiny batch when a run builds it.

    ``task`` restricts the loss to ``classification`` or ``regression`` (None: either).
    ``outputs`` says what the model's outputs are, for predictions and metrics: ``logits``
    (softmax gives the class probabilities; the default for classification), ``probabilities``
    (used as they are) or ``values`` (regression predictions; the default for regression).
    Without a function this returns a decorator: ``@register_loss("focal", task="classification")``.
    """
    if fn_or_factory is None:
        def decorator(fn: Callable) -> Callable:
            register_loss(name, fn, task=task, outputs=outputs, replace=replace)
            return fn

        return decorator
    _check_loss_entry(name, fn_or_factory, task, outputs)
    if name in _LOSSES and not replace:
        raise ValueError(f"loss kind {name!r} is already registered; pass replace=True to override it")
    origin = getattr(fn_or_factory, "__module__", None) or type(fn_or_factory).__module__
    _LOSSES[name] = LossEntry(name, _maker(name, fn_or_factory), task, outputs, origin)
    LOSS_KINDS.add(name)   # the recipe schema accepts loss: {kind: name}
    return fn_or_factory


def unregister_loss(name: str) -> None:
    """Remove a registered loss (for plugins and tests); unknown names raise KeyError."""
    del _LOSSES[name]
    LOSS_KINDS.discard(name)


def registered_losses() -> tuple[str, ...]:
    """The names of the registered losses, in registration order: the recipe's ``loss.kind`` accepts
    them besides the built-in kinds."""
    return tuple(_LOSSES)


def loss_outputs(loss_kind: str, info) -> str:
    """What the model's outputs are under ``loss_kind`` (one of :data:`OUTPUT_MODES`).

    ``loss_kind`` is a built-in kind, a registered name, or an output mode itself (what a run
    trained with a loss given as a Python callable records as its loss kind).
    """
    if loss_kind in OUTPUT_MODES:
        return loss_kind
    entry = _LOSSES.get(loss_kind)
    if entry is not None and entry.outputs is not None:
        return entry.outputs
    # "none": classical models without a loss (k-means, PCA) record it
    if entry is None and loss_kind not in ("auto", "none", *REGRESSION_LOSSES, *CLASSIFICATION_LOSSES):
        raise UserError(f"loss kind {loss_kind!r} is not registered in this process; import the module that "
                        f"registers it (list it under plugins: in the recipe) or use a built-in loss kind")
    return "logits" if _is_classification(info) or getattr(info, "task", None) == "multilabel" else "values"


def loss_from_callable(fn: Callable, info, *, outputs: str | None = None, reduction: str = "mean") -> Loss:
    """A loss given as a Python callable ``fn(outputs, targets) -> scalar tensor`` (``danlu.train(...,
    loss=fn)``), checked once on a tiny batch: an error, a non-tensor, a non-scalar, a non-finite
    value or one without a gradient is a one-line :class:`UserError` naming the function.

    The returned loss's ``kind`` is its output mode (``logits``, ``probabilities`` or ``values``;
    ``outputs`` defaults to logits for classification, values for regression): the run records that
    as its loss kind, so :func:`scores_to_proba` turns its outputs into predictions with no code.
    """
    if isinstance(fn, Loss):
        return fn
    if not callable(fn):
        raise UserError(f"loss must be a callable loss_fn(outputs, targets) -> scalar tensor, got "
                        f"{type(fn).__name__}; pass a function or an nn.Module instance")
    _check_outputs_mode(_describe(fn), getattr(info, "task", None), outputs, UserError)
    mode = outputs or ("logits" if _is_classification(info) else "values")
    return _user_loss(mode, fn, _describe(fn), mode, info, reduction)


def check_loss(loss: str | Callable, *, task: str | None = None) -> None:
    """Conformance check of a loss of your own, as ``parametrize_with_checks`` does for estimators:
    a registered name (or a callable, for ``task`` or both tasks) is built for tiny data of every task
    and class count it accepts — three classes, two classes, one and two regression targets — and
    called once on each; anything training would trip on is a one-line :class:`UserError`."""
    from ..data._info import DataInfo

    if isinstance(loss, str):
        if loss not in _LOSSES:
            raise UserError(f"loss {loss!r} is not registered; registered: {', '.join(_LOSSES) or 'none'}")
        task = _LOSSES[loss].task
    samples = [("classification", 3, 1), ("classification", 2, 1), ("regression", None, 1), ("regression", None, 2)]
    for sample_task, n_classes, n_targets in samples:
        if task not in (None, sample_task):
            continue
        classes = list(range(n_classes)) if n_classes else []
        info = DataInfo(sample_task, "tabular", (4,), n_classes, classes, ["a", "b", "c", "d"], n_targets=n_targets)
        if isinstance(loss, str):
            build_loss({"kind": loss}, info)
        else:
            loss_from_callable(loss, info)


def _check_loss_entry(name, fn, task, outputs) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a loss kind name must be an identifier such as 'focal', got {name!r}")
    if name in ("auto", *REGRESSION_LOSSES, *CLASSIFICATION_LOSSES, *OUTPUT_MODES):
        raise ValueError(f"loss kind {name!r} is a built-in name; register your loss under another name")
    if not callable(fn):
        raise TypeError(f"the loss {name!r} must be a callable fn(outputs, targets) or factory(info), got {fn!r}")
    if task not in (None, *_TASKS):
        raise ValueError(f"loss {name!r}: task must be classification, regression or None, got {task!r}")
    _check_outputs_mode(f"loss {name!r}", task, outputs, ValueError)


def _check_outputs_mode(what: str, task, outputs, error) -> None:
    if outputs is None:
        return
    if outputs not in OUTPUT_MODES:
        raise error(f"{what}: outputs must be one of {', '.join(OUTPUT_MODES)}, got {outputs!r}")
    if task == "classification" and outputs == "values":
        raise error(f"{what}: outputs 'values' are regression predictions; a classification loss's outputs "
                    f"are logits or probabilities")
    if task == "regression" and outputs != "values":
        raise error(f"{what}: a regression model's outputs are its predictions; use outputs='values'")


def _maker(name: str, fn: Callable) -> Callable[[Any], Callable]:
    """``info -> loss function`` for what :func:`register_loss` was given (see its docstring)."""
    if isinstance(fn, type):
        def instantiate(info):
            try:
                return fn()
            except TypeError as err:
                raise UserError(f"loss {name!r}: {fn.__qualname__}() cannot be made without arguments ({err}); "
                                f"register an instance or a factory(info) instead") from None

        return instantiate
    if isinstance(fn, torch.nn.Module):
        return lambda info: fn
    required, star = _positional(fn)
    if star or required >= 2:
        return lambda info: fn
    if required == 1:
        return fn
    raise TypeError(f"loss {name!r}: {_describe(fn)} takes {required} positional arguments; register "
                    f"fn(outputs, targets) or factory(info)")


def _positional(fn: Callable) -> tuple[int, bool]:
    """(required positional parameters, takes *args) of a callable; (2, False) when it cannot be told."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2, False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = sum(p.kind in positional and p.default is inspect.Parameter.empty for p in params)
    return required, any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


def _registered_kind(entry: LossEntry, info, source: str) -> str:
    if entry.task is not None and entry.task != info.task:
        raise RecipeError(f"{source}: loss.kind {entry.name} is registered for {entry.task}, but the task is "
                          f"{info.task}; use a {info.task} loss (or auto)")
    return entry.name


def _describe(fn) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}.{name}" if module and module not in ("__main__", "builtins") else name


def _user_loss(kind: str, fn: Callable, label: str, outputs: str, info, reduction: str) -> Loss:
    if reduction != "mean":
        raise ValueError(f"loss {label} returns one number per batch; reduction={reduction!r} needs a built-in loss")
    classification = _is_classification(info)

    def call(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # class ids for classification; float targets of the outputs' shape for regression
        return fn(out, y.long() if classification else _regression_pair(out, y)[1])

    _check_loss_once(call, label, info)
    return Loss(kind, call, reduction, outputs=outputs)


def _check_loss_once(call: Callable, label: str, info) -> None:
    """Call a loss of your own on a tiny CPU batch and refuse, in one line, what training would trip on."""
    n = 4
    width = output_dim("auto", info)
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(n, width, generator=gen).requires_grad_(True)
    if _is_classification(info):
        y = torch.arange(n) % int(info.n_classes)
    else:
        y = torch.randn(n, width, generator=gen)
    shapes = f"outputs {tuple(out.shape)}, targets {tuple(y.shape)}"
    with torch.random.fork_rng(devices=[]):   # a random loss must not move the run's seeded stream
        try:
            value = call(out, y)
        except Exception as err:   # noqa: BLE001 - user code: any failure is theirs to fix
            text = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise UserError(f"loss {label} fails on a tiny batch ({shapes}): {type(err).__name__}"
                            f"{': ' + text if text else ''}; fix the function") from None
    if not isinstance(value, torch.Tensor):
        raise UserError(f"loss {label} must return a torch tensor, got {type(value).__name__}; compute it with "
                        f"torch operations (no .item() or numpy) so it has a gradient")
    if value.dim() != 0:
        raise UserError(f"loss {label} must return one number (a 0-d tensor), got shape {tuple(value.shape)} on "
                        f"a batch of {n} ({shapes}); reduce it, e.g. with .mean()")
    if not bool(torch.isfinite(value.detach())):
        raise UserError(f"loss {label} returns {float(value.detach())} on a tiny batch ({shapes}); it must be "
                        f"finite — guard its logs and divisions")
    if not value.requires_grad:
        raise UserError(f"loss {label} does not depend on the model's outputs (its result has no gradient); "
                        f"compute it from the outputs with torch operations, without .detach(), .item() or numpy")


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
    if cfg.kind == "sgd":   # nesterov without momentum is refused by the schema
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
    cfg = _complete(SCHEDULE, sched_cfg, "schedule", source)   # multistep without milestones is refused there
    return Schedule(cfg, optimizer, steps_per_epoch, epochs, mode)


def loss_origin(name: str) -> str | None:
    """The module that registered loss ``name`` (None for built-in or unknown names)."""
    entry = _LOSSES.get(name)
    return entry.origin if entry is not None else None
