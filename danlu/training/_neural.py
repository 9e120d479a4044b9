"""The core's run kind: a network trained by the loop from a recipe's data.

The other kinds (classical, fine-tuned, agents, ensembles) are registered by their capabilities;
several reuse pieces of this one by subclassing :class:`NeuralRuns`.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _rundir
from ..errors import CheckpointError, UserError
from ..recipe import Recipe
from . import _checkpoint as ck
from ._extend import join_process_group, load_quantized, recipe_callbacks, transform_model
from ._loop import evaluate_outputs, fit, model_outputs
from ._objective import is_objective_model, objective_figures
from ._runfiles import plan_run_dir, read_model_meta, read_rows, save_pipeline, write_csv
from ._runs import Run, RunKind
from ._session import Session, build_session, finish, restore_state, with_positive
from ._target import TargetScaled, scaled_loss


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


def refuse_generative(run_dir, meta: dict, recipe: Recipe, verb: str) -> None:
    """Verbs that need predictions for rows (predict, serve, ensemble, distill, quantize, compare)
    do not apply to a generative run; say so, and what does apply."""
    if meta.get("objective"):
        raise UserError(f"{run_dir}: a {recipe.model.kind} run makes no predictions for rows, so `danlu {verb}` "
                        f"does not apply; use `danlu generate {run_dir}` for samples, `danlu latent {run_dir}` "
                        f"for its latent space or `danlu eval {run_dir}` for its figures")


def scoring(run_dir, device="cpu", quantized=None) -> Scoring:
    """A finished run's model with its data (rows.json included) and loss, for evaluation."""
    from ._runs import kind_of_dir

    run_dir = Path(run_dir)
    kind, recipe = kind_of_dir(run_dir)
    if not isinstance(kind, NeuralRuns):
        raise UserError(f"{run_dir}: a {kind.name} run is not scored on data splits; use `danlu eval {run_dir}`")
    return kind.scoring(run_dir, recipe, device, quantized)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    what = type(err).__name__
    return f"{what}: {text[0][:200]}" if text else what


