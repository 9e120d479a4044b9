"""Runs as ensemble members (or teachers): the same-data check and their outputs per split.

Two runs see the same rows in the same splits, transformed the same way, when their recipes have
the same ``seed`` and the same ``data`` section — apart from ``data.augment``, which only changes
training batches — and the same fold rows (rows.json) if any. Anything else is refused, naming
the first key that differs.

Ensemble members may differ in ``data.shape`` alone when it only reshapes the same numbers (a
CNN's [1, 8, 8] digits and an MLP's [64]): the rows and splits are the same, but a shape is not
only a layout — an image shape standardises per channel, a flat one per column — so each such
member gets its own copy of the data, transformed by its own recipe. Distillation and fine-tuning
still ask for the same shape (a student learns from its teacher's outputs on the student's rows).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError

if TYPE_CHECKING:
    from ..recipe import Recipe

BATCH_ONLY_KEYS = ("augment",)   # data keys that change neither the rows of a split nor their transform


def data_identity(recipe, run_dir: Path | None = None) -> dict:
    """What fixes a run's rows, splits and transforms: the data section (less augment), seed and fold rows."""
    data = {k: v for k, v in recipe.data.items() if k not in BATCH_ONLY_KEYS}
    rows = None
    if run_dir is not None and (Path(run_dir) / "rows.json").is_file():
        from .._integrity import read_json

        rows = read_json(Path(run_dir) / "rows.json")   # refused unless it matches its checksum
    return {"seed": recipe.seed, "data": _plain(data), "rows": rows}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_same_data(reference: tuple[str, dict], other: tuple[str, dict], role: str = "ensemble members",
                    fix: str = "") -> None:
    """Refuse two runs (name, data_identity) whose splits differ, naming the first key that does.

    The one check that one run's test rows are not another's training rows: ensembles, distillation
    and fine-tuning from ``base.run`` all use it. ``fix`` is appended to the message (another way out)."""
    (ref_name, ref), (name, ident) = reference, other
    if ident == ref:
        return
    key, mine, theirs = _first_difference(ref, ident)
    if key.split(".")[0] == "rows":   # fold rows are long lists: name them instead
        mine, theirs = (_split_word(v) for v in (ident["rows"], ref["rows"]))
        key = "split"
    raise UserError(f"{name}: its {key} is {mine!r} but {ref_name} has {theirs!r}; {role} must share the "
                    f"recipe's seed and data section (and fold rows) so that their splits are the same{fix}")


def _split_word(rows) -> str:
    return "the seeded split" if rows is None else "cross-validation fold rows (rows.json)"


