"""Runs trained on the user's own Python objects: ``danlu.train(recipe, model=..., data=..., loss=...,
metrics=...)``. The recipe supplies everything else (optimizer, schedule, epochs, checkpoints,
monitors), and such a run saves, resumes, evaluates and predicts like any other:

* ``data`` (arrays, a DataFrame, a torch Dataset or DataLoader) goes through danlu.data's own
  checks, seeded split and pipeline (danlu.data._python); the run's recipe says ``data.source:
  python`` and the run keeps its split tensors (``data.safetensors``, checksummed), so resume and
  eval need nothing but the folder, and predict reads arrays or DataFrames (or files, via the pipeline).
  A streamed Dataset (``data.stream``) is not kept — that is the point of streaming it: the run keeps
  its split's item numbers (``data.rows.safetensors``) and, in its pipeline's reader, a fingerprint of
  the data (labels and a sample of items), and ``danlu.resume(run, data=dataset)`` is given the
  Dataset again, checked against the fingerprint; without it resume and eval refuse in one line.
* ``model`` (an ``nn.Module`` instance) cannot be rebuilt from a folder: the run's recipe says
  ``model: {kind: python, class: package.Class}``, and verbs that need the network are given it
  again (``danlu.resume(run, model=Net())``, ``danlu.evaluate(run, model=Net())``,
  ``danlu.predict(run, X, model=Net())``); without it they refuse in one line that says so. To use a
  model of your own from the command line, register it (``danlu.register_model``) in a module named
  under the recipe's ``plugins:``.
* ``loss`` (a callable ``loss(outputs, targets)``) is checked once on a tiny batch; the run records
  what its outputs are (logits, probabilities or values), so predictions need no code. Later
  ``danlu eval`` reports the recipe's loss beside the metrics.
* ``metrics`` (``{"name": fn(y_true, y_pred)}``) are computed for every split during this run
  (validation figures, early stopping, summary.json).
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from ..errors import CheckpointError, UserError
from ..recipe import Recipe
from . import _checkpoint as ck
from ._neural import NeuralRuns
from ._runs import Run

PYTHON = "python"            # data.source and model.kind of runs given Python objects
DATA_FILE = "data.safetensors"
ROWS_FILE = "data.rows.safetensors"   # a streamed Dataset's split: its item numbers per split
SPLITS = ("train", "validation", "test")


def python_objects(**given) -> dict:
    return {k: v for k, v in given.items() if v is not None}


def _model_class(model) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_model(model) -> None:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UserError(f"model must be a torch.nn.Module instance, got {type(model).__name__}; pass e.g. "
                        f"model=MyNet() (a recipe's model: section builds registered kinds)")


def train_with_objects(recipe: Recipe, run_dir, objects: dict, *, overwrite: bool, progress, callbacks, rows) -> Run:
    from .._extras import check_extras
    from ..evaluation._metrics import metrics_from_callables, metrics_in_use
    from ._runs import kind_of_recipe

    overrides = {}
    if "data" in objects:
        overrides["data.source"] = PYTHON
    if "model" in objects:
        _check_model(objects["model"])
        overrides["model"] = {"kind": PYTHON, "class": _model_class(objects["model"])}
    recipe = recipe.with_overrides(overrides) if overrides else recipe
    from ._runs import with_own_plugins

    recipe = with_own_plugins(recipe)
    check_extras(recipe)
    kind = kind_of_recipe(recipe)
    trained_by_the_loop = isinstance(kind, PythonRuns) or (isinstance(kind, NeuralRuns)
                                                           and type(kind).train is NeuralRuns.train)
    if not trained_by_the_loop:
        raise UserError(f"{recipe.source}: model=, data=, loss= and metrics= apply to networks trained by the loop; "
                        f"a {kind.name} run builds its own")
    prepared = None
    if "data" in objects:
        from ..data._python import prepare_python
        from ._session import with_positive

        prepared = with_positive(prepare_python(objects["data"], recipe.data, recipe.seed, recipe.source, rows=rows,
                                                batch_size=recipe.train.batch_size), recipe)
    metrics = objects.get("metrics")
    scope = nullcontext() if metrics is None else metrics_in_use(metrics_from_callables(metrics))
    with scope:
        return kind.train(recipe, run_dir, overwrite=overwrite, progress=progress, callbacks=list(callbacks or ()),
                          rows=rows if prepared is None else None, prepared=prepared,
                          objects={k: objects[k] for k in ("model", "loss") if k in objects})


def resume_with_model(run_dir: Path, recipe: Recipe, model, checkpoint, *, progress, callbacks,
                      force_foreign_checkpoint: bool, data=None) -> Run:
    """Resume a run given its Python model (``model``) and/or its streamed Dataset (``data``) again."""
    from .._extras import check_extras

    if model is not None:
        _check_model(model)
    check_extras(recipe)
    return PythonRuns(data).resume(run_dir, recipe, checkpoint, progress=progress, callbacks=list(callbacks or ()),
                                   force_foreign_checkpoint=force_foreign_checkpoint,
                                   objects={"model": model} if model is not None else {})


def predict_objects(run_dir: Path, X, *, quantized=None, model=None):
    """Predictions for rows given as arrays or a DataFrame: a DataFrame in, a DataFrame out (the
    rows' ids, the prediction and each class's probability); arrays in, a NumPy array of predictions
    out (class labels, or values)."""
    import numpy as np

    from ..data._python import _is_frame, rows_from_python
    from ._runs import kind_of_dir

    kind, recipe = kind_of_dir(run_dir)
    if not isinstance(kind, NeuralRuns):
        return kind.predict(run_dir, X, None, overwrite=False, quantized=quantized)   # refused in one line
    loaded = (kind.load_model(run_dir, recipe, "cpu", quantized, model) if model is not None
              else kind.load_model(run_dir, recipe, "cpu", quantized))
    net, pipeline, meta, recipe = loaded
    from ._neural import refuse_generative

    refuse_generative(run_dir, meta, recipe, "predict")
    inputs, given = rows_from_python(X, pipeline)
    answers = kind.answers(net, inputs, meta, pipeline, "the rows given", given)
    if _is_frame(X):
        import pandas as pd

        return pd.DataFrame(answers, index=X.index)   # the rows' own index: answers join back to them
    return np.asarray([a.get("prediction") if "prediction" in a else list(a.values()) for a in answers])


def _streamed(prepared) -> bool:
    from ..data._stream import StreamedArray

    return isinstance(prepared.splits["train"][0], StreamedArray)


class PythonRuns(NeuralRuns):
    """Runs whose data or model came from Python objects (see the module docstring)."""

    name = "python"

    def __init__(self, data=None):
        self.data = data   # a streamed run's Dataset, given again (danlu.resume(run, data=...))

    def prepare_data(self, recipe: Recipe, run_dir: Path | None = None, rows: dict | None = None):
        if recipe.data.source != PYTHON:
            if self.data is not None:
                raise UserError(f"{run_dir or recipe.source}: data= is for runs trained on a streamed Dataset; this "
                                f"run reads data.source: {recipe.data.source} itself — resume it without data=")
            return super().prepare_data(recipe, run_dir, rows)
        if run_dir is not None and (Path(run_dir) / ROWS_FILE).is_file():
            return self._streamed_data(Path(run_dir), recipe)
        if run_dir is None or not (Path(run_dir) / DATA_FILE).is_file():
            raise UserError(f"{recipe.source}: data.source: python means rows given to danlu.train(recipe, data=...) "
                            f"from Python; pass them there, or name a file source (csv, npy, images) in the recipe")
        if self.data is not None:
            raise UserError(f"{run_dir}: this run keeps the data it was trained on ({DATA_FILE}); resume it "
                            f"without data=")
        return self._stored_data(Path(run_dir), recipe)

    def _streamed_data(self, run_dir: Path, recipe: Recipe):
        """A streamed Dataset's run: the Dataset given again, checked against the run's fingerprint of
        it, split as the run was (its item numbers, kept in ROWS_FILE)."""
        import numpy as np
        from safetensors import SafetensorError
        from safetensors.torch import load as load_bytes

        from .. import _integrity as integrity
        from ..data._python import prepare_python
        from ._runfiles import load_pipeline
        from ._session import with_positive

        about = load_pipeline(run_dir).reader.get("python", {})
        if self.data is None:
            what = f"{about.get('type', 'Dataset')} {about.get('class', '')}".strip()
            raise UserError(f"{run_dir}: this run was trained on a streamed {what} of {about.get('rows', '?')} items, "
                            f"which a run does not keep; pass the same data again from Python: "
                            f"danlu.resume({str(run_dir)!r}, data=...) (a finished run's figures are in "
                            f"summary.json)")
        try:
            tensors = load_bytes(integrity.read_bytes(run_dir / ROWS_FILE))
        except SafetensorError as err:
            raise CheckpointError(f"{run_dir / ROWS_FILE}: cannot be read ({err}); the file is damaged") from None
        rows = {name: np.asarray(tensors[name].numpy(), dtype=np.int64) for name in SPLITS if name in tensors}
        prepared = prepare_python(self.data, recipe.data, recipe.seed, recipe.source, rows=rows,
                                  batch_size=recipe.train.batch_size, fingerprint=about.get("fingerprint", {}))
        return with_positive(prepared, recipe)

    def _stored_data(self, run_dir: Path, recipe: Recipe):
        from safetensors import SafetensorError
        from safetensors.torch import load as load_bytes

        from .. import _integrity as integrity
        from ..data._prepare import Prepared
        from ._runfiles import load_pipeline
        from ._session import with_positive

        pipeline = load_pipeline(run_dir)
        try:
            tensors = load_bytes(integrity.read_bytes(run_dir / DATA_FILE))
        except SafetensorError as err:
            raise CheckpointError(f"{run_dir / DATA_FILE}: cannot be read ({err}); the file is damaged") from None
        splits = {}
        for name in ("train", "validation", "test"):
            if f"{name}.X" in tensors:
                splits[name] = (tensors[f"{name}.X"], tensors[f"{name}.y"])
        if "train" not in splits:
            raise CheckpointError(f"{run_dir / DATA_FILE}: holds no training rows; the file is damaged")
        return with_positive(Prepared(pipeline.info, splits, pipeline), recipe)

    def write_run_files(self, path: Path, recipe: Recipe, prepared, rows) -> None:
        import torch

        super().write_run_files(path, recipe, prepared, rows)
        if recipe.data.source == PYTHON and _streamed(prepared):   # a Dataset left where it is: keep its split
            ck.atomic_save_tensors(path / ROWS_FILE, {name: torch.from_numpy(X.rows.astype("int64"))
                                                      for name, (X, _) in prepared.splits.items()})
        elif recipe.data.source == PYTHON:   # rows from memory: kept, so resume and eval need nothing else
            tensors = {}
            for name, (X, y) in prepared.splits.items():
                tensors[f"{name}.X"], tensors[f"{name}.y"] = X.contiguous(), y.contiguous()
            ck.atomic_save_tensors(path / DATA_FILE, tensors)

    def load_model(self, run_dir: Path, recipe: Recipe, device="cpu", quantized=None, model=None):
        if model is not None:
            _check_model(model)
        return super().load_model(run_dir, recipe, device, quantized, model)