class NeuralRuns(RunKind):
    name = "neural"

    # -- data ------------------------------------------------------------------------------------
    def prepare_data(self, recipe: Recipe, run_dir: Path | None = None, rows: dict | None = None):
        from ..data import prepare

        if rows is None and run_dir is not None and (Path(run_dir) / "rows.json").is_file():
            rows = read_rows(Path(run_dir) / "rows.json")
        return with_positive(prepare(recipe.data, recipe.seed, recipe.source, rows=rows), recipe)

    # -- train -----------------------------------------------------------------------------------
    def train(self, recipe: Recipe, run_dir, *, overwrite: bool, progress, callbacks, rows,
              prepared=None, build=None, objects=None) -> Run:
        """``prepared`` (the data, already split), ``build(session)`` (a last change to the built
        session) and ``objects`` (``model``/``loss`` for build_session) let a kind that builds on
        this one (Python objects) reuse it."""
        dist = join_process_group(recipe)   # multi-process: None in a single process
        if prepared is None:
            prepared = self.prepare_data(recipe, rows=rows)   # bad data fails before anything is written
        writes = dist is None or dist.is_main   # multi-process: only rank 0 writes the run directory
        target = plan_run_dir(recipe, run_dir, overwrite) if writes else None   # checked; nothing written yet
        path = target.path if writes else None
        # model, loss, optimizer and schedule are built before the folder exists
        session = build_session(recipe, path, prepared, progress if writes else "none",
                                list(callbacks) + (dist.callbacks() if dist is not None else []), **(objects or {}))
        if build is not None:
            build(session)
        if dist is not None and is_objective_model(session.state.model):
            raise UserError(f"{recipe.source}: model kind {recipe.model.kind!r} trains on its own objective, "
                            f"which runs in one process only; drop --nproc / torchrun")
        # the run directory: created, marked and locked by this process for the whole run (rank 0 only)
        with target.claim() if writes else nullcontext() as claim:
            if writes:
                self.write_run_files(path, recipe, prepared, rows)
                claim.started()   # from here on the folder stays: `danlu resume` continues it
            if dist is not None:
                path = Path(dist.broadcast_text(str(path) if path else None))
            fit(session.state, session.callbacks)
            return Run(path, self.wrap_up(session, path, dist))

    def write_run_files(self, path: Path, recipe: Recipe, prepared, rows) -> None:
        if rows is not None:
            ck.atomic_write_text(path / "rows.json", json.dumps({k: [int(i) for i in v] for k, v in rows.items()}))
        ck.atomic_write_text(path / "recipe.yaml", recipe.to_yaml())
        save_pipeline(prepared.pipeline, path)

    def wrap_up(self, session: Session, run_dir: Path, dist) -> dict:
        """The end of a run: rank 0 (or the one process) writes the model and the summary, then the
        callbacks' ``on_run_end`` (the QAT export); under torchrun the other ranks wait for it, so
        that no process tears the process group down while a peer still uses it."""
        summary = {}
        if dist is None or dist.is_main:
            summary = finish(session.state, run_dir)
            for cb in session.callbacks.callbacks:
                hook = getattr(cb, "on_run_end", None)
                if callable(hook):
                    hook(session.state)
        if dist is not None:
            dist.wait_for_all()
        return summary

    # -- resume ----------------------------------------------------------------------------------
    def resume(self, run_dir: Path, recipe: Recipe, checkpoint, *, progress, callbacks,
               force_foreign_checkpoint: bool = False, build=None, objects=None) -> Run:
        dist = join_process_group(recipe)   # multi-process: every rank reads the run directory, rank 0 writes it
        writes = dist is None or dist.is_main
        if (run_dir / "summary.json").is_file() and checkpoint is None:
            return Run(run_dir)
        # one writer per run directory: a second resume (or train --overwrite) is refused while this runs
        with _rundir.lock_run(run_dir) if writes else nullcontext():
            return self._resume_locked(run_dir, recipe, checkpoint, dist, writes, progress, callbacks,
                                       force_foreign_checkpoint, build, objects)

    def _resume_locked(self, run_dir: Path, recipe: Recipe, checkpoint, dist, writes: bool, progress, callbacks,
                       force_foreign_checkpoint: bool, build, objects=None) -> Run:
        if (run_dir / "summary.json").is_file() and checkpoint is None:   # finished while we waited for the lock
            return Run(run_dir)
        root = run_dir / "checkpoints"
        chosen = ck.choose_checkpoint(run_dir, checkpoint)
        prepared = self.prepare_data(recipe, run_dir)
        if writes and not (run_dir / "pipeline.json").is_file():
            save_pipeline(prepared.pipeline, run_dir)
        session = build_session(recipe, run_dir if writes else None, prepared, progress if writes else "none",
                                list(callbacks) + (dist.callbacks() if dist is not None else []), **(objects or {}))
        if build is not None:
            build(session)
        if chosen is not None:
            try:
                model_state, saved = ck.read_checkpoint(chosen, device=session.state.device, run_dir=run_dir,
                                                        force_foreign=force_foreign_checkpoint)
                restore_checked(chosen, session, model_state, saved)
            except CheckpointError as err:
                older = [p.name for p in ck.list_checkpoints(root) if p.name < chosen.name]
                hint = f" (earlier: {', '.join(older)})" if older else ""
                raise CheckpointError(f"{err}{hint}") from None
            # a checkpoint chosen by hand may be older than the newest: later ones stay on disk
        fit(session.state, session.callbacks)
        return Run(run_dir, self.wrap_up(session, run_dir, dist))

    # -- a finished run's model ----------------------------------------------------------------
    def load_model(self, run_dir: Path, recipe: Recipe, device="cpu", quantized=None, model=None):
        """(model, pipeline, meta, recipe) from model.safetensors; ``model``: the module to load the
        weights into (runs trained on a Python object), else the one the recipe builds."""
        from ..models import build_model
        from ._factory import output_dim

        for name in ("model.safetensors", "model.json", "pipeline.json"):
            if not (run_dir / name).is_file():
                raise UserError(f"{run_dir}: {name} is missing — the run has not finished; "
                                f"finish it with `danlu resume {run_dir}`")
        meta, pipeline = read_model_meta(run_dir)
        info = pipeline.info
        if model is None:
            model = build_model(recipe.model, info, output_dim(meta["loss_kind"], info))
        if meta.get("target_scaled"):
            model = TargetScaled(model, [0.0] * info.n_targets, [1.0] * info.n_targets)  # buffers come from the file
        model = transform_model(recipe_callbacks(recipe), model, info)   # as in training, so the weights fit
        weights = ck.load_weights(run_dir / "model.safetensors", device="cpu")
        ck.check_state_dict(model, weights, run_dir / "model.safetensors",
                            f"it does not belong to the {recipe.model.kind} model that recipe.yaml and model.json "
                            f"describe — train the run again")
        model.load_state_dict(weights)
        if quantized is not None:   # a folder written by `danlu quantize`: its registered loader reads it
            model = load_quantized(run_dir, quantized, device)
        model.to(device).eval()
        return model, pipeline, meta, recipe

    def scoring(self, run_dir: Path, recipe: Recipe, device="cpu", quantized=None, model=None) -> Scoring:
        """A finished run's model with its data (rows.json included) and loss, for evaluation."""
        from ._factory import build_loss

        loaded = (self.load_model(run_dir, recipe, device, quantized) if model is None
                  else self.load_model(run_dir, recipe, device, quantized, model))
        model, _pipeline, meta, recipe = loaded
        prepared = self.prepare_data(recipe, run_dir)
        loss_fn = build_loss(recipe.loss, prepared.info)
        if isinstance(model, TargetScaled):
            loss_fn = scaled_loss(loss_fn, model)
        return Scoring(model, meta, recipe, prepared, loss_fn)

    def split_figures(self, sc: Scoring, X, y, autocast: bool = False) -> dict:
        if sc.meta.get("objective"):   # generative models: their own figures, as at the end of training
            return objective_figures(sc.model, X, y)
        from ._precision import evaluation_autocast

        # train.precision: a float model's figures under the autocast of the run's own final figures
        with evaluation_autocast(sc.recipe if autocast else None, X.device):
            outputs = model_outputs(sc.model, X)
        return evaluate_outputs(outputs, y, sc.loss_fn, sc.meta["loss_kind"], sc.prepared.info)

    def evaluate(self, run_dir: Path, recipe: Recipe, split: str, quantized, model=None) -> dict:
        sc = self.scoring(run_dir, recipe, quantized=quantized, model=model)
        names = ("train", "validation", "test") if split == "all" else (split,)
        return {name: self.split_figures(sc, *sc.split(name, run_dir), autocast=quantized is None) for name in names}

    # -- predict ---------------------------------------------------------------------------------
    def predict(self, run_dir: Path, input_path, output, *, overwrite: bool = False, quantized=None) -> list[dict]:
        if output is not None and str(output) != "-":   # a kept file, a folder or an unwritable place: said at once
            _rundir.check_output_file(output, overwrite, flag="-o")
        from ._runs import load_model

        model, pipeline, meta, recipe = load_model(run_dir, quantized=quantized)
        refuse_generative(run_dir, meta, recipe, "predict")
        X, given = pipeline.load_input(str(input_path))
        answers = self.answers(model, X, meta, pipeline, str(input_path), given)
        rows = [{given.id_name: given.ids[i], **answer} for i, answer in enumerate(answers)]
        if output is not None:
            write_csv(rows, Path(output))
        return rows

    def answers(self, model, X, meta: dict, pipeline, where: str, given) -> list[dict]:
        """One dict per row: the prediction, and each class's probability for a classifier."""
        from ..data._table import check_outputs
        from ._factory import scores_to_proba

        scores = scores_to_proba(model_outputs(model, X), meta["loss_kind"], pipeline.info).cpu().numpy()
        check_outputs(scores, where, given.ids, given.id_name)
        info = pipeline.info
        if len(scores) == 0:
            return []
        flat = scores.reshape(len(scores), -1)
        # whole arrays at once: decode every row's prediction in one call, and tolist() turns the
        # (float32) scores into the same Python floats float() gives one at a time
        if info.task == "multilabel":   # the labels whose probability is >= 0.5, joined by '|'
            predictions = pipeline.decode((flat >= 0.5).astype(np.int64))
            names = [f"proba_{label}" for label in info.classes]
            return [{"prediction": p, **dict(zip(names, row))} for p, row in zip(predictions, flat.tolist())]
        if info.task == "classification":
            predictions = pipeline.decode(flat.argmax(axis=1))
            names = ["prediction"] + [f"proba_{label}" for label in info.classes]
            return [dict(zip(names, [p, *row])) for p, row in zip(predictions, flat.tolist())]
        if flat.shape[1] == 1:
            return [{"prediction": v} for v in flat[:, 0].tolist()]
        names = [f"prediction_{k}" for k in range(flat.shape[1])]
        return [dict(zip(names, row)) for row in flat.tolist()]


def restore_checked(path: Path, session: Session, model_state: dict, saved: dict) -> None:
    """Restore a checkpoint into the session; one that does not fit the model the recipe builds
    (renamed or missing tensors, another architecture) or lacks part of the state is refused."""
    ck.check_state_dict(session.state.model, model_state, path / "model.safetensors",
                        "the checkpoint comes from another model — resume from one of this run's checkpoints")
    try:
        restore_state(session.state, session.callbacks, model_state, saved)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        raise CheckpointError(f"{path}: does not fit this run's model and training state "
                              f"({first_line(err)}); it comes from another run or was damaged — resume from "
                              f"another checkpoint with --checkpoint") from None

