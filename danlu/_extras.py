"""Optional packages: which recipe feature needs which extra, checked before a run starts.

This table is the one place that says so. :func:`check_extras` reads it when a run is about to
start (``danlu.train`` / ``danlu.resume``, before the run directory is created), so that a
recipe whose extra is missing stops with one line naming ``pip install 'danlu[<extra>]'``
instead of failing half-way and leaving a stub run behind. The probe only asks whether a
module can be found (nothing is imported: transformers alone takes seconds).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

from .errors import UserError


@dataclass(frozen=True)
class Extra:
    feature: str                   # what the recipe asks for, in the words of its keys
    extra: str                     # pip install 'danlu[<extra>]'
    probes: tuple[str, ...]        # modules that must be importable
    used_by: Callable[[dict], bool]


def _logs_to(name: str) -> Callable[[dict], bool]:
    return lambda recipe: name in (recipe["output"].get("loggers") or ())


EXTRAS: list[Extra] = [   # the core's; capabilities add theirs with register_extra
    Extra("output.loggers: tensorboard", "tensorboard", ("tensorboard",), _logs_to("tensorboard")),
    Extra("output.loggers: mlflow", "mlflow", ("mlflow",), _logs_to("mlflow")),
    # the default store (a SQLite file in the run directory) needs SQLAlchemy and Alembic too
    Extra("output.loggers: mlflow with its default store", "mlflow", ("sqlalchemy", "alembic"),
          lambda r: _logs_to("mlflow")(r) and not r["output"].get("mlflow_uri")),
]

#: (applies(recipe), what(recipe)) for runs that are not trained by the loop (registered by the
#: capability that fits them): they refuse output.loggers instead of ignoring it.
LOOPLESS: list[tuple[Callable[[dict], bool], Callable[[dict], str]]] = []


def register_extra(extra: Extra) -> None:
    """A capability declares the optional package one of its recipe features needs."""
    if extra not in EXTRAS:
        EXTRAS.insert(0, extra)


def register_loopless(applies: Callable[[dict], bool], what: Callable[[dict], str]) -> None:
    """A capability declares recipes whose runs do not go through the training loop."""
    if (applies, what) not in LOOPLESS:
        LOOPLESS.append((applies, what))


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _facts(recipe) -> dict:
    """What an Extra's feature text may name: {kind} (model.kind), {env} (env.name, when registered)."""
    env = recipe.get("env") or {}
    return {"kind": recipe["model"]["kind"], "env": env.get("name")}


def missing_extra(recipe) -> str | None:
    """The one-line message for the first extra the recipe needs but lacks, or None."""
    for entry in EXTRAS:
        if not entry.used_by(recipe):
            continue
        absent = [m for m in entry.probes if not importable(m)]
        if absent:
            feature = entry.feature.format(**{k: v for k, v in _facts(recipe).items()})
            return (f"{feature} needs the '{entry.extra}' extra ({', '.join(absent)} is not installed); "
                    f"install it with pip install 'danlu[{entry.extra}]'")
    return None


def check_extras(recipe) -> None:
    """Raise a one-line :class:`UserError` when the recipe needs an extra that is not installed
    (or asks for a logger where it does not apply)."""
    message = missing_extra(recipe) or _loggers_misplaced(recipe)
    if message is not None:
        raise UserError(f"{getattr(recipe, 'source', 'recipe')}: {message}")


def _loggers_misplaced(recipe) -> str | None:
    """The loggers are callbacks of the training loop; runs that do not use the loop refuse them
    rather than ignore them."""
    if not recipe["output"].get("loggers"):
        return None
    what = next((describe(recipe) for applies, describe in LOOPLESS if applies(recipe)), None)
    if what is None:
        return None
    return (f"output.loggers applies to runs trained by danlu's loop, and {what}; remove output.loggers "
            f"(the run's figures are in metrics.jsonl and summary.json)")
