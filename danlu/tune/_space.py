"""The search space of ``danlu tune``: recipe key paths mapped to distributions.

A space file is YAML::

    optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, points: 10}
    model.hidden: {type: categorical, choices: [[64], [128, 64]]}
    train.batch_size: {type: int, low: 16, high: 128, step: 16}

Every key must be a recipe key (checked against the schema, with a did-you-mean), and every
value a distribution could give must be a valid value of that key (checked by building the
recipe with it) — so a study never starts with a space that fails on its first trial.

The grid sampler needs a finite set per key: a categorical's choices, an integer range's values
(every ``step``, at most :data:`MAX_INT_GRID`), or for a float range an explicit ``grid: [...]``
or ``points: N`` (N values spread evenly between low and high, geometrically when ``log``).

This module imports neither torch nor optuna at module level.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import RecipeError, did_you_mean
from ..recipe import NUM, Field, Rule, Section, check_section, union

TYPES = ("float", "int", "categorical")
ALLOWED = {
    "float": ("type", "low", "high", "log", "step", "grid", "points"),
    "int": ("type", "low", "high", "log", "step", "grid", "points"),
    "categorical": ("type", "choices"),
}
MAX_INT_GRID = 100


@dataclass(frozen=True)
class Param:
    """One tuned recipe key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    grid: tuple | None = None      # explicit grid values (float / int)
    points: int | None = None      # evenly spread grid of this many values

    # -- categorical encoding ----------------------------------------------------------------
    # Optuna's categorical choices must be None, bool, int, float or str; a list such as
    # model.hidden [128, 64] is stored as its JSON text and decoded back here.

    @property
    def encoded(self) -> bool:
        return any(not _scalar(c) for c in self.choices)

    def encoded_choices(self) -> list:
        return [json.dumps(c) for c in self.choices] if self.encoded else list(self.choices)

    def decode(self, value):
        """A value as Optuna stores it -> the recipe value."""
        if self.type == "categorical" and self.encoded:
            return json.loads(value)
        if self.type == "int":
            return int(value)
        return value

    # -- optuna ------------------------------------------------------------------------------

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(self.encoded_choices())
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial):
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, self.encoded_choices())
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def grid_values(self, where: str) -> list:
        """The finite set of values the grid sampler walks (as Optuna stores them)."""
        if self.type == "categorical":
            return self.encoded_choices()
        if self.grid is not None:
            return [int(v) if self.type == "int" else float(v) for v in self.grid]
        if self.points is not None:
            return _spread(self)
        if self.type == "int":
            step = int(self.step or 1)
            values = list(range(int(self.low), int(self.high) + 1, step))
            if len(values) > MAX_INT_GRID:
                raise RecipeError(f"{where}: {self.key}: an int range of {len(values)} values is too large for the "
                                  f"grid sampler; add points: N or grid: [...], or a larger step")
            return values
        raise RecipeError(f"{where}: {self.key}: the grid sampler needs a finite set for a float range; add "
                          f"points: N (N values from low to high) or grid: [v1, v2, ...]")

    def recipe_values(self) -> list:
        """Values worth checking against the recipe schema: the ends of a range, every choice."""
        if self.type == "categorical":
            return list(self.choices)
        values = [self.low, self.high] + list(self.grid or ())
        return [int(v) if self.type == "int" else v for v in values]


def _scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _spread(p: Param) -> list:
    n = p.points
    if p.log:
        a, b = math.log(p.low), math.log(p.high)
        values = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
    else:
        values = [p.low + (p.high - p.low) * i / (n - 1) for i in range(n)]
    if p.type == "int":
        return sorted({int(round(v)) for v in values})
    # the ends exactly, so that they stay inside the distribution despite rounding in exp/log
    values[0], values[-1] = float(p.low), float(p.high)
    return [float(f"{v:.6g}") if 0 < i < n - 1 else v for i, v in enumerate(values)]


@dataclass
class Space:
    """A validated search space; ``params`` keep the file's order."""

    params: list[Param]
    source: str = "space"
    by_key: dict = field(init=False)

    def __post_init__(self):
        self.by_key = {p.key: p for p in self.params}

    def distributions(self) -> dict:
        return {p.key: p.distribution() for p in self.params}

    def suggest(self, trial) -> dict:
        """Ask the trial for every value; returns recipe overrides ``{key path: value}``."""
        return {p.key: p.decode(p.suggest(trial)) for p in self.params}

    def decode(self, optuna_params: Mapping[str, Any]) -> dict:
        """Optuna's stored params of a trial -> recipe overrides."""
        return {k: self.by_key[k].decode(v) if k in self.by_key else v for k, v in optuna_params.items()}

    def grid(self) -> dict:
        return {p.key: p.grid_values(self.source) for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())


