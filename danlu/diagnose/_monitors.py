"""The monitors a recipe turns on (all of them by default)."""
from __future__ import annotations

from ._text import user_lang
from ._convergence import ConvergenceMonitor
from ._divergence import DivergenceMonitor
from ._fit import FitMonitor
from ._gradients import GradientMonitor
from ._verdict import VerdictMonitor


def default_monitors(recipe) -> list:
    """The enabled monitors of ``recipe.monitors``, in the order their hooks must run.

    The gradient monitor comes first: on the steps it samples, the divergence monitor reads its
    total norm to catch a non-finite gradient before it is applied. The verdict comes last: at
    the end of training it weighs what the others found.
    """
    from ..recipe import _check_section
    from ._schema import MONITORS

    cfg = recipe.get("monitors") or _check_section(MONITORS, {}, "monitors", "recipe")
    lang = user_lang()
    monitors = []
    if cfg["gradients"]["enabled"]:
        monitors.append(GradientMonitor(**_keys(cfg["gradients"]), lang=lang))
    if cfg["divergence"]["enabled"]:
        monitors.append(DivergenceMonitor(**_keys(cfg["divergence"]), lang=lang))
    if cfg["fit"]["enabled"]:
        monitors.append(FitMonitor(**_keys(cfg["fit"]), lang=lang))
    if cfg["convergence"]["enabled"]:
        monitors.append(ConvergenceMonitor(**_keys(cfg["convergence"]), lang=lang))
    if monitors:
        monitors.append(VerdictMonitor(lang=lang))
    return monitors


def _keys(section) -> dict:
    return {k: v for k, v in section.items() if k != "enabled"}
