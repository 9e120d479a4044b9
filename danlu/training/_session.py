"""A training session: everything one run of the loop needs, built from a recipe in the order that
fixes the random numbers; what an exact resume saves and restores; and the end of a run (final
figures, model and summary written).

Capabilities take part through callbacks only (danlu.training._extend): the recipe's registered
callbacks are built first, may transform the model before the optimizer sees it, and run in the loop.
"""
from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import RecipeError
from ..recipe import Recipe
from . import _checkpoint as ck
from ._callbacks import Checkpointer, EarlyStopping, MetricsLog, _direction
from ._extend import param_groups, recipe_callbacks, transform_model
from ._loggers import logger_callbacks
from ._loop import batch_count, evaluate_outputs, model_outputs
from ._objective import is_objective_model, objective_figures
from ._precision import build_precision, forward_model
from ._progress import Progress
from ._state import CallbackList, State
from ._target import TargetScaled, scaled_loss, target_stats


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("device: cuda was asked for but no CUDA GPU is visible; use device: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool, device: torch.device | None = None) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic and device is not None and device.type == "cuda":
        # The CPU kernels danlu uses are deterministic already; on CUDA, ask for deterministic ones
        # (this call imports torch._dynamo, seconds of start-up, so it is not paid on CPU).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it before first use
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def with_positive(prepared, recipe: Recipe):
    """Classification: the class binary precision, recall, F1 and ROC AUC are about
    (``data.positive_class``, else the second label in sorted order), and the training rows per
    class (``loss.class_weights: auto`` weighs by them, in training and in every later evaluation)."""
    from ..evaluation import positive_class_id

    info, chosen = prepared.info, recipe.data.positive_class
    if info.task == "classification":
        info.positive = positive_class_id(info.classes, chosen, f"{recipe.source}: data.positive_class")
        count_classes(prepared)
    elif chosen is not None:
        raise RecipeError(f"{recipe.source}: data.positive_class applies to classification; this data is "
                          f"{info.task}; remove it")
    return prepared


def count_classes(prepared) -> None:
    """Classification: ``info.class_counts``, the training rows per class id."""
    info = prepared.info
    if info.task == "classification" and "train" in prepared.splits:
        y = torch.as_tensor(prepared.splits["train"][1]).long().reshape(-1)
        info.class_counts = torch.bincount(y, minlength=int(info.n_classes)).tolist()


@dataclass
class Session:
    state: State
    callbacks: CallbackList
    progress: Progress | None


def build_session(recipe: Recipe, run_dir: Path | None, prepared, progress: str | None = None,
                  extra_callbacks=(), *, model=None, loss=None) -> Session:
    """Everything that a training run needs, in the order that fixes the random numbers:
    seed, model initialisation, then the loop's own draws (data order, dropout, augmentation).

    ``model`` (an ``nn.Module``) and ``loss`` (a callable ``loss(outputs, targets)``) replace what
    the recipe's model and loss sections would build (``danlu.train(model=..., loss=...)``)."""
    from ..models import build_model
    from ._factory import build_loss, build_optimizer, build_schedule, output_dim, resolve_loss_kind
    from ..evaluation import PRIMARY_METRIC

    device = resolve_device(recipe.device)
    info = prepared.info
    if loss is not None:   # a Python callable: checked once on a tiny batch; its kind is its output mode
        from ._factory import loss_from_callable

        loss_fn = loss_from_callable(loss, info)
        loss_kind = loss_fn.kind
    else:
        loss_kind = resolve_loss_kind(recipe.loss, info)
    mode = progress or recipe.output.progress
    run_callbacks = recipe_callbacks(recipe, run_dir, mode)   # registered by capabilities: monitors, QAT, adapters
    seed_everything(recipe.seed, recipe.train.deterministic, device)
    if model is None:
        model = build_model(recipe.model, info, output_dim(loss_kind, info), source=recipe.source)
    if loss is None:
        if getattr(info, "class_counts", None) is None:   # data given as arrays (danlu.sklearn) skips with_positive
            count_classes(prepared)
        loss_fn = build_loss(recipe.loss, info, source=recipe.source)
    if info.task == "regression" and recipe.data.scale_target and not is_objective_model(model):
        model = TargetScaled(model, *target_stats(prepared.splits["train"][1]))
        loss_fn = scaled_loss(loss_fn, model)
    # the callbacks' build-time hooks: wrap or change the model (QAT, adapters, a pretrained backbone),
    # then say which parameters the optimizer gets, in which groups (fine-tuning: a backbone rate)
    builders = [*run_callbacks, *(cb for cb in extra_callbacks if cb is not None)]
    model = transform_model(builders, model, info).to(device)
    optimizer = build_optimizer(recipe.optimizer, param_groups(builders, model), source=recipe.source)
    splits = {name: (X.to(device), y.to(device)) for name, (X, y) in prepared.splits.items()}
    batches = batch_count(len(splits["train"][0]), recipe.train.batch_size)
    steps_per_epoch = -(-batches // recipe.train.accumulate)
    es = recipe.train.early_stopping
    schedule = build_schedule(recipe.schedule, optimizer, steps_per_epoch, recipe.train.epochs,
                              mode=_direction(es.monitor, es.mode), source=recipe.source)
    state = State(recipe=recipe, info=info, model=model, optimizer=optimizer, schedule=schedule,
                  loss_fn=loss_fn, loss_kind=loss_kind, device=device,
                  pipeline=prepared.pipeline, run_dir=run_dir, splits=splits,
                  steps_per_epoch=steps_per_epoch, batches_per_epoch=batches,
                  precision=build_precision(recipe, device), compiled=forward_model(recipe, model))

    has_val = "validation" in splits
    monitor = es.monitor
    if has_val and monitor != "val_loss" and monitor not in known_monitors(info):
        raise RecipeError(f"{recipe.source}: train.early_stopping.monitor {monitor!r} is not a validation figure; "
                          f"use val_loss or one of {', '.join(sorted(known_monitors(info)))}")
    early = EarlyStopping(monitor=monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta,
                          restore_best=es.restore_best, enabled=es.enabled and has_val)
    shown = Progress(mode=mode, primary=PRIMARY_METRIC[info.task])
    callbacks = [early, shown]
    if run_dir is not None:
        cp = recipe.checkpoint
        checkpointer = Checkpointer(run_dir, every_epochs=cp.every_epochs, every_steps=cp.every_steps,
                                    keep_last=cp.keep_last, keep_best=cp.keep_best)
        callbacks = [MetricsLog(run_dir), early, checkpointer, shown]
    callbacks += run_callbacks + list(extra_callbacks)
    callbacks += logger_callbacks(recipe, run_dir)   # output.loggers: TensorBoard, MLflow
    cbs = CallbackList(callbacks)
    state.event_sinks.append(shown.show_event)
    for cb in cbs.callbacks:
        if isinstance(cb, Checkpointer):
            cb.collect = lambda: (ck_model_state(state), collect_state(state, cbs))
    return Session(state, cbs, shown)


def known_monitors(info) -> set:
    """The validation figures early stopping may watch: the loss, every built-in metric of the
    task and the registered ones (danlu.evaluation.register_metric)."""
    from ..evaluation._metrics import metric_names

    return {f"val_{k}" for k in metric_names(info.task)} | {"val_loss"}


def ck_model_state(state: State) -> dict:
    return {k: v.detach() for k, v in state.model.state_dict().items()}


def collect_state(state: State, cbs: CallbackList) -> dict:
    """Everything besides the weights that an exact resume needs."""
    precision = state.precision.state_dict()   # train.precision 16-mixed: the gradient scaler
    return {
        **({"precision": precision} if precision else {}),
        "position": {"epoch": state.epoch, "batch": state.batch, "step": state.step,
                     "loss_sum": float(state.loss_sum), "loss_count": state.loss_count},
        "history": state.history,
        "events": state.events,
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        "callbacks": {cb.name: cb.state_dict() for cb in cbs.stateful()},
        "rng": ck.capture_rng(),
        "recipe": state.recipe.to_dict(),
    }


def restore_state(state: State, cbs: CallbackList, model_state: dict, saved: dict) -> None:
    state.model.load_state_dict(model_state)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.schedule.load_state_dict(saved["schedule"])
    state.precision.load_state_dict(saved.get("precision", {}))
    pos = saved["position"]
    state.epoch, state.batch, state.step = pos["epoch"], pos["batch"], pos["step"]
    state.loss_sum = torch.tensor(pos["loss_sum"], dtype=torch.float64, device=state.device)
    state.loss_count = pos["loss_count"]
    state.history = list(saved["history"])
    state.events = list(saved["events"])
    if state.history:
        state.metrics = dict(state.history[-1])
    for cb in cbs.stateful():
        if cb.name in saved["callbacks"]:
            cb.load_state_dict(saved["callbacks"][cb.name])
    ck.restore_rng(saved["rng"])


def evaluate_splits(state: State, names=("train", "validation", "test")) -> dict:
    out = {}
    for name in names:
        if name in state.splits:
            X, y = state.splits[name]
            if is_objective_model(state.model):
                out[name] = objective_figures(state.model, X, y)
                continue
            with state.precision.autocast():
                outputs = model_outputs(state.model, X)
            out[name] = evaluate_outputs(outputs, y, state.loss_fn, state.loss_kind, state.info)
    return out


def finish(state: State, run_dir: Path | None) -> dict:
    summary = evaluate_splits(state)
    objective = is_objective_model(state.model)
    if "test" in state.splits and not objective:   # a generative model has no trivial predictor to beat
        summary["baseline"] = test_baseline(state)
    if state.info.task == "classification" and state.info.n_classes == 2:
        summary["positive_class"] = state.info.classes[state.info.positive]   # what precision/recall/f1 are about
    summary["run"] = {"epochs": state.epoch, "steps": state.step, "stop_reason": state.stop_reason,
                      "restored_best_epoch": state.restored_epoch,
                      "parameters": sum(p.numel() for p in state.model.parameters()),
                      "device": str(state.device), "events": len(state.events)}
    if state.recipe.train.get("ema") is not None:
        summary["run"]["ema"] = state.recipe.train.ema   # the figures and saved weights are the average
    if run_dir is not None:
        ck.atomic_save_tensors(run_dir / "model.safetensors", ck_model_state(state))
        meta = {"loss_kind": state.loss_kind, "info": state.info.to_json(), "model": dict(state.recipe.model),
                "target_scaled": isinstance(state.model, TargetScaled)}
        if objective:
            meta["objective"] = True
        ck.atomic_write_text(run_dir / "model.json", json.dumps(meta, indent=1))
        ck.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
        index_run_dir(run_dir)
        if objective:
            write_model_plots(state, run_dir)
    return summary


def write_model_plots(state: State, run_dir: Path) -> None:
    """A generative model's own pictures (samples, latent map); failing to draw never fails the run."""
    draw = getattr(state.model, "write_plots", None)
    if not callable(draw):
        return
    try:
        with torch.no_grad():
            state.model.eval()
            draw(run_dir, state.splits, state.info)
    except Exception as err:  # noqa: BLE001 — the model and its figures are already saved
        print(f"danlu: warning: plots of {run_dir} not drawn ({type(err).__name__}: {err})", file=sys.stderr)


def test_baseline(state: State) -> dict:
    """The trivial predictor beside the model on the test split, with a significance test."""
    from ..evaluation import compare_to_baseline
    from ._factory import scores_to_proba

    X, y = state.splits["test"]
    with state.precision.autocast():
        outputs = model_outputs(state.model, X)
    scores = scores_to_proba(outputs, state.loss_kind, state.info)
    return compare_to_baseline(state.info.task, state.splits["train"][1].cpu().numpy(), y.cpu().numpy(),
                               scores.float().cpu().numpy(), state.info.n_classes, state.recipe.seed, n_boot=1000,
                               positive=state.info.positive,
                               label_names=state.info.classes if state.info.task == "multilabel" else None)


def index_run_dir(run_dir: Path) -> None:
    """The runs index is a cache of the run folders: failing to update it never fails a run."""
    try:
        from .._index import index_run

        index_run(run_dir)
    except Exception as err:  # noqa: BLE001 — any failure here only costs the cache
        print(f"danlu: warning: runs index not updated ({err})", file=sys.stderr)


