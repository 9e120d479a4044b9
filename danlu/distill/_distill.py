"""``danlu distill``: train a student on a teacher's soft targets and show what it gained.

The student is an ordinary recipe trained by the ordinary loop; distillation is a callback,
:class:`Distillation`, whose ``compute_loss`` is the loss of a training batch (the loop's one loss
hook, as Keras' ``Distiller`` overrides ``compute_loss``). The teachers see the same batch as the
student, augmentation included.

To show the gain honestly, the same recipe is also trained without distillation ("student
alone": same seed, so the same initial weights, data order and epochs — only the loss differs),
unless a finished run is given as the baseline. Teachers, student alone and distilled student
are evaluated on the same test split; the comparison goes to ``distill.json`` in the distilled
student's run directory.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .._rundir import numbered, plan_dir
from ..errors import RecipeError, UserError

RESULT_FILE = "distill.json"


def distill(student, teachers, *, temperature: float = 4.0, alpha: float = 0.7, run_dir=None, baseline=None,
            overwrite: bool = False, progress: str | None = None) -> dict:
    """Distil ``teachers`` (run directories) into the ``student`` recipe; returns the comparison.

    ``baseline``: a finished run of the student trained alone; None trains one beside the student.
    """
    from ..recipe import Recipe

    recipe = student if isinstance(student, Recipe) else Recipe.from_dict(student)
    teacher_dirs = [Path(t) for t in teachers]
    _check(recipe, teacher_dirs, baseline, temperature, alpha)   # before any model is loaded or trained
    student_dir = Path(run_dir) if run_dir is not None else _free_dir(recipe, "distilled")
    alone_dir = None
    if baseline is None:
        alone_dir = Path(f"{student_dir}-alone") if run_dir is not None else _free_dir(recipe, "alone")
    for path in (student_dir, alone_dir):   # both folders answered before anything is trained
        if path is not None:
            plan_dir(path, overwrite=overwrite, flag="--run-dir")

    from .. import training as runs   # torch: only once the settings and the runs are known to be right

    shown = progress or recipe.output.progress
    _say(shown, f"distilling {len(teacher_dirs)} teacher(s) into {recipe.model.kind} -> {student_dir}")
    distilled = runs.train(recipe, student_dir, overwrite=overwrite, progress=progress,
                           callbacks=[Distillation(teacher_dirs, temperature, alpha)])
    if alone_dir is not None:
        _say(shown, f"training the same student alone (no teacher) -> {alone_dir}")
        alone = runs.train(recipe, alone_dir, overwrite=overwrite, progress=progress)
        base = {"run": str(alone.path), "trained_here": True, **_facts(alone.path, alone.summary)}
    else:
        base = {"run": str(baseline), "trained_here": False, **_facts(Path(baseline), None)}
    return _report(distilled, base, teacher_dirs, temperature, alpha)


def _check(recipe, teacher_dirs: list[Path], baseline, temperature: float, alpha: float) -> None:
    from ..classical import is_classical
    from ..combine import check_same_data, data_identity, run_recipe

    if not temperature > 0:
        raise UserError(f"--temperature must be > 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise UserError(f"--alpha (weight of the soft targets) must be in [0, 1], got {alpha}")
    if not teacher_dirs:
        raise UserError("give at least one --teacher RUN (a finished run trained on the same data)")
    if is_classical(recipe.model.kind):
        raise RecipeError(f"{recipe.source}: the student must be a neural model (it learns the soft targets by "
                          f"gradient descent); model.kind {recipe.model.kind} is a scikit-learn model")
    where = "the student recipe" + ("" if recipe.source == "recipe" else f" {recipe.source}")
    for path in teacher_dirs + ([Path(baseline)] if baseline is not None else []):
        check_same_data((where, data_identity(recipe)), (str(path), data_identity(run_recipe(path), path)),
                        role="a teacher, its student and the student's baseline")
    if baseline is not None:
        _check_same_budget(recipe, run_recipe(baseline), baseline, where)


BUDGET = ("model", "loss", "optimizer", "schedule", "train")   # what makes "the same student, trained alone"


def _check_same_budget(recipe, other, baseline, where: str) -> None:
    for section in BUDGET:
        mine, theirs = recipe.get(section) or {}, other.get(section) or {}
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                raise UserError(f"{baseline}: its {section}.{key} is {theirs.get(key)!r} but {where} has "
                                f"{mine.get(key)!r}; the baseline must be the student recipe trained alone "
                                f"(or leave --baseline out to train one)")


class Distillation:
    """The loss hook of distillation: the student's loss on a batch mixes the teachers' soft
    targets with the labels (``danlu.distill._loss``).

    The teachers are loaded when the callback is made (so that a teacher that cannot teach is
    refused before anything is trained) and moved to the student's device at fit start. It holds
    no state of its own: the teachers are fixed, so a resumed run computes the same losses."""

    def __init__(self, teacher_dirs, temperature: float = 4.0, alpha: float = 0.7):
        self.teacher_dirs = [Path(p) for p in teacher_dirs]
        self.temperature, self.alpha = temperature, alpha
        self.teachers = [_load_teacher(path, "cpu") for path in self.teacher_dirs]
        self._loss = None

    def on_fit_start(self, state) -> None:
        import torch.distributed as tdist

        if tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1:
            raise UserError("distillation trains in one process; drop --nproc / torchrun for `danlu distill`")
        from ._loss import distillation_loss

        for teacher in self.teachers:
            teacher.model.to(state.device)
        # the teachers are classifiers of the same data, so the student is one too
        self._loss = distillation_loss(state, self.teachers, self.temperature, self.alpha)

    def compute_loss(self, state, xb, yb):
        return self._loss(xb, yb)


def _report(distilled, base: dict, teacher_dirs: list[Path], temperature: float, alpha: float) -> dict:
    from ..training._checkpoint import atomic_write_text

    result = {
        "temperature": temperature,
        "alpha": alpha,
        "teachers": [{"run": str(p), **_facts(p, None)} for p in teacher_dirs],
        "baseline": base,
        "student": {"run": str(distilled.path), **_facts(distilled.path, distilled.summary)},
    }
    result["gain"] = _gain(result["student"]["test"], base["test"])
    atomic_write_text(distilled.path / RESULT_FILE, json.dumps(result, indent=1))
    result["path"] = str(distilled.path / RESULT_FILE)
    return result


def _load_teacher(path: Path, device):
    from .. import training as runs
    from ._loss import Teacher

    model, pipeline, meta, recipe = runs.load_model(path, device=device)
    runs.refuse_generative(path, meta, recipe, "distill")
    info = pipeline.info
    if meta.get("unsupervised") or info.task != "classification":
        raise UserError(f"{path}: a teacher must be a classifier (its class probabilities are the soft targets); "
                        f"this run is {meta.get('kind') or info.task}")
    return Teacher(model, meta["loss_kind"], name=path.name)


def _free_dir(recipe, suffix: str) -> Path:
    return numbered(Path(recipe.output.runs_dir) / f"{recipe.name or 'student'}-{suffix}")


def _say(progress, text: str) -> None:
    if progress != "none":
        print(f"danlu: {text}", file=sys.stderr, flush=True)


def _facts(path: Path, summary: dict | None) -> dict:
    """Kind, size and test figures of a run (from its summary, else evaluated now)."""
    from .. import training as runs

    if summary is None and (path / "summary.json").is_file():
        from .._integrity import read_json

        summary = read_json(path / "summary.json")   # refused unless it matches its checksum
    test = summary["test"] if summary and "test" in summary else runs.evaluate(path, "test")["test"]
    recipe = runs.read_run_recipe(path)
    run = (summary or {}).get("run", {})
    return {"kind": recipe.model.kind, "parameters": run.get("parameters"), "test": test}


def _gain(student: dict, alone: dict) -> dict:
    """Distilled minus alone, for the figures both have (positive is better for all but losses)."""
    return {k: student[k] - alone[k] for k in student if k in alone}


def table_rows(result: dict) -> dict:
    """{row: figures} for ``format_table``: teachers, student alone, distilled student."""
    rows = {}
    for i, t in enumerate(result["teachers"]):
        label = "teacher" if len(result["teachers"]) == 1 else f"teacher {i + 1}"
        rows[f"{label} ({Path(t['run']).name})"] = {"parameters": t["parameters"], **t["test"]}
    rows["student alone"] = {"parameters": result["baseline"]["parameters"], **result["baseline"]["test"]}
    rows["student distilled"] = {"parameters": result["student"]["parameters"], **result["student"]["test"]}
    return rows
