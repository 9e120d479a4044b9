"""Runs: build a training session from a recipe, train, resume, evaluate, predict.

``danlu train r.yaml`` and ``danlu.train(Recipe(...))`` both come here: the command line only
parses arguments and prints.
"""
from __future__ import annotations

import json
import os
import random
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _integrity as integrity
from . import _rundir
from .errors import CheckpointError, RecipeError, UserError
from ._extras import check_extras
from .recipe import Recipe
from .training import _checkpoint as ck
from .training._callbacks import Checkpointer, EarlyStopping, MetricsLog, _direction
from .training._loop import batch_count, evaluate_outputs, fit, model_outputs
from .training._objective import is_objective_model, objective_figures
from .training._loggers import logger_callbacks
from .training._progress import Progress
from .training._state import CallbackList, State
from .training._target import TargetScaled, scaled_loss, target_stats
from . import classical  # classical models; importing it registers decision_tree ... kmeans as model kinds

RUN_FILES = ("recipe.yaml", "pipeline.json", "pipeline.safetensors", "model.json", "model.safetensors",
             "summary.json", "metrics.jsonl", "events.jsonl")


# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------

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


def plan_run_dir(recipe: Recipe, run_dir: str | Path | None, overwrite: bool) -> _rundir.Target:
    """Where the run goes, checked before anything is written (one rule for every folder danlu
    writes, see danlu._rundir): an explicit run directory that holds anything is refused unless
    ``overwrite``, and then only one danlu created is replaced; the default ``runs/<name>`` gets a
    numbered suffix instead, so no earlier run is ever replaced."""
    keep = [recipe.data.path] if recipe.data.path else []   # a data file inside the folder survives
    return _rundir.plan_dir(run_dir, default=Path(recipe.output.runs_dir) / (recipe.name or "run"),
                            overwrite=overwrite, flag="--run-dir", kind="run", keep=keep)


def _prepare_data(recipe: Recipe, run_dir: Path | None = None, rows: dict | None = None):
    """The recipe's data, split by its seed — or by the row indices a run was trained on
    (``rows.json`` in the run directory, written for cross-validation folds)."""
    from .data import prepare

    if recipe.base.kind == "minilm":   # text: sentences -> token ids or cached sentence embeddings
        from .transfer import prepare_text

        return _with_positive(prepare_text(recipe, rows), recipe)
    if rows is None and run_dir is not None and (Path(run_dir) / "rows.json").is_file():
        rows = read_rows(Path(run_dir) / "rows.json")
    return _with_positive(prepare(recipe.data, recipe.seed, recipe.source, rows=rows), recipe)


def _with_positive(prepared, recipe: Recipe):
    """Classification: the class binary precision, recall, F1 and ROC AUC are about
    (``data.positive_class``, else the second label in sorted order)."""
    from .evaluation import positive_class_id

    info, chosen = prepared.info, recipe.data.positive_class
    if info.task == "classification":
        info.positive = positive_class_id(info.classes, chosen, f"{recipe.source}: data.positive_class")
    elif chosen is not None:
        raise RecipeError(f"{recipe.source}: data.positive_class applies to classification; this data is "
                          f"{info.task}; remove it")
    return prepared


def read_rows(path: Path) -> dict:
    """A run's rows.json (split name -> row indices), checked against its checksum and shape."""
    rows = integrity.read_json(path)
    for name, indices in rows.items():
        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                    for i in indices):
            raise CheckpointError(f"{path}: split {name!r} must be a list of row numbers (integers >= 0); the "
                                  f"file is damaged or was edited — train the run again")
    return rows


