"""Small helpers shared by the monitors: the user's language, deep copies of tensor trees,
and one way to report a diagnosis."""
from __future__ import annotations

import math

import torch

from ._text import message


def clone_tree(obj):
    """A copy of a nested dict/list/tuple in which every tensor is an own copy.

    ``optimizer.state_dict()`` hands out the live moment tensors, and ``load_state_dict`` may
    adopt the tensors it is given; without copies a snapshot would change as training goes on.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(clone_tree(v) for v in obj)
    return obj


def finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def report(state, kind: str, lang: str, **facts) -> dict:
    """Record a diagnosis: the facts (so that ``danlu diagnose`` can tell it in any language) and
    a message in the user's language (for the progress display). ``epoch`` in ``facts``
    overrides the state's position (epoch-level checks name the epoch they judged)."""
    where = {"epoch": state.epoch, "batch": state.batch, "step": state.step, **facts}
    # every diagnosis id is also a glossary term: `danlu explain <kind>`
    return state.record_event(kind, message=message(kind, lang, where), term=kind, **facts)


def params_finite(model: torch.nn.Module) -> bool:
    """Whether every weight and buffer is finite (one host sync; called on rare occasions only)."""
    with torch.no_grad():
        checks = [torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point()]
        return bool(torch.stack(checks).all()) if checks else True


def since_rescue(state) -> int:
    """The index of the first epoch (in ``state.history``) that started after the last rescue:
    epochs before it were trained at a learning rate since cut, so the fit and convergence
    checks judge only the epochs after it."""
    start = 0
    for event in getattr(state, "events", ()):
        if event.get("kind") == "rescue" and isinstance(event.get("epoch"), int):
            start = event["epoch"] + 1
    return start


def trend(values: list) -> float:
    """The rise over ``values`` of their least-squares line: a trend, not one noisy epoch."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    slope = sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum((i - mx) ** 2 for i in range(n))
    return slope * (n - 1)