# ---------------------------------------------------------------------------------------------
# Reading and checking
# ---------------------------------------------------------------------------------------------

def load_space(space, recipe) -> Space:
    """A space from a YAML path or a mapping, checked against ``recipe`` (a validated Recipe)."""
    if isinstance(space, Space):
        return space
    if isinstance(space, (str, Path)):
        from ..recipe import load_yaml

        path = Path(space)
        if not path.is_file():
            raise RecipeError(f"{path}: search space file not found; give a YAML file mapping recipe keys to "
                              f"distributions, e.g. optimizer.lr: {{type: float, low: 1.0e-4, high: 0.1, log: true}}")
        data, source = load_yaml(path), str(path)
    else:
        data, source = space, "space"
    if not isinstance(data, Mapping) or not data:
        raise RecipeError(f"{source}: a search space must be a non-empty mapping of recipe keys to distributions, "
                          f"e.g. optimizer.lr: {{type: float, low: 1.0e-4, high: 0.1, log: true}}")
    params = [_param(str(key), spec, source) for key, spec in data.items()]
    check_keys([p.key for p in params], recipe, source, params)
    for p in params:
        _check_values(p, recipe, source)
    return Space(params, source)


# ---------------------------------------------------------------------------------------------
# The schema of one distribution, as data (checked by danlu.recipe's validator)
# ---------------------------------------------------------------------------------------------

def _number(integer: bool) -> Field:
    """A finite number (an integer for type int); ``null`` counts as left out."""
    return union(Field(int, doc="an integer") if integer else Field(NUM, doc="a finite number"))


def _ends(low, high, grid) -> tuple:
    """The range's ends: low and high as given, else the grid's smallest and largest value."""
    return (low if low is not None else min(grid or [0]), high if high is not None else max(grid or [0]))


def _ordered(low, high, grid) -> bool:
    """low below high, unless a one-value grid is the whole range."""
    lo, hi = _ends(low, high, grid)
    return lo < hi or (grid is not None and len(grid) == 1)


def _within(low, high, grid) -> bool:
    lo, hi = _ends(low, high, grid)
    return all(lo <= v <= hi for v in grid or ())


RANGE_RULES = (
    Rule(keys=("grid",), check=lambda grid: grid is None or len(grid) > 0,
         message="{where}: grid must be a non-empty list of numbers, e.g. grid: [0.001, 0.01, 0.1]"),
    Rule(keys=("low", "high", "grid", "type"),
         check=lambda low, high, grid, kind: grid is not None or (low is not None and high is not None),
         message="{where}: low and high are required for type {3}, e.g. {{type: {3}, low: 1, high: 10}}"),
    Rule(keys=("low", "high", "grid"), check=_ordered,
         message="{where}: low must be below high, got low {0} and high {1}"),
    Rule(keys=("log", "low", "high", "grid"), check=lambda log, *ends: not log or _ends(*ends)[0] > 0,
         message="{where}: log: true needs low > 0, got low {1}"),
    Rule(keys=("step", "log"), check=lambda step, log: step is None or not log,
         message="{where}: step and log: true cannot be used together; drop one of them"),
    Rule(keys=("grid", "points"), check=lambda grid, points: grid is None or points is None,
         message="{where}: give either grid or points, not both"),
    Rule(keys=("low", "high", "grid"), check=_within,
         message="{where}: a grid value is outside low {0} .. high {1}; keep every grid value in the range"),
)


def _range_schema(integer: bool) -> Section:
    number = int if integer else NUM
    return Section({
        "low": _number(integer),
        "high": _number(integer),
        "log": Field(bool, False, nullable=False),
        "step": Field(number, None, min=0, min_exclusive=True),
        "grid": Field(list, None, item=Field(number, nullable=False)),
        "points": union(Field(int, min=2, doc="an integer >= 2")),
    }, rules=RANGE_RULES)


CATEGORICAL = Section({"choices": Field(list, None)}, rules=(
    Rule(keys=("choices",), check=bool,
         message="{where}: choices must be a non-empty list, e.g. choices: [relu, tanh]"),
    Rule(keys=("choices",), check=lambda choices: len({json.dumps(c, sort_keys=True) for c in choices}) == len(choices),
         message="{where}: choices has duplicates; list each value once"),
))

#: One entry of a search space: ``{type: float|int|categorical, ...}`` and the settings of that type.
DISTRIBUTION = Section({"type": Field(str, None, choices=TYPES)}, kind_key="type",
                       by_kind=lambda: {"float": _range_schema(False), "int": _range_schema(True),
                                        "categorical": CATEGORICAL})