def save_pipeline(pipeline, run_dir: Path) -> None:
    """Write a run's data pipeline with checksums (danlu._integrity), as :func:`load_pipeline` reads it."""
    from .data._pipeline import META_FILE, TENSOR_FILE

    state = getattr(pipeline, "state", None)
    if not callable(state):   # other pipelines (text) write through ck's atomic writes themselves
        pipeline.save(run_dir)
        return
    meta, tensors = state()
    ck.atomic_write_text(run_dir / META_FILE, json.dumps(meta, indent=1, allow_nan=False, ensure_ascii=False))
    ck.atomic_save_tensors(run_dir / TENSOR_FILE, tensors)


def load_pipeline(run_dir: Path):
    """A run's data pipeline, from files that match their checksums."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    from .data import Pipeline
    from .data._pipeline import META_FILE, TENSOR_FILE

    meta = integrity.read_json(run_dir / META_FILE)
    try:
        tensors = load_bytes(integrity.read_bytes(run_dir / TENSOR_FILE))
    except SafetensorError as err:
        raise CheckpointError(f"{run_dir / TENSOR_FILE}: cannot be read ({err}); the file is damaged") from None
    try:
        return Pipeline.from_state(meta, tensors)
    except CheckpointError as err:
        raise CheckpointError(f"{run_dir / META_FILE}: {err}") from None


@dataclass
class Session:
    state: State
    callbacks: CallbackList
    progress: Progress | None


def build_session(recipe: Recipe, run_dir: Path | None, prepared, progress: str | None = None,
                  extra_callbacks=()) -> Session:
    """Everything that a training run needs, in the order that fixes the random numbers:
    seed, model initialisation, then the loop's own draws (data order, dropout, augmentation)."""
    from .models import build_model
    from .training._factory import build_loss, build_optimizer, build_schedule, output_dim, resolve_loss_kind
    from .evaluation import PRIMARY_METRIC

    device = resolve_device(recipe.device)
    info = prepared.info
    loss_kind = resolve_loss_kind(recipe.loss, info)
    seed_everything(recipe.seed, recipe.train.deterministic, device)
    model = _transform_model(recipe, build_model(recipe.model, info, output_dim(loss_kind, info),
                                                 source=recipe.source), info)
    loss_fn = build_loss(recipe.loss, info)
    if info.task == "regression" and recipe.data.scale_target and not is_objective_model(model):
        model = TargetScaled(model, *target_stats(prepared.splits["train"][1]))
        loss_fn = scaled_loss(loss_fn, model)
    model = model.to(device)
    optimizer = build_optimizer(recipe.optimizer, model.parameters())
    splits = {name: (X.to(device), y.to(device)) for name, (X, y) in prepared.splits.items()}
    batches = batch_count(len(splits["train"][0]), recipe.train.batch_size)
    steps_per_epoch = -(-batches // recipe.train.accumulate)
    es = recipe.train.early_stopping
    schedule = build_schedule(recipe.schedule, optimizer, steps_per_epoch, recipe.train.epochs,
                              mode=_direction(es.monitor, es.mode), source=recipe.source)
    state = State(recipe=recipe, info=info, model=model, optimizer=optimizer, schedule=schedule,
                  loss_fn=loss_fn, loss_kind=loss_kind, device=device,
                  pipeline=prepared.pipeline, run_dir=run_dir, splits=splits,
                  steps_per_epoch=steps_per_epoch, batches_per_epoch=batches)

    has_val = "validation" in splits
    monitor = es.monitor
    if has_val and monitor != "val_loss" and monitor not in _known_monitors(info):
        raise RecipeError(f"{recipe.source}: train.early_stopping.monitor {monitor!r} is not a validation figure; "
                          f"use val_loss or one of {', '.join(sorted(_known_monitors(info)))}")
    early = EarlyStopping(monitor=monitor, mode=es.mode, patience=es.patience, min_delta=es.min_delta,
                          restore_best=es.restore_best, enabled=es.enabled and has_val)
    mode = progress or recipe.output.progress
    shown = Progress(mode=mode, primary=PRIMARY_METRIC[info.task])
    callbacks = [early, shown]
    if run_dir is not None:
        cp = recipe.checkpoint
        checkpointer = Checkpointer(run_dir, every_epochs=cp.every_epochs, every_steps=cp.every_steps,
                                    keep_last=cp.keep_last, keep_best=cp.keep_best)
        callbacks = [MetricsLog(run_dir), early, checkpointer, shown]
    callbacks += list(_default_monitors(recipe)) + list(extra_callbacks)
    callbacks += logger_callbacks(recipe, run_dir)   # output.loggers: TensorBoard, MLflow
    if recipe.quant.enabled:   # quantization-aware training: fake quantization from quant.start_epoch
        from .compress import qat_callbacks

        callbacks += list(qat_callbacks(recipe))
    cbs = CallbackList(callbacks)
    state.event_sinks.append(shown.show_event)
    for cb in cbs.callbacks:
        if isinstance(cb, Checkpointer):
            cb.collect = lambda: (ck_model_state(state), collect_state(state, cbs))
    return Session(state, cbs, shown)


def _transform_model(recipe: Recipe, model, info):
    """Training-time model transforms a recipe declares (quantization-aware training, adapters)."""
    quant = recipe.get("quant")
    if quant and quant.get("enabled"):
        from .compress import prepare_qat

        model = prepare_qat(model, quant, info)
    lora = recipe.get("lora")
    if lora and lora.get("enabled"):
        from .transfer import lora_from_recipe

        model = lora_from_recipe(model, lora)
    return model


def _known_monitors(info) -> set:
    from .evaluation import METRICS

    return {f"val_{k}" for k in METRICS[info.task]} | {"val_loss"}


def _default_monitors(recipe: Recipe):
    """The diagnosis monitors (on by default); absent until the diagnose package exists."""
    try:
        from .diagnose import default_monitors
    except ImportError:
        return []
    return default_monitors(recipe)


def ck_model_state(state: State) -> dict:
    return {k: v.detach() for k, v in state.model.state_dict().items()}


def collect_state(state: State, cbs: CallbackList) -> dict:
    """Everything besides the weights that an exact resume needs."""
    return {
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


# ---------------------------------------------------------------------------------------------
# Finishing a run
# ---------------------------------------------------------------------------------------------

def evaluate_splits(state: State, names=("train", "validation", "test")) -> dict:
    out = {}
    for name in names:
        if name in state.splits:
            X, y = state.splits[name]
            if is_objective_model(state.model):
                out[name] = objective_figures(state.model, X, y)
                continue
            out[name] = evaluate_outputs(model_outputs(state.model, X), y, state.loss_fn, state.loss_kind, state.info)
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
    if run_dir is not None:
        ck.atomic_save_tensors(run_dir / "model.safetensors", ck_model_state(state))
        meta = {"loss_kind": state.loss_kind, "info": state.info.to_json(), "model": dict(state.recipe.model),
                "target_scaled": isinstance(state.model, TargetScaled)}
        if objective:
            meta["objective"] = True
        ck.atomic_write_text(run_dir / "model.json", json.dumps(meta, indent=1))
        ck.atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1))
        _index(run_dir)
        if objective:
            _write_model_plots(state, run_dir)
    return summary


