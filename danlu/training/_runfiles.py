"""A run directory's files: its recipe, row split, data pipeline and model description — read only
when they match their checksums (danlu._integrity) and written atomically; and where a new run goes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .. import _integrity as integrity
from .. import _rundir
from ..errors import CheckpointError, UserError
from ..recipe import Recipe
from . import _checkpoint as ck

RUN_FILES = ("recipe.yaml", "pipeline.json", "pipeline.safetensors", "model.json", "model.safetensors",
             "summary.json", "metrics.jsonl", "events.jsonl")


def plan_run_dir(recipe: Recipe, run_dir: str | Path | None, overwrite: bool) -> _rundir.Target:
    """Where the run goes, checked before anything is written (one rule for every folder danlu
    writes, see danlu._rundir): an explicit run directory that holds anything is refused unless
    ``overwrite``, and then only one danlu created is replaced; the default ``runs/<name>`` gets a
    numbered suffix instead, so no earlier run is ever replaced."""
    keep = [recipe.data.path] if recipe.data.path else []   # a data file inside the folder survives
    return _rundir.plan_dir(run_dir, default=Path(recipe.output.runs_dir) / (recipe.name or "run"),
                            overwrite=overwrite, flag="--run-dir", kind="run", keep=keep)


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
    from ..data._pipeline import META_FILE, TENSOR_FILE

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

    from ..data import Pipeline
    from ..data._pipeline import META_FILE, TENSOR_FILE

    meta = integrity.read_json(run_dir / META_FILE)
    try:
        tensors = load_bytes(integrity.read_bytes(run_dir / TENSOR_FILE))
    except SafetensorError as err:
        raise CheckpointError(f"{run_dir / TENSOR_FILE}: cannot be read ({err}); the file is damaged") from None
    try:
        return Pipeline.from_state(meta, tensors)
    except CheckpointError as err:
        raise CheckpointError(f"{run_dir / META_FILE}: {err}") from None


def read_run_recipe(run_dir: Path) -> Recipe:
    run_dir = Path(run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise UserError(f"{run_dir}: not a danlu run directory (no recipe.yaml); give the folder that "
                        f"`danlu train` created, e.g. runs/<name>")
    integrity.verify(run_dir / "recipe.yaml")   # the run's own recipe, as it wrote it
    return Recipe.from_yaml(run_dir / "recipe.yaml")


_META_TYPES = {"loss_kind": str, "info": dict, "model": dict}
_CLASSICAL_META_TYPES = {**_META_TYPES, "kind": str, "estimator": str, "sha256": str, "file": str}
_SAME_INFO = ("task", "kind", "input_shape", "n_classes", "classes", "n_targets")


def read_model_meta(run_dir: Path, classical_run: bool = False) -> tuple[dict, Any]:
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


def write_csv(rows: list[dict], path: Path) -> None:
    import csv
    import io

    buf = io.StringIO()
    if rows:
        fields = list(rows[0])
        writer = csv.writer(buf)
        writer.writerow(fields)
        if all(list(row) == fields for row in rows):   # the usual case, without DictWriter's checks per row
            writer.writerows(row.values() for row in rows)
        else:
            csv.DictWriter(buf, fieldnames=fields).writerows(rows)
    if str(path) == "-":
        sys.stdout.write(buf.getvalue())
        return
    with _rundir.writing_file(path):   # a failed write leaves no temporary file and no new folder
        ck.atomic_write_text(path, buf.getvalue())