def _first_difference(a, b, prefix: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "value", b, a


@dataclass
class Member:
    """One run's outputs per split: probabilities (N, C) or predictions (N, k), float64 numpy."""

    path: Path
    name: str
    kind: str
    task: str
    outputs: dict = field(default_factory=dict)


def run_recipe(run_dir) -> "Recipe":
    """A run directory's recipe, read without loading torch (so that mistakes are answered at once)."""
    from .. import classical  # noqa: F401  (its kinds must be known to validate a classical run's recipe)
    from ..recipe import Recipe

    path = Path(run_dir)
    if not (path / "recipe.yaml").is_file():
        raise UserError(f"{path}: not a danlu run directory (no recipe.yaml); give the folder that "
                        f"`danlu train` created, e.g. runs/<name>")
    return Recipe.from_yaml(path / "recipe.yaml")


def check_runs(run_dirs: list, role: str = "ensemble members", *, reshape: bool = False) -> list:
    """The runs' recipes, once every run is known to share the first one's data (torch-free).

    ``reshape``: ``data.shape`` may differ (checked later, once the shapes are known: they must
    hold the same numbers per row)."""
    if not run_dirs:
        raise UserError(f"give at least one run directory of {role}")
    paths = [Path(p) for p in run_dirs]
    recipes = [run_recipe(p) for p in paths]
    reference = (str(paths[0]), _identity(recipes[0], paths[0], reshape))
    for path, recipe in zip(paths[1:], recipes[1:]):
        check_same_data(reference, (str(path), _identity(recipe, path, reshape)), role)
    return recipes


def _identity(recipe, run_dir, reshape: bool) -> dict:
    ident = data_identity(recipe, run_dir)
    if reshape:
        ident["data"] = {k: v for k, v in ident["data"].items() if k != "shape"}
    return ident


def load_members(run_dirs: list, splits=("validation", "test"), *, role: str = "ensemble members",
                 progress: bool = True, reshape: bool = False):
    """Load every run, check that they share their data, and compute their outputs on ``splits``.

    Returns ``(members, prepared)``; ``prepared`` holds the shared data (labels per split) as the
    first run transforms it. With ``reshape``, a member whose ``data.shape`` differs reads its own
    copy of the same rows (see the module docstring).
    """
    recipes = check_runs(run_dirs, role, reshape=reshape)
    paths = [Path(p) for p in run_dirs]
    from .. import training as runs

    prepared = runs.prepare_run_data(recipes[0], paths[0])
    for name in splits:
        if name not in prepared.splits:
            raise UserError(f"{paths[0]}: the recipe has no {name} split (data.split.{name} is 0); "
                            f"{role} need it — train them with a {name} split")
    device = runs.resolve_device("auto")
    names = _unique_names(paths)
    members = []
    for i, (path, name, recipe) in enumerate(zip(paths, names, recipes)):
        if progress:
            print(f"member {i + 1}/{len(paths)}: {path}", file=sys.stderr, flush=True)
        own = prepared
        if recipe.data.get("shape") != recipes[0].data.get("shape"):
            own = runs.prepare_run_data(recipe, path)
            check_reshape(prepared.info, own.info, str(path), str(paths[0]))
        members.append(_member(path, name, own, splits, device))
    return members, prepared


def check_reshape(reference_info, info, name: str, ref_name: str) -> None:
    """Two runs' inputs are the same numbers when their shapes hold as many per row."""
    import math

    mine, theirs = tuple(info.input_shape), tuple(reference_info.input_shape)
    if math.prod(mine) != math.prod(theirs):
        raise UserError(f"{name}: its inputs have shape {list(mine)} but {ref_name}'s have {list(theirs)}; "
                        f"ensemble members may differ in data.shape only when it reshapes the same numbers")


def _unique_names(paths: list[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{i + 1}:{n}" for i, n in enumerate(names)]


def _member(path: Path, name: str, prepared, splits, device) -> Member:
    from .. import training as runs

    model, pipeline, meta, recipe = runs.load_model(path, device=device)
    runs.refuse_generative(path, meta, recipe, "ensemble")
    if meta.get("unsupervised"):
        raise UserError(f"{path}: a {meta.get('kind', 'clustering')} run learns without the labels (clusters or "
                        f"components); it cannot be combined or distilled from")
    info = pipeline.info
    if info.task != prepared.info.task or info.classes != prepared.info.classes:
        raise UserError(f"{path}: its task or classes differ from the other runs' ({info.task}, "
                        f"{len(info.classes)} classes); retrain it on the same data")
    member = Member(path, name, recipe.model.kind, info.task)
    for split in splits:
        X = prepared.splits[split][0]
        member.outputs[split] = outputs_of(model, meta, info, X, device)
    return member


def outputs_of(model, meta: dict, info, X, device):
    """A loaded run's probabilities (classification) or predictions (regression) on X, as numpy."""
    from ..training import model_outputs, scores_to_proba

    X = X.to(device)
    scores = scores_to_proba(model_outputs(model, X), meta["loss_kind"], info)
    scores = scores.detach().cpu().double().numpy()
    return scores if info.task == "classification" else scores.reshape(len(scores), -1)