def _write_model_plots(state: State, run_dir: Path) -> None:
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
    from .evaluation import compare_to_baseline
    from .training._factory import scores_to_proba

    X, y = state.splits["test"]
    scores = scores_to_proba(model_outputs(state.model, X), state.loss_kind, state.info)
    return compare_to_baseline(state.info.task, state.splits["train"][1].cpu().numpy(), y.cpu().numpy(),
                               scores.float().cpu().numpy(), state.info.n_classes, state.recipe.seed, n_boot=1000,
                               positive=state.info.positive)


def _index(run_dir: Path) -> None:
    """The runs index is a cache of the run folders: failing to update it never fails a run."""
    try:
        from ._index import index_run

        index_run(run_dir)
    except Exception as err:  # noqa: BLE001 — any failure here only costs the cache
        print(f"danlu: warning: runs index not updated ({err})", file=sys.stderr)


class Run:
    """A finished run directory: its summary, and the verbs that use its model."""

    def __init__(self, path: str | Path, summary: dict | None = None):
        self.path = Path(path)
        self.summary = summary if summary is not None else integrity.read_json(self.path / "summary.json")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def evaluate(self, split: str = "test") -> dict:
        return evaluate(self.path, split)

    def predict(self, input_path, output=None, overwrite=False):
        return predict(self.path, input_path, output, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------------

def train(recipe: Recipe | dict, run_dir: str | Path | None = None, *, overwrite: bool = False,
          progress: str | None = None, callbacks=(), rows: dict | None = None) -> Run:
    """Train a recipe into a new run directory and return the finished :class:`Run`.

    ``rows`` (split name -> row indices, see ``danlu.data.labelled_rows``) replaces the recipe's
    seeded split; it is saved as ``rows.json`` so that resume, eval and predict see the same split.
    """
    if not isinstance(recipe, Recipe):
        recipe = Recipe.from_dict(recipe)
    check_extras(recipe)   # a missing optional package stops the run before anything is written
    if _is_rl(recipe):   # reinforcement learning: an agent in an environment, no data set (danlu.rl)
        from .rl import train_rl

        return train_rl(recipe, run_dir, overwrite=overwrite, progress=progress)
    if _has_base(recipe):   # pretrained backbone: danlu.transfer builds the session (danlu finetune)
        from .transfer import finetune

        return finetune(recipe, run_dir, overwrite=overwrite, progress=progress, callbacks=callbacks)
    dist = _join_torchrun(recipe)   # multi-process: None in a single process
    prepared = _prepare_data(recipe, rows=rows)   # bad data fails before anything is written
    classical_plan = classical.plan(recipe, prepared)   # classical models: checked before anything is written
    if dist is not None and classical_plan is not None:
        raise UserError(f"{recipe.source}: classical model {recipe.model.kind!r} is fitted in one process; "
                        f"drop --nproc / torchrun")
    writes = dist is None or dist.is_main   # multi-process: only rank 0 writes the run directory
    target = plan_run_dir(recipe, run_dir, overwrite) if writes else None   # checked; nothing written yet
    path = target.path if writes else None
    session = None
    if classical_plan is None:   # model, loss, optimizer and schedule are built before the folder exists
        session = build_session(recipe, path, prepared, progress if writes else "none",
                                list(callbacks) + _distributed_callbacks(dist))
        if dist is not None and is_objective_model(session.state.model):
            raise UserError(f"{recipe.source}: model kind {recipe.model.kind!r} trains on its own objective, "
                            f"which runs in one process only; drop --nproc / torchrun")
    # the run directory: created, marked and locked by this process for the whole run (rank 0 only)
    with target.claim() if writes else nullcontext() as claim:
        if writes:
            if rows is not None:
                ck.atomic_write_text(path / "rows.json",
                                     json.dumps({k: [int(i) for i in v] for k, v in rows.items()}))
            ck.atomic_write_text(path / "recipe.yaml", recipe.to_yaml())
            save_pipeline(prepared.pipeline, path)
            if classical_plan is None:   # from here on the folder stays: `danlu resume` continues it
                claim.started()
        if dist is not None:
            path = Path(dist.broadcast_text(str(path) if path else None))
        if classical_plan is not None:   # classical models: fitted once on the training rows, no loop
            return Run(path, classical_plan.fit_run(prepared, path, progress))
        fit(session.state, session.callbacks)
        return Run(path, _wrap_up(session, recipe, path, dist, progress))


def _is_rl(recipe: Recipe) -> bool:
    env = recipe.get("env")
    return bool(env and env.get("name"))


def _is_ensemble(run_dir: Path) -> bool:
    from .combine import is_ensemble_dir

    return is_ensemble_dir(run_dir)


def _has_base(recipe: Recipe) -> bool:
    return bool(recipe.base.kind or recipe.base.run)


def _join_torchrun(recipe: Recipe):
    """This process's place in a torchrun job (danlu.distributed), or None outside one."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from .distributed import setup

    return setup(recipe)


def _distributed_callbacks(dist) -> list:
    if dist is None:
        return []
    from .distributed import DistributedTraining

    return [DistributedTraining(dist)]


def read_run_recipe(run_dir: Path) -> Recipe:
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir}: not a danlu run directory (no recipe.yaml); give the folder that "
                        f"`danlu train` created, e.g. runs/<name>")
    integrity.verify(run_dir / "recipe.yaml")   # the run's own recipe, as it wrote it
    return Recipe.from_yaml(run_dir / "recipe.yaml")


def resume(run_dir: str | Path, checkpoint: str | None = None, *, progress: str | None = None,
           callbacks=(), force_foreign_checkpoint: bool = False) -> Run:
    """Continue a run from its newest checkpoint (or the one named); a finished run is left as it is.

    A checkpoint written by another run is refused unless ``force_foreign_checkpoint``."""
    run_dir = Path(run_dir)
    recipe = read_run_recipe(run_dir)
    check_extras(recipe)
    if _is_rl(recipe):
        from .rl import resume_rl

        return resume_rl(run_dir, checkpoint, progress=progress, force_foreign_checkpoint=force_foreign_checkpoint)
    if _has_base(recipe) and not (run_dir / "summary.json").is_file():
        raise UserError(f"{run_dir}: runs that start from a pretrained backbone (base:) cannot be resumed yet; "
                        f"train again with `danlu finetune {run_dir / 'recipe.yaml'}`")
    dist = _join_torchrun(recipe)   # multi-process: every rank reads the run directory, rank 0 writes it
    writes = dist is None or dist.is_main
    if (run_dir / "summary.json").is_file() and checkpoint is None:
        return Run(run_dir)
    # one writer per run directory: a second resume (or train --overwrite) is refused while this runs
    with _rundir.lock_run(run_dir) if writes else nullcontext():
        return _resume_locked(run_dir, recipe, checkpoint, dist, writes, progress, callbacks,
                              force_foreign_checkpoint)


def _resume_locked(run_dir: Path, recipe: Recipe, checkpoint: str | None, dist, writes: bool,
                   progress: str | None, callbacks, force_foreign_checkpoint: bool = False) -> Run:
    if (run_dir / "summary.json").is_file() and checkpoint is None:   # finished while we waited for the lock
        return Run(run_dir)
    root = run_dir / "checkpoints"
    if checkpoint is not None:
        chosen = root / checkpoint if (root / checkpoint).is_dir() else Path(checkpoint)
        if not chosen.is_dir():
            names = ", ".join(p.name for p in ck.list_checkpoints(root)) or "none"
            if chosen.is_file():
                raise CheckpointError(f"{checkpoint}: is a file, expected a checkpoint folder; those in {root}: {names}")
            raise CheckpointError(f"{checkpoint}: no such checkpoint in {root}; available: {names}")
    else:
        found = ck.list_checkpoints(root)
        chosen = found[-1] if found else None
    prepared = _prepare_data(recipe, run_dir)
    if writes and not (run_dir / "pipeline.json").is_file():
        save_pipeline(prepared.pipeline, run_dir)
    session = build_session(recipe, run_dir if writes else None, prepared, progress if writes else "none",
                            list(callbacks) + _distributed_callbacks(dist))
    if chosen is not None:
        try:
            model_state, saved = ck.read_checkpoint(chosen, device=session.state.device, run_dir=run_dir,
                                                    force_foreign=force_foreign_checkpoint)
            _restore_checked(chosen, session, model_state, saved)
        except CheckpointError as err:
            older = [p.name for p in ck.list_checkpoints(root) if p.name < chosen.name]
            hint = f" (earlier: {', '.join(older)})" if older else ""
            raise CheckpointError(f"{err}{hint}") from None
        # a checkpoint chosen by hand may be older than the newest: later ones stay on disk
    fit(session.state, session.callbacks)
    return Run(run_dir, _wrap_up(session, recipe, run_dir, dist, progress))


def _restore_checked(path: Path, session: Session, model_state: dict, saved: dict) -> None:
    """Restore a checkpoint into the session; one that does not fit the model the recipe builds
    (renamed or missing tensors, another architecture) or lacks part of the state is refused."""
    ck.check_state_dict(session.state.model, model_state, path / "model.safetensors",
                        "the checkpoint comes from another model — resume from one of this run's checkpoints")
    try:
        restore_state(session.state, session.callbacks, model_state, saved)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        raise CheckpointError(f"{path}: does not fit this run's model and training state "
                              f"({_first_line(err)}); it comes from another run or was damaged — resume from "
                              f"another checkpoint with --checkpoint") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    what = type(err).__name__
    return f"{what}: {text[0][:200]}" if text else what


def _wrap_up(session: Session, recipe: Recipe, run_dir: Path, dist, progress: str | None) -> dict:
    """The end of a run: rank 0 (or the one process) writes the model, the summary and any QAT
    export; under torchrun the other ranks wait for it, so that no process tears the process
    group down while a peer still uses it (gloo aborts a process that does)."""
    summary = {}
    if dist is None or dist.is_main:
        summary = finish(session.state, run_dir)
        _export_qat(recipe, run_dir, progress)
    if dist is not None:
        dist.wait_for_all()
    return summary


def _export_qat(recipe: Recipe, run_dir: Path, progress: str | None) -> None:
    """After quantization-aware training, write the integer model to RUN/quantized-qat/."""
    if recipe.quant.enabled and recipe.quant.export:
        from .compress import export_qat

        shown = (progress or recipe.output.progress) != "none"
        result = export_qat(run_dir, progress=shown)
        if shown and result is not None:
            print(result.table(), file=sys.stderr)


def load_model(run_dir: str | Path, device="cpu", quantized: str | Path | None = None):
    """(model, pipeline, meta, recipe) of a finished run, weights from model.safetensors — or the
    quantized model in ``quantized`` (a folder written by ``danlu quantize``). Every file is read
    only if it matches its checksum in the run's manifest.json (danlu._integrity)."""
    from .models import build_model
    from .training._factory import output_dim

    run_dir = Path(run_dir)
    if _is_ensemble(run_dir):   # a `danlu ensemble` folder: its members, combined (danlu.combine)
        from .combine import load_ensemble

        if quantized is not None:
            raise UserError(f"{run_dir}: an ensemble has no quantized model of its own; quantize its members")
        return load_ensemble(run_dir, device)
    recipe = read_run_recipe(run_dir)
    if _is_rl(recipe):
        raise UserError(f"{run_dir}: an agent's run ({recipe.env.name}) holds a policy that acts in its environment, "
                        f"not a model of data rows; use `danlu eval`, `danlu diagnose`, `danlu report` or "
                        f"`danlu resume` on it")
    if _has_base(recipe):   # text and fine-tuned runs: danlu.transfer knows their pipeline
        from .transfer import is_text_run, load_text_model

        if is_text_run(run_dir):
            return load_text_model(run_dir, device)
    if classical.is_classical(recipe.model.kind):   # classical models: a fitted estimator as a module
        return _load_classical(run_dir, recipe, device)
    for name in ("model.safetensors", "model.json", "pipeline.json"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: {name} is missing — the run has not finished; "
                            f"finish it with `danlu resume {run_dir}`")
    meta, pipeline = _read_model_meta(run_dir)
    info = pipeline.info
    model = _transform_model(recipe, build_model(recipe.model, info, output_dim(meta["loss_kind"], info)), info)
    if meta.get("target_scaled"):
        model = TargetScaled(model, [0.0] * info.n_targets, [1.0] * info.n_targets)  # buffers come from the file
    weights = ck.load_weights(run_dir / "model.safetensors", device="cpu")
    ck.check_state_dict(model, weights, run_dir / "model.safetensors",
                        f"it does not belong to the {recipe.model.kind} model that recipe.yaml and model.json "
                        f"describe — train the run again")
    model.load_state_dict(weights)
    if quantized is not None:
        from .compress import load_quantized_for_run

        model = load_quantized_for_run(run_dir, quantized, device)
    model.to(device).eval()
    return model, pipeline, meta, recipe


_META_TYPES = {"loss_kind": str, "info": dict, "model": dict}
_CLASSICAL_META_TYPES = {**_META_TYPES, "kind": str, "estimator": str, "sha256": str, "file": str}
_SAME_INFO = ("task", "kind", "input_shape", "n_classes", "classes", "n_targets")


def _read_model_meta(run_dir: Path, classical_run: bool = False) -> tuple[dict, Any]:
    """A finished run's model.json and pipeline, checked against their checksums, for shape, and
    against each other (model.json's inputs and outputs are the pipeline's)."""
    path = run_dir / "model.json"
    meta = integrity.read_json(path)
    integrity.require(path, _CLASSICAL_META_TYPES if classical_run else _META_TYPES, meta)
    pipeline = load_pipeline(run_dir)
    have = json.loads(json.dumps(pipeline.info.to_json()))
    for key in _SAME_INFO:
        if key in meta["info"] and key in have and meta["info"][key] != have[key]:
            raise CheckpointError(f"{path}: info.{key} is {meta['info'][key]!r} but the run's pipeline.json says "
                                  f"{have[key]!r}; the files come from different runs or were edited — train "
                                  f"the run again")
    return meta, pipeline


def refuse_generative(run_dir, meta: dict, recipe: Recipe, verb: str) -> None:
    """Verbs that need predictions for rows (predict, serve, ensemble, distill, quantize, compare)
    do not apply to a generative run; say so, and what does apply."""
    if meta.get("objective"):
        raise UserError(f"{run_dir}: a {recipe.model.kind} run makes no predictions for rows, so `danlu {verb}` "
                        f"does not apply; use `danlu generate {run_dir}` for samples, `danlu latent {run_dir}` "
                        f"for its latent space or `danlu eval {run_dir}` for its figures")


def _load_classical(run_dir: Path, recipe: Recipe, device):
    """Classical models (danlu.classical): model.skops read against its trust list, as a module."""
    for name in ("model.skops", "model.json", "pipeline.json"):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir}: {name} is missing — the model was not fitted; fit it again with "
                            f"`danlu train {run_dir / 'recipe.yaml'}`")
    from .classical._persist import check_structures

    meta, pipeline = _read_model_meta(run_dir, classical_run=True)
    model = classical.load_module(run_dir, meta, pipeline.info)
    check_structures(model.estimator, run_dir / meta["file"], n_features=int(np.prod(pipeline.info.input_shape)))
    return model.to(device).eval(), pipeline, meta, recipe


