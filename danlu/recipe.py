"""The recipe: one typed, validated description of a run.

The schema below is the single place where a key's type, default and allowed range live
(builders trust it); the machinery that checks a value against it (fields, unions, item ranges,
cross-key rules) is danlu._validate. Capabilities add their sections with :func:`register_section`. A recipe is plain nested data — YAML on disk, dicts in Python — checked
once by :func:`Recipe.from_dict` before any work starts. Errors name the source, the key path
and the fix, e.g. ``r.yaml: optimizer.lr must be > 0, got -0.1``.

This module imports neither torch nor numpy, so that the command line stays fast.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ._validate import (NUM, Field, Node, Rule, Section, _check_section, _f, _freeze, _thaw, check_section,  # noqa: F401
                        sizes, union)
from .errors import RecipeError, did_you_mean


# ---------------------------------------------------------------------------------------------
# Schema. Each block is owned by the module that consumes it (named in the comment).
# ---------------------------------------------------------------------------------------------

# danlu/data
AUGMENT = Section({
    "shift": _f(int, 0, min=0, doc="random shift of images by up to this many pixels"),
    "rotate": _f(NUM, 0.0, min=0, max=180, doc="random rotation of images by up to this many degrees"),
    "hflip": _f(bool, False, doc="random horizontal flip"),
    "vflip": _f(bool, False, doc="random vertical flip"),
    "noise": _f(NUM, 0.0, min=0, doc="std of Gaussian noise added to training inputs (noise injection)"),
})

SPLIT = Section({
    "validation": _f(NUM, 0.15, min=0, max=0.9, doc="fraction of rows for the validation set"),
    "test": _f(NUM, 0.15, min=0, max=0.9, doc="fraction of rows for the test set"),
    "stratify": _f(bool, True, doc="keep class proportions in every split (classification)"),
}, rules=(
    Rule(keys=("validation", "test"), check=lambda validation, test: validation + test < 0.95,
         message="data.split.validation + data.split.test must leave rows to train on, got {0} + {1}; "
                 "keep their sum below 0.95"),
))

DATA = Section({
    "source": _f(str, "sklearn", choices=("sklearn", "csv", "parquet", "npy", "images", "sequence", "python"),
                 nullable=False, doc="where rows come from (python: given to danlu.train(data=...) as Python "
                                     "objects; the run keeps its split tensors)"),
    "name": _f(str, None, doc="built-in data set (sklearn: digits, iris, breast_cancer, diabetes, wine; "
                               "sequence: sum, trend, parity)"),
    "path": _f(str, None, doc="file or folder for csv / parquet / npy / images"),
    "features": _f(list, None, item=(str, int), doc="feature columns (csv: names; npy: indices; npz: one array key)"),
    "label": _f((str, int, list), None, item=str,
                doc="label column (csv: name, default last; npy: index; npz: array key, default y); "
                    "data.task multilabel: a list of 0/1 label columns"),
    "categorical": union(Field(str, choices=("auto",), doc="'auto'"), Field(list, item=str), default="auto",
                         doc="'auto' to detect, or a list of categorical columns"),
    "task": _f(str, "auto", choices=("auto", "classification", "regression", "multilabel"), nullable=False,
               doc="multilabel: several 0/1 label columns (data.label lists them), a sigmoid output each"),
    "positive_class": _f((str, int), None, doc="binary classification: the class that precision, recall, F1 and "
                                               "ROC-AUC are about; null: the second class in sorted order "
                                               "(as scikit-learn)"),
    "shape": sizes(least=1, most=3, doc="reshape each row to this shape, e.g. [1, 8, 8]"),
    "image_size": sizes(2, doc="[height, width] images are resized to"),
    "grayscale": _f(bool, True, doc="read images as one channel"),
    "length": _f(int, 20, min=2, doc="sequence length for generated sequence tasks"),
    "samples": _f(int, 2000, min=10, doc="number of rows for generated data"),
    "impute": _f(str, "none", choices=("none", "mean", "median", "most_frequent", "drop"), nullable=False,
                 doc="what to do with missing values"),
    "scale": _f(str, "standardize", choices=("none", "standardize", "normalize"), nullable=False,
                doc="feature scaling fitted on the training split only"),
    "scale_target": _f(bool, True, doc="regression: learn the standardised target (predictions stay in "
                                       "original units)"),
    "stream": union(Field(str, choices=("auto",), doc="'auto'"), Field(bool), default="auto",
                    doc="read .npy/.npz, CSV and Parquet rows from disk batch by batch instead of loading them "
                        "whole: true, false, or auto (when the features would take more than a quarter of the "
                        "free memory)"),
    "workers": _f(int, 0, min=0, max=256, nullable=False,
                  doc="streamed data: DataLoader worker processes that read the next batches while the model "
                      "trains (pinned memory on CUDA); 0 reads them in the training process. Data in memory "
                      "is indexed in process whatever this says"),
    "split": SPLIT,
    "augment": AUGMENT,
})

# danlu/models — the keys of each kind come from the model registry (models/_registry.py).
MODEL_COMMON = {
    "kind": _f(str, "mlp", nullable=False, doc="model type: linear, logistic, perceptron, mlp, cnn, rnn or a registered name"),
}


#: The schema side of the model registry: kind name -> its recipe keys (None: any keys). Filled by
#: danlu.models.register_model, by the built-in kinds and by plugins; the builders live there.
MODEL_KINDS: dict[str, Mapping[str, Any] | None] = {}


def _model_kinds():
    from . import _plugins

    _plugins.load_builtin()   # the shipped kinds and installed packages' plugins register themselves
    return dict(MODEL_KINDS)


MODEL = Section(MODEL_COMMON, by_kind=_model_kinds, unlisted=("python",),
                unknown_hint="; a model of your own: register it with danlu.register_model in a module of yours "
                             "and name that module under plugins: in the recipe (plugins: [my_models])")

# danlu/training/_factory.py
BUILTIN_LOSSES = ("auto", "mse", "mae", "huber", "cross_entropy", "bce", "exponential", "hinge")
#: The losses loss.class_weights applies to (auto: when the task is classification).
CLASS_WEIGHTED_LOSSES = ("auto", "cross_entropy", "bce", "exponential", "hinge")
#: The schema side of the loss registry: names added by danlu.training.register_loss (plugins).
LOSS_KINDS: set[str] = set()


def _known_loss(kind) -> bool:
    return kind in BUILTIN_LOSSES or kind in LOSS_KINDS


def _unknown_loss(kind) -> str:
    known = [*BUILTIN_LOSSES, *sorted(LOSS_KINDS)]
    return (f"must be one of {', '.join(known)}; got {kind!r}{did_you_mean(kind, known)} (a loss of your own: "
            f"register it with danlu.training.register_loss in a module listed under plugins:)")


LOSS = Section({
    "kind": _f(str, "auto", nullable=False, rules=(Rule(check=_known_loss, message=_unknown_loss),),
               doc="auto: cross_entropy for classification, mse for regression; or a registered loss"),
    "label_smoothing": _f(NUM, 0.0, min=0, max=0.99),
    "delta": _f(NUM, 1.0, min=0, min_exclusive=True, doc="Huber threshold"),
    "class_weights": union(Field(str, choices=("auto",), doc="'auto'"),
                           Field(list, item=Field(NUM, min=0, min_exclusive=True, nullable=False), min_items=1),
                           doc="classification: null (none), 'auto' (n_train / (n_classes * rows of the class), "
                               "scikit-learn's 'balanced') or one weight > 0 per class, in sorted label order"),
}, rules=(
    Rule(keys=("kind", "class_weights"),
         check=lambda kind, weights: weights is None or kind in CLASS_WEIGHTED_LOSSES,
         message=lambda kind, weights: f"loss.class_weights applies to the built-in classification losses "
                                       f"({', '.join(CLASS_WEIGHTED_LOSSES)}), not loss.kind {kind}; "
                                       f"remove loss.class_weights"),
))

OPTIMIZER = Section({
    "kind": _f(str, "adam", choices=("sgd", "adagrad", "rmsprop", "adam", "adamw"), nullable=False),
    "lr": _f(NUM, 1e-3, min=0, min_exclusive=True, nullable=False, doc="learning rate"),
    "momentum": _f(NUM, 0.0, min=0, max=1),
    "nesterov": _f(bool, False),
    "weight_decay": _f(NUM, 0.0, min=0),
    "betas": _f(list, None, item=Field(NUM, min=0, max=1, max_exclusive=True, nullable=False), min_items=2,
                max_items=2, doc="Adam's (beta1, beta2); null: torch's defaults"),
    "alpha": _f(NUM, 0.99, min=0, max=1, doc="RMSProp smoothing constant"),
    "eps": _f(NUM, None, min=0, min_exclusive=True),
}, rules=(
    Rule(keys=("kind", "nesterov", "momentum"),
         check=lambda kind, nesterov, momentum: kind != "sgd" or not nesterov or momentum > 0,
         message="optimizer.nesterov needs optimizer.momentum > 0, got {2}; set optimizer.momentum: 0.9 or "
                 "optimizer.nesterov: false"),
))

SCHEDULE = Section({
    "kind": _f(str, "constant", choices=("constant", "linear", "cosine", "exponential", "step", "multistep",
                                         "onecycle", "plateau"), nullable=False),
    "warmup_epochs": _f(NUM, 0, min=0, doc="linear warmup length in epochs (fractions allowed)"),
    "warmup_steps": _f(int, 0, min=0, doc="linear warmup length in steps (added to warmup_epochs)"),
    "gamma": _f(NUM, 0.1, min=0, max=1, min_exclusive=True, doc="decay factor (exponential: per epoch)"),
    "step_size": _f(NUM, 10, min=0, min_exclusive=True, doc="epochs between decays (step)"),
    "milestones": _f(list, None, item=NUM, doc="epochs at which to decay (multistep)"),
    "min_lr": _f(NUM, 0.0, min=0, doc="floor of linear / cosine decay"),
    "max_lr": _f(NUM, None, min=0, min_exclusive=True, doc="peak of one-cycle (default 10x lr)"),
    "cycle_momentum": _f(bool, True, doc="one-cycle: momentum (or Adam's beta1) from 0.95 down to 0.85 at the "
                                         "peak and back, as PyTorch's OneCycleLR"),
    "patience": _f(int, 3, min=0, doc="epochs without improvement before plateau decay"),
    "factor": _f(NUM, 0.5, min=0, max=1, min_exclusive=True, doc="plateau decay factor"),
}, rules=(
    Rule(keys=("kind", "milestones"), check=lambda kind, milestones: kind != "multistep" or bool(milestones),
         message="schedule.milestones is required for schedule.kind multistep, e.g. [10, 20]"),
))

PRECISIONS = ("32", "bf16-mixed", "16-mixed")   # danlu/training/_precision.py

# danlu/training/_loop.py
EARLY_STOPPING = Section({
    "enabled": _f(bool, True),
    "monitor": _f(str, "val_loss", doc="val_loss or val_<metric>"),
    "mode": _f(str, "auto", choices=("auto", "min", "max"), nullable=False),
    "patience": _f(int, 10, min=0),
    "min_delta": _f(NUM, 0.0, min=0),
    "restore_best": _f(bool, True),
})

TRAIN = Section({
    "epochs": _f(int, 20, min=1, nullable=False),
    "batch_size": _f(int, 64, min=1, nullable=False),
    "grad_clip": _f(NUM, None, min=0, min_exclusive=True, doc="clip gradients to this norm (or value)"),
    "grad_clip_mode": _f(str, "norm", choices=("norm", "value"), nullable=False),
    "accumulate": _f(int, 1, min=1, doc="gradient accumulation: optimizer step every N batches"),
    "ema": _f(NUM, None, min=0, max=1, max_exclusive=True,
              doc="decay of an exponential moving average of the weights (e.g. 0.999), which validation, the "
                  "final figures and model.safetensors use; null: off"),
    "early_stopping": EARLY_STOPPING,
    "deterministic": _f(bool, True, doc="ask torch for deterministic kernels"),
    # danlu/training/_precision.py
    "precision": union(Field(int, choices=(32,), doc="32"),   # as YAML reads it; "32" written as text too
                       Field(str, choices=PRECISIONS, doc="bf16-mixed or 16-mixed"), default=32, nullable=False,
                       doc="32 (float32), bf16-mixed (autocast to bfloat16; CPU and CUDA) or 16-mixed (autocast "
                           "to float16 with a gradient scaler; CUDA only); saved weights stay float32"),
    "compile": _f(bool, False, doc="run the training forward through torch.compile (eager, with a warning "
                                   "line, where it cannot compile)"),
})

CHECKPOINT = Section({
    "every_epochs": _f(int, 1, min=0, doc="save every N epochs (0: never)"),
    "every_steps": _f(int, 0, min=0, doc="also save every N optimizer steps (0: never)"),
    "keep_last": _f(int, 2, min=1),
    "keep_best": _f(bool, True),
})

LOGGERS = ("tensorboard", "mlflow")   # danlu/training/_loggers.py

OUTPUT = Section({
    "runs_dir": _f(str, "runs", nullable=False),
    "progress": _f(str, "auto", choices=("auto", "bar", "lines", "none"), nullable=False),
    "loggers": _f(list, None, item=Field(str, choices=LOGGERS, nullable=False),
                  doc="also log scalars and diagnoses to: tensorboard (RUN/tensorboard/), "
                      "mlflow (a store in RUN/mlflow/ unless output.mlflow_uri is set)"),
    "mlflow_uri": _f(str, None, doc="MLflow tracking URI (e.g. http://localhost:5000, sqlite:///mlflow.db); "
                                    "null: a SQLite store in RUN/mlflow/"),
    "mlflow_experiment": _f(str, "danlu", nullable=False, doc="MLflow experiment the run is logged under"),
})



def _plain_folder_name(name: str) -> bool:
    return (bool(name.strip()) and name not in (".", "..") and not any(c in name for c in "/\\")
            and not any(ord(c) < 32 for c in name) and not Path(name).is_absolute())


# A run's name becomes one folder below output.runs_dir: it may not leave it.
RUN_NAME = Rule(check=_plain_folder_name,
                message="must be a plain folder name (no / or \\, not '.' or '..', not empty), since the run goes "
                        "to output.runs_dir/<name>; got {0!r}; e.g. name: iris_mlp")


#: Rules over the whole recipe; capabilities add theirs with their sections (register_section).
RECIPE_RULES: list[Rule] = [
    Rule(keys=("data.source", "data.path"),
         check=lambda source, path: source not in ("csv", "parquet", "npy", "images") or bool(path),
         message="data.path is required when data.source is {0}"),
    Rule(keys=("data.source", "data.name", ""),   # a run kind without a data set (an agent) needs no name
         check=lambda source, name, recipe: source not in ("sklearn", "sequence") or bool(name) or _dataless(recipe),
         message="data.name is required when data.source is {0} (e.g. digits)"),
]

_CORE_RULES = len(RECIPE_RULES)

#: Predicates over a checked recipe (dict): runs that use no data set (registered by their capability).
DATALESS: list[Callable[[dict], bool]] = []


def _dataless(recipe: dict) -> bool:
    return any(applies(recipe) for applies in DATALESS)


def register_section(name: str, section: Section, *, rules=(), dataless: Callable[[dict], bool] | None = None) -> None:
    """A capability's own recipe section (``quant:``, ``env:``, ...), validated like the core's, with
    rules over the whole recipe; ``dataless(recipe)``: recipes of it that use no data set."""
    if name in RECIPE.fields and RECIPE.fields[name] is not section:
        raise ValueError(f"recipe section {name!r} is already registered")
    RECIPE.fields[name] = section
    for rule in rules:   # before the core's data rules: the more specific message wins
        if rule not in RECIPE_RULES:
            RECIPE_RULES.insert(len(RECIPE_RULES) - _CORE_RULES, rule)
    if dataless is not None and dataless not in DATALESS:
        DATALESS.append(dataless)


RECIPE = Section({
    "plugins": _f(list, None, item=str, doc="modules of your own to import before the recipe is checked "
                                            "(they register models, losses, metrics, callbacks), e.g. [my_models]"),
    "name": _f(str, None, doc="run name; default: the recipe file's stem", rules=(RUN_NAME,)),
    "seed": _f(int, 0, min=0, max=2**32 - 1, nullable=False,
               doc="one seed fixes splits, initial weights and batch order (0 to 2**32 - 1)"),
    "device": _f(str, "auto", choices=("auto", "cpu", "cuda"), nullable=False),
    "data": DATA,
    "model": MODEL,
    "loss": LOSS,
    "optimizer": OPTIMIZER,
    "schedule": SCHEDULE,
    "train": TRAIN,
    "checkpoint": CHECKPOINT,
    "output": OUTPUT,
    # then the capabilities' sections (monitors, quant, lora, base, env, rl), added by register_section
}, rules=RECIPE_RULES)


def schema() -> Section:
    """The whole recipe schema: the core's sections and those the capabilities and plugins register
    (they are loaded first). Read this rather than RECIPE, which holds only what has registered so far."""
    from . import _plugins

    _plugins.load_builtin()
    return RECIPE


class Recipe(Node):
    """A validated recipe. Build with ``Recipe.from_yaml(path)`` or ``Recipe.from_dict({...})``."""

    source: str

    @classmethod
    def from_dict(cls, data: Mapping | None = None, source: str = "recipe", **kwargs) -> "Recipe":
        data = _thaw(dict(data or {})) | kwargs
        from . import _plugins

        near = Path(source).parent if source.endswith((".yaml", ".yml")) else None
        _plugins.load(data.get("plugins"), source=source, near=near)   # before the kinds they register are checked
        checked = _check_section(RECIPE, data, "", source)
        _cap_epochs(checked)
        recipe = cls(_freeze(checked))
        dict.__setattr__(recipe, "source", source)
        return recipe

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "Recipe":
        path = Path(path)
        if path.is_dir():
            raise RecipeError(f"{path}: is a directory, expected a recipe file; give the path of a .yaml recipe "
                              f"(examples are in recipes/)")
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found; give the path of a .yaml recipe "
                              f"(examples are in recipes/)")
        data = load_yaml(path, keep_text=True)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: a recipe must be a mapping of keys at the top level")
        data = apply_overrides(data, overrides or [], str(path))
        data.setdefault("name", path.stem)
        _resolve_data_path(data, path.parent)
        return cls.from_dict(data, source=str(path))

    def with_overrides(self, overrides: list[str] | Mapping[str, Any]) -> "Recipe":
        """A new validated recipe with some keys changed: ``{"optimizer.lr": 0.01}`` (values kept
        as they are) or ``["optimizer.lr=0.01"]`` (values read as YAML, as ``--set`` does)."""
        data = self.to_dict()
        if isinstance(overrides, Mapping):
            for key, value in overrides.items():
                _set_path(data, key, copy.deepcopy(value), f"{key}={value!r}")
        else:
            data = apply_overrides(data, list(overrides), self.source)
        return Recipe.from_dict(data, source=self.source)

    def to_dict(self) -> dict:
        return _thaw(self)

    def to_yaml(self) -> str:
        from ._yaml import dumps

        return dumps(self.to_dict())   # text that reads as a number (name: '1e3') is quoted


MAX_EPOCHS_VAR = "DANLU_MAX_EPOCHS"


def _cap_epochs(checked: dict) -> None:
    """Smoke tests: ``DANLU_MAX_EPOCHS=N`` caps every recipe's train.epochs at N, so that commands
    run as written but quickly (the README test sets it to 1). The one place danlu reads it."""
    import os

    text = os.environ.get(MAX_EPOCHS_VAR, "").strip()
    if not text:
        return
    if not text.isdigit() or int(text) < 1:
        raise RecipeError(f"environment: {MAX_EPOCHS_VAR} must be a whole number >= 1, got {text!r}; "
                          f"unset it to train for the recipe's train.epochs")
    checked["train"]["epochs"] = min(checked["train"]["epochs"], int(text))


def _resolve_data_path(data: dict, recipe_dir: Path) -> None:
    """A relative data.path means the working directory's file if there is one, else the one beside
    the recipe; the resolved recipe stores it absolute so that a run resumes from anywhere."""
    section = data.get("data")
    if not isinstance(section, dict) or not isinstance(section.get("path"), str):
        return
    p = Path(section["path"]).expanduser()
    if not p.is_absolute():
        p = p if p.exists() or not (recipe_dir / p).exists() else recipe_dir / p
    section["path"] = str(p.resolve())


def load_yaml(path: Path, *, keep_text: bool = False):
    """Plain data of a YAML file, numbers read as people write them (``3e-4``, ``.5``, ``1_000``);
    documents too large, too deep, alias bombs and duplicate keys are refused (danlu/_yaml.py).
    ``keep_text``: numbers keep the text they were written as, for keys that expect a string."""
    import yaml

    from ._yaml import MAX_BYTES, YamlRefused, loads

    if path.is_dir():
        raise RecipeError(f"{path}: is a directory, expected a YAML file")
    if path.stat().st_size > 4 * MAX_BYTES:   # refused without reading it all
        raise RecipeError(f"{path}: {path.stat().st_size:,} bytes is too large for a recipe (at most "
                          f"{MAX_BYTES:,} characters); keep long lists in the data files")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text; save the recipe as UTF-8") from None
    try:
        return loads(text, keep_text=keep_text)
    except YamlRefused as err:
        where = f" line {err.line}" if err.line else ""
        raise RecipeError(f"{path}:{where}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise RecipeError(f"{path}:{where}: {problem}; fix the YAML syntax") from None


def parse_value(text: str, *, keep_text: bool = False):
    """Parse a ``--set`` value as YAML (so ``0.01``, ``3e-4``, ``true``, ``[64, 32]`` have their types);
    text that is not valid YAML stays text, a refused document (an alias bomb, a duplicate key) is an error."""
    import yaml

    from ._yaml import YamlRefused, loads

    try:
        return loads(text, keep_text=keep_text)
    except YamlRefused as err:
        raise RecipeError(f"--set value {text[:40]!r}: {err}") from None
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """Apply ``key.path=value`` strings to a nested dict (a copy is returned)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optimizer.lr=0.01")
        key, text = item.split("=", 1)
        _set_path(data, key, parse_value(text, keep_text=True), item)
    return data


def _set_path(data: dict, key: str, value, item: str) -> None:
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"--set {item!r}: empty key; expected KEY=VALUE, e.g. --set optimizer.lr=0.01")
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise RecipeError(f"--set {item!r}: {p} is not a section")
        node = nxt
    node[parts[-1]] = value


def describe(section: Section = RECIPE, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, default, doc) for every leaf key — used by ``danlu keys`` and the glossary."""
    if section is RECIPE:
        schema()   # the capabilities' sections too
    rows = []
    for key, spec in section.fields.items():
        path = f"{prefix}{key}"
        if isinstance(spec, Section):
            rows.extend(describe(spec, path + "."))
        else:
            rows.append((path, json.dumps(spec.default), spec.doc))
    return rows
