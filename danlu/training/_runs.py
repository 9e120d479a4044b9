"""Runs and their kinds: the verbs train, resume, evaluate, predict and load_model, for every kind.

A run kind is one way a recipe becomes a run directory — a network trained by the loop (the
core's ``neural`` kind), a scikit-learn estimator fitted once, a fine-tuned backbone, an agent in
an environment, an ensemble of runs. They share one protocol (:class:`RunKind`): build, fit,
checkpoint, resume, evaluate, predict — or refuse a verb in one line. Capabilities register their
kinds (:func:`register_run_kind`) with a cheap test of the recipe or the folder; the verbs below
ask the registry which kind a recipe or run directory is, and never name a capability.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import _integrity as integrity
from ..errors import UserError
from ..recipe import Recipe
from ._extend import resolve


class Run:
    """A finished run directory: its summary, and the verbs that use its model."""

    def __init__(self, path: str | Path, summary: dict | None = None):
        self.path = Path(path)
        self.summary = summary if summary is not None else integrity.read_json(self.path / "summary.json")

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __fspath__(self) -> str:   # a Run goes wherever a run directory does: danlu.predict(run, X)
        return str(self.path)

    def evaluate(self, split: str = "test", *, model=None) -> dict:
        return evaluate(self.path, split, model=model)

    def predict(self, data, output=None, overwrite=False, *, model=None):
        return predict(self.path, data, output, overwrite=overwrite, model=model)


class RunKind:
    """The protocol every kind of run follows. A verb a kind cannot do is refused in one line
    (a :class:`~danlu.errors.UserError`); these defaults refuse everything."""

    name = "run"
    resumable = True      # resume continues after a kill (False: resume refuses unless finished)
    predicts_rows = True  # predict answers rows of data (False: refused)

    def prepare_data(self, recipe: Recipe, run_dir: Path | None = None, rows: dict | None = None):
        raise UserError(f"{recipe.source}: a {self.name} run has no data set")

    def train(self, recipe: Recipe, run_dir, *, overwrite: bool, progress, callbacks, rows) -> Run:
        raise UserError(f"{recipe.source}: a {self.name} run is not made by `danlu train`")

    def resume(self, run_dir: Path, recipe: Recipe | None, checkpoint, *, progress, callbacks,
               force_foreign_checkpoint: bool) -> Run:
        raise UserError(f"{run_dir}: a {self.name} run cannot be resumed")

    def load_model(self, run_dir: Path, recipe: Recipe | None, device, quantized):
        raise UserError(f"{run_dir}: a {self.name} run holds no model of data rows")

    def evaluate(self, run_dir: Path, recipe: Recipe | None, split: str, quantized) -> dict:
        raise UserError(f"{run_dir}: a {self.name} run cannot be evaluated")

    def predict(self, run_dir: Path, data, output, *, overwrite: bool, quantized) -> list[dict]:
        raise UserError(f"{run_dir}: a {self.name} run makes no predictions for rows")


@dataclass(frozen=True)
class KindEntry:
    name: str
    impl: Any                                          # a RunKind class, or "package.module:Class"
    recipe: Callable[[Recipe], bool] | None = None     # is this recipe of the kind?
    folder: Callable[[Path], bool] | None = None       # is this folder of the kind (no recipe.yaml)?
    order: int = 50                                    # lower is asked first

    def kind(self) -> RunKind:
        return _instance(self.impl)


_KINDS: dict[str, KindEntry] = {}
_INSTANCES: dict[Any, RunKind] = {}


def _instance(impl) -> RunKind:
    if impl not in _INSTANCES:
        cls = resolve(impl)
        _INSTANCES[impl] = cls() if isinstance(cls, type) else cls
    return _INSTANCES[impl]


def register_run_kind(name: str, impl, *, recipe: Callable[[Recipe], bool] | None = None,
                      folder: Callable[[Path], bool] | None = None, order: int = 50) -> None:
    """Register a kind of run: ``impl`` a :class:`RunKind` (or ``"module:Class"``, loaded on first
    use); ``recipe(recipe)`` says whether a recipe makes such a run, ``folder(path)`` whether a
    folder without recipe.yaml is one. The core's ``neural`` kind answers everything else."""
    _KINDS[name] = KindEntry(name, impl, recipe, folder, order)


def run_kinds() -> dict[str, KindEntry]:
    """Every registered kind (the built-in capabilities' and plugins' included)."""
    from .. import _plugins

    _plugins.load_builtin()
    return dict(sorted(_KINDS.items(), key=lambda kv: (kv[1].order, kv[0])))


def kind_of_recipe(recipe: Recipe) -> RunKind:
    for entry in run_kinds().values():
        if entry.recipe is not None and entry.recipe(recipe):
            return entry.kind()
    return _KINDS["neural"].kind()