@dataclass
class Scoring:
    """What scoring a finished run on its own data needs, loaded once."""

    model: Any
    meta: dict
    recipe: Recipe
    prepared: Any
    loss_fn: Any

    def split(self, name: str, run_dir) -> tuple:
        if name not in self.prepared.splits:
            raise UserError(f"{run_dir}: the run has no {name} split (data.split.{name} is 0); "
                            f"choose one of {', '.join(self.prepared.splits)}")
        return self.prepared.splits[name]


def scoring(run_dir: str | Path, device="cpu", quantized: str | Path | None = None) -> Scoring:
    """A finished run's model with its data (rows.json included) and loss, for evaluation."""
    from .training._factory import build_loss

    model, _pipeline, meta, recipe = load_model(run_dir, device=device, quantized=quantized)
    prepared = _prepare_data(recipe, run_dir)
    loss_fn = build_loss(recipe.loss, prepared.info)
    if isinstance(model, TargetScaled):
        loss_fn = scaled_loss(loss_fn, model)
    return Scoring(model, meta, recipe, prepared, loss_fn)


def evaluate(run_dir: str | Path, split: str = "test", quantized: str | Path | None = None) -> dict:
    """Metrics of a finished run's model (or its quantized version) on one split (or ``all``)."""
    if split not in ("train", "validation", "test", "all"):
        raise UserError(f"--split must be train, validation, test or all; got {split!r}")
    if _is_ensemble(Path(run_dir)) and quantized is None:   # its stored rule on its members' outputs
        from .combine import evaluate_ensemble

        return evaluate_ensemble(run_dir, split)
    recipe = read_run_recipe(Path(run_dir))
    if _is_rl(recipe):   # an agent: its greedy policy over the evaluation episodes (no data splits)
        from .rl import evaluate_rl

        return {"test": evaluate_rl(run_dir, recipe.env.eval_episodes)}
    sc = scoring(run_dir, quantized=quantized)
    names = ("train", "validation", "test") if split == "all" else (split,)
    out = {}
    for name in names:
        X, y = sc.split(name, run_dir)
        if sc.meta.get("classical"):   # classical models: the same figures as at fit time
            out[name] = classical.split_figures(sc.model, X, y, sc.prepared.info, sc.recipe.seed)
            continue
        if sc.meta.get("objective"):   # generative models: their own figures, as at the end of training
            out[name] = objective_figures(sc.model, X, y)
            continue
        out[name] = evaluate_outputs(model_outputs(sc.model, X), y, sc.loss_fn, sc.meta["loss_kind"],
                                     sc.prepared.info)
    return out


