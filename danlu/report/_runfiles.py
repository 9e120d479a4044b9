"""What a run directory holds, read once and tolerantly.

A report is also wanted for runs that were killed or are still going, so a missing file is
an empty value here, not an error, and a JSON line cut by a kill is skipped. Only a folder that
is not a run at all (no recipe.yaml) is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .._jsonl import read_jsonl
from ..errors import UserError


@dataclass
class RunFiles:
    path: Path
    recipe_text: str
    recipe: object                      # danlu.recipe.Recipe
    summary: dict = field(default_factory=dict)
    history: list = field(default_factory=list)       # metrics.jsonl, one dict per epoch
    events: list = field(default_factory=list)        # events.jsonl
    grad_norms: list = field(default_factory=list)    # grad_norms.jsonl (gradient monitor)

    @property
    def finished(self) -> bool:
        return bool(self.summary) and any((self.path / name).is_file() for name in MODEL_FILES)

    @property
    def model_meta(self) -> dict:
        """model.json: how the model was saved (``objective`` and ``unsupervised`` runs among them)."""
        return _read_json(self.path / "model.json")

    @property
    def own_pictures(self) -> bool:
        """Runs that draw their own pictures (samples, latent maps, clusters, components) instead of
        predicting labels that a confusion matrix or ROC curve could judge."""
        meta = self.model_meta
        return bool(meta.get("objective") or meta.get("unsupervised") or meta.get("rl"))

    @property
    def name(self) -> str:
        return self.recipe.name or self.path.name


MODEL_FILES = ("model.safetensors", "model.skops")   # neural and classical models


def read_run(run_dir: str | Path) -> RunFiles:
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"{path}: no such run directory; give the folder that `danlu train` created, "
                        f"e.g. runs/<name>")
    from ..training import read_run_recipe  # torch: only once there is a run to read

    recipe = read_run_recipe(path)
    return RunFiles(
        path=path,
        recipe_text=(path / "recipe.yaml").read_text(encoding="utf-8"),
        recipe=recipe,
        summary=_read_json(path / "summary.json"),
        history=read_jsonl(path / "metrics.jsonl"),
        events=read_jsonl(path / "events.jsonl"),
        grad_norms=read_jsonl(path / "grad_norms.jsonl"),
    )


def _read_json(path: Path) -> dict:
    from .._integrity import read_json

    if not path.is_file():
        return {}   # not written yet: an unfinished run
    return read_json(path)   # refused unless it matches its checksum (writes are atomic: never cut)


def number(value) -> float:
    """A logged value as a float: the monitors write inf/NaN as strings; anything else is NaN."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x