# The run directory a verb is working on, with its kind and recipe, while that verb runs: the
# kind's own method asks kind_of_dir again (e.g. predict -> load_model) and gets them without
# reading and checking recipe.yaml a second time.
_CURRENT_RUN: ContextVar[tuple[Path, RunKind, Recipe | None] | None] = ContextVar("danlu_current_run", default=None)


def kind_of_dir(run_dir: Path) -> tuple[RunKind, Recipe | None]:
    """The kind of a run directory and its recipe (None for folders that have none, e.g. ensembles)."""
    from ._runfiles import read_run_recipe

    run_dir = Path(run_dir)
    current = _CURRENT_RUN.get()
    if current is not None and current[0] == run_dir:
        return current[1], current[2]
    if not (run_dir / "recipe.yaml").is_file():
        for entry in run_kinds().values():
            if entry.folder is not None and entry.folder(run_dir):
                return entry.kind(), None
    recipe = read_run_recipe(run_dir)   # says in one line what is missing or damaged
    return kind_of_recipe(recipe), recipe


register_run_kind("neural", "danlu.training._neural:NeuralRuns", order=100)   # what no other kind claims
register_run_kind("python", "danlu.training._python:PythonRuns", order=90,   # model= / data= given in Python
                  recipe=lambda r: r["data"]["source"] == "python" or r["model"]["kind"] == "python")


# ---------------------------------------------------------------------------------------------
# The verbs
# ---------------------------------------------------------------------------------------------

def train(recipe: Recipe | dict | str | Path, run_dir: str | Path | None = None, *, overwrite: bool = False,
          progress: str | None = None, callbacks=None, rows: dict | None = None, model=None, data=None,
          loss=None, metrics=None) -> Run:
    """Train a recipe into a new run directory and return the finished :class:`Run`.

    ``recipe``: a :class:`Recipe`, a dict or the path of a YAML file. ``rows`` (split name -> row
    indices, see ``danlu.data.labelled_rows``) replaces the recipe's seeded split; it is saved as
    ``rows.json`` so that resume, eval and predict see the same split. ``callbacks``: extra
    callbacks for this run (danlu-style ``on_<event>(state)`` or Keras-style).

    Your own Python objects (the recipe supplies everything else): ``model`` an ``nn.Module``,
    ``data`` NumPy arrays ``(X, y)``, a pandas DataFrame, a torch ``Dataset`` or ``DataLoader``,
    ``loss`` a callable ``loss(outputs, targets)``, ``metrics`` a dict of ``name -> fn(y_true,
    y_pred)``. See :mod:`danlu.training._python` for how such runs are saved and reloaded.
    """
    from ._python import python_objects, train_with_objects

    objects = python_objects(model=model, data=data, loss=loss, metrics=metrics)
    recipe = as_recipe(recipe, {"data.source": "python"} if data is not None else None)
    if objects:
        return train_with_objects(recipe, run_dir, objects, overwrite=overwrite, progress=progress,
                                  callbacks=callbacks, rows=rows)
    from .._extras import check_extras

    recipe = with_own_plugins(recipe)
    check_extras(recipe)   # a missing optional package stops the run before anything is written
    return kind_of_recipe(recipe).train(recipe, run_dir, overwrite=overwrite, progress=progress,
                                        callbacks=list(callbacks or ()), rows=rows)


def with_own_plugins(recipe: Recipe) -> Recipe:
    """The recipe with the modules that registered its model kind and loss added to ``plugins:``,
    so that the run's recipe.yaml rebuilds them in any later process (`danlu eval` of a run whose
    model was registered from Python). Only modules importable by name count: a kind registered in
    ``__main__`` or a notebook cannot be found again, and a later command says how to fix that."""
    import importlib.util
    import sys

    from ..models import MODELS
    from ._factory import loss_origin

    entry = MODELS.get(recipe.model.kind)
    found = [getattr(entry.builder, "__module__", None) if entry is not None else None,
             loss_origin(recipe.loss.kind)]
    have = list(recipe.get("plugins") or [])
    for module in found:
        if not module or module in have or module == "__main__" or module.split(".")[0] == "danlu":
            continue
        try:
            importable = module in sys.modules or importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            importable = False
        if importable:
            have.append(module)
    if have == list(recipe.get("plugins") or []):
        return recipe
    return recipe.with_overrides({"plugins": have})


def as_recipe(recipe, overrides: dict | None = None) -> Recipe:
    """A validated recipe from a Recipe, a dict or a YAML path, with ``{"key.path": value}`` set first."""
    if isinstance(recipe, Recipe):
        return recipe.with_overrides(overrides) if overrides else recipe
    if isinstance(recipe, (str, Path)):
        return Recipe.from_yaml(recipe, [f"{k}={v}" for k, v in (overrides or {}).items()])
    if isinstance(recipe, dict):
        import copy

        data = copy.deepcopy(recipe)
        for key, value in (overrides or {}).items():
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else node
            node[last] = value
        return Recipe.from_dict(data)
    raise UserError(f"recipe must be a danlu.Recipe, a dict or the path of a YAML file; got {type(recipe).__name__}")