def predict(run_dir: str | Path, input_path: str | Path, output: str | Path | None = None, *,
            overwrite: bool = False, quantized: str | Path | None = None) -> list[dict]:
    """Predictions (with class probabilities for classifiers) for new rows; CSV written to ``output``
    (an existing file is kept unless ``overwrite``)."""
    from .data._table import check_outputs
    from .training._factory import scores_to_proba

    if output is not None and str(output) != "-":   # a kept file, a folder or an unwritable place: said at once
        _rundir.check_output_file(output, overwrite, flag="-o")
    model, pipeline, meta, recipe = load_model(run_dir, quantized=quantized)
    refuse_generative(run_dir, meta, recipe, "predict")
    X, given = pipeline.load_input(str(input_path))
    if meta.get("unsupervised"):   # classical models: a cluster id (k-means) or the components pc1..pcK (pca)
        rows = [{given.id_name: given.ids[i], **answer}
                for i, answer in enumerate(classical.unsupervised_answers(model, X))]
        if output is not None:
            write_csv(rows, Path(output))
        return rows
    scores = scores_to_proba(model_outputs(model, X), meta["loss_kind"], pipeline.info).cpu().numpy()
    check_outputs(scores, str(input_path), given.ids, given.id_name)
    info = pipeline.info
    rows = []
    for i in range(len(scores)):
        row = {given.id_name: given.ids[i]}
        if info.task == "classification":
            row["prediction"] = pipeline.decode([int(scores[i].argmax())])[0]
            for c, label in enumerate(info.classes):
                row[f"proba_{label}"] = float(scores[i, c])
        else:
            values = np.atleast_1d(scores[i])
            if len(values) == 1:
                row["prediction"] = float(values[0])
            else:
                row.update({f"prediction_{k}": float(v) for k, v in enumerate(values)})
        rows.append(row)
    if output is not None:
        write_csv(rows, Path(output))
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    import csv
    import io

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if str(path) == "-":
        sys.stdout.write(buf.getvalue())
        return
    with _rundir.writing_file(path):   # a failed write leaves no temporary file and no new folder
        ck.atomic_write_text(path, buf.getvalue())