def _param(key: str, spec, source: str) -> Param:
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    for name in spec if isinstance(kind, str) and kind in ALLOWED else ():   # named a setting, not a recipe key, in the message
        if name not in ALLOWED[kind]:
            raise RecipeError(f"{source}: {key}: unknown setting {name!r} for type {kind}"
                              f"{did_you_mean(name, ALLOWED[kind])}; allowed: {', '.join(ALLOWED[kind])}")
    cfg = check_section(DISTRIBUTION, spec, key, source)
    if kind == "categorical":
        return Param(key, kind, choices=tuple(cfg["choices"]))
    number = int if kind == "int" else float
    grid = None if cfg["grid"] is None else tuple(number(v) for v in cfg["grid"])
    low, high = (number(v) for v in _ends(cfg["low"], cfg["high"], grid))
    step = None if cfg["step"] is None else number(cfg["step"])
    return Param(key, kind, low=low, high=high, log=cfg["log"], step=step, grid=grid, points=cfg["points"])


def with_values(recipe, values: Mapping[str, Any]):
    """``recipe`` with ``{key path: value}`` set, validated again.

    The values are set as they are (not through ``--set`` text, where YAML would read a float
    such as ``1e-07`` as a string). A new ``model.kind`` drops the model keys it does not have."""
    from ..recipe import Recipe

    data = recipe.to_dict()
    kind = values.get("model.kind")
    if kind is not None and kind != data["model"]["kind"]:
        data["model"] = _model_keys_for(kind, data["model"])
    for key, value in values.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = copy.deepcopy(value)
    return Recipe.from_dict(data, source=recipe.source)


def _model_keys_for(kind: str, model: dict) -> dict:
    """The recipe's model keys that a model of ``kind`` also has (switching kind drops the rest,
    e.g. mlp's ``hidden`` when a trial tries ``logistic``)."""
    from ..recipe import MODEL_COMMON
    from ..models import registered_params

    params = registered_params().get(kind, {})
    if params is None:
        return dict(model)
    return {k: v for k, v in model.items() if k in MODEL_COMMON or k in params}


def _check_values(p: Param, recipe, source: str) -> None:
    """Every end of a range and every choice must make a valid recipe."""
    for value in p.recipe_values():
        try:
            with_values(recipe, {p.key: value})
        except RecipeError as err:
            raise RecipeError(f"{source}: {p.key}: the value {value!r} does not fit the recipe: {err}") from None


# ---------------------------------------------------------------------------------------------
# Recipe keys
# ---------------------------------------------------------------------------------------------

def check_keys(keys: list[str], recipe, source: str, params=()) -> None:
    """Every key must name a leaf of the recipe schema (model keys: of the recipe's model kind,
    or of any kind the space itself tries)."""
    kinds = {recipe.model.kind}
    for p in params:
        if p.key == "model.kind":
            kinds |= {c for c in p.choices if isinstance(c, str)}
    leaves = recipe_leaves(kinds)
    for key in keys:
        if key in leaves:
            if not isinstance(leaves[key], Field):
                raise RecipeError(f"{source}: {key} is a section of the recipe, not a key; tune one of its keys, "
                                  f"e.g. {_first_child(key, leaves)}")
            continue
        if leaves.get(_section_of(key)) == "open":   # a registered model that takes any keys
            continue
        raise RecipeError(f"{source}: unknown recipe key {key!r}{did_you_mean(key, leaves)}; "
                          f"`danlu keys` lists every key")


def _section_of(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def _first_child(key: str, leaves) -> str:
    return next((k for k in leaves if k.startswith(key + ".")), key)


def recipe_leaves(model_kinds) -> dict:
    """key path -> Field for every leaf key, with sections mapped to ``"section"`` (and a model kind
    that takes any key to ``"open"``)."""
    from ..recipe import schema

    out: dict = {}
    _walk(schema(), "", out, model_kinds)   # the capabilities' sections too
    return out


def _walk(section, prefix: str, out: dict, model_kinds) -> None:
    fields = dict(section.fields)
    if section.by_kind is not None:
        kinds = section.by_kind()
        for kind in model_kinds:
            extra = kinds.get(kind)
            if extra is None and kind in kinds:
                out[prefix.rstrip(".")] = "open"
            fields.update(extra or {})
    for key, spec in fields.items():
        path = prefix + key
        if isinstance(spec, Section):
            out.setdefault(path, "section")
            _walk(spec, path + ".", out, model_kinds)
        else:
            out[path] = spec