def resume(run_dir: str | Path, checkpoint: str | None = None, *, progress: str | None = None,
           callbacks=None, force_foreign_checkpoint: bool = False, model=None, data=None) -> Run:
    """Continue a run from its newest checkpoint (or the one named); a finished run is left as it is.

    A checkpoint written by another run is refused unless ``force_foreign_checkpoint``. A run
    trained on a Python model object needs that model again (``model=``); one trained on a streamed
    torch Dataset, which the run does not keep, needs that Dataset again (``data=``)."""
    from .._extras import check_extras

    run_dir = Path(run_dir)
    kind, recipe = kind_of_dir(run_dir)
    if recipe is not None:
        check_extras(recipe)
    if model is not None or data is not None:
        from ._python import resume_with_model

        return resume_with_model(run_dir, recipe, model, checkpoint, progress=progress, callbacks=callbacks,
                                 force_foreign_checkpoint=force_foreign_checkpoint, data=data)
    return kind.resume(run_dir, recipe, checkpoint, progress=progress, callbacks=list(callbacks or ()),
                       force_foreign_checkpoint=force_foreign_checkpoint)


def _given_model(kind: RunKind, run_dir: Path, model):
    """A run trained on a Python model object gets it back through ``model=``."""
    from ._python import PythonRuns

    if not isinstance(kind, PythonRuns):
        raise UserError(f"{run_dir}: model= is for runs trained on a Python model object; this {kind.name} run "
                        f"rebuilds its own model from its folder")
    return kind


def load_model(run_dir: str | Path, device="cpu", quantized: str | Path | None = None, *, model=None):
    """(model, pipeline, meta, recipe) of a finished run, every file read only if it matches its
    checksum in the run's manifest.json (danlu._integrity) — or its quantized model in
    ``quantized`` (a folder written by ``danlu quantize``). ``model``: the network of a run trained
    on a Python model object, to load the weights into."""
    run_dir = Path(run_dir)
    kind, recipe = kind_of_dir(run_dir)
    if model is not None:
        return _given_model(kind, run_dir, model).load_model(run_dir, recipe, device, quantized, model)
    return kind.load_model(run_dir, recipe, device, quantized)


def evaluate(run_dir: str | Path, split: str = "test", quantized: str | Path | None = None, *, model=None) -> dict:
    """Metrics of a finished run's model (or its quantized version) on one split (or ``all``)."""
    if split not in ("train", "validation", "test", "all"):
        raise UserError(f"--split must be train, validation, test or all; got {split!r}")
    run_dir = Path(run_dir)
    kind, recipe = kind_of_dir(run_dir)
    if model is not None:
        return _given_model(kind, run_dir, model).evaluate(run_dir, recipe, split, quantized, model)
    return kind.evaluate(run_dir, recipe, split, quantized)


def predict(run_dir: str | Path, data, output: str | Path | None = None, *, overwrite: bool = False,
            quantized: str | Path | None = None, model=None):
    """Predictions for new rows. ``data``: the path of a file (CSV, .npy, .npz, images) — then a list
    of row dicts, with class probabilities for classifiers, also written as CSV to ``output`` (an
    existing file is kept unless ``overwrite``) — or NumPy arrays / a pandas DataFrame, answered in
    kind (a DataFrame with the prediction and class probabilities, or an array of predictions).
    ``model``: the network of a run trained on a Python model object."""
    run_dir = Path(run_dir)
    if not isinstance(data, (str, Path)):
        from ._python import predict_objects

        if model is not None:
            _given_model(kind_of_dir(run_dir)[0], run_dir, model)
        return predict_objects(run_dir, data, quantized=quantized, model=model)
    kind, recipe = kind_of_dir(run_dir)
    if model is not None:
        raise UserError("model= with a file to predict: load the run with danlu.load_model(run, model=...) and "
                        "predict arrays or a DataFrame, e.g. danlu.predict(run, X, model=...)")
    token = _CURRENT_RUN.set((run_dir, kind, recipe))
    try:
        return kind.predict(run_dir, data, output, overwrite=overwrite, quantized=quantized)
    finally:
        _CURRENT_RUN.reset(token)


def prepare_run_data(recipe: Recipe, run_dir: str | Path | None = None, rows: dict | None = None):
    """The recipe's data, split by its seed — or by the row indices a run was trained on
    (``rows.json`` in the run directory, written for cross-validation folds)."""
    return kind_of_recipe(recipe).prepare_data(recipe, Path(run_dir) if run_dir is not None else None, rows)
