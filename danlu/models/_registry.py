"""The model registry: a name, a builder and the recipe keys the builder accepts.

The keys are declared as :class:`danlu.recipe.Field` objects, so the recipe validator checks
``model: {kind: cnn, channels: [16, 32]}`` before anything is built and the builder can trust
what it receives. This module does not import torch: validating a recipe stays cheap.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..errors import RecipeError
from ..recipe import MODEL_KINDS, Field

Builder = Callable[[Mapping[str, Any], Any, int], Any]


@dataclass(frozen=True)
class ModelEntry:
    """One registered model kind."""

    name: str
    builder: Builder
    params: Mapping[str, Field] | None  # None: the builder accepts any keys


_ENTRIES: dict[str, ModelEntry] = {}

#: Read-only view of the registry (name -> ModelEntry); it follows later registrations.
MODELS: Mapping[str, ModelEntry] = MappingProxyType(_ENTRIES)


def register_model(name: str, builder: Builder | None = None, params: Mapping[str, Field] | None = None,
                   *, replace: bool = False):
    """Register ``builder(cfg, info, out_dim) -> torch.nn.Module`` under ``name``.

    ``params`` maps each extra recipe key of ``model`` to a :class:`~danlu.recipe.Field`;
    ``None`` lets the model take any keys unchecked (handy for your own models). Without a
    builder this returns a decorator: ``@register_model("mine", params={...})``.
    """
    if builder is None:
        def decorator(fn: Builder) -> Builder:
            register_model(name, fn, params, replace=replace)
            return fn

        return decorator
    _check_entry(name, builder, params)
    if name in _ENTRIES and not replace:
        raise ValueError(f"model kind {name!r} is already registered; pass replace=True to override it")
    _ENTRIES[name] = ModelEntry(name, builder, None if params is None else dict(params))
    MODEL_KINDS[name] = _ENTRIES[name].params   # the recipe schema checks model: {kind: name, ...} with these
    return builder


def _check_entry(name, builder, params) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a model kind name must be an identifier such as 'my_net', got {name!r}")
    if not callable(builder):
        raise TypeError(f"the builder of model kind {name!r} must be callable, got {builder!r}")
    if params is None:
        return
    for key, field in params.items():
        if key == "kind":
            raise ValueError(f"model kind {name!r}: 'kind' is reserved and cannot be a parameter")
        if not isinstance(field, Field):
            raise TypeError(f"model kind {name!r}: parameter {key!r} must be a danlu.recipe.Field, "
                            f"got {field!r}")


def unregister_model(name: str) -> None:
    """Remove a registered kind (for plugins and tests); unknown names raise KeyError."""
    del _ENTRIES[name]
    MODEL_KINDS.pop(name, None)


def registered_params() -> dict[str, dict[str, Field] | None]:
    """The recipe keys of every kind (``None``: any keys). The recipe validator calls this."""
    return {name: None if e.params is None else dict(e.params) for name, e in _ENTRIES.items()}


def build_model(cfg: Mapping[str, Any], info, out_dim: int, *, source: str = "recipe"):
    """Build the model that ``cfg`` (the recipe's ``model`` section) names.

    ``cfg`` may be a validated recipe section or a plain dict such as ``{"kind": "cnn"}``:
    it goes through the recipe schema once more, which fills defaults and rejects bad keys.
    The model maps a batch ``(N, *info.input_shape)`` to ``(N, out_dim)``.
    """
    import torch  # here, not at module level: see the module docstring

    if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"out_dim must be a positive integer, got {out_dim!r}")
    cfg = complete_model_cfg(cfg, source)
    entry = _ENTRIES[cfg["kind"]]
    from ._budget import check_parameter_memory

    check_parameter_memory(entry.builder, cfg, info, out_dim, source)   # counted on 'meta': nothing allocated
    try:
        model = entry.builder(cfg, info, out_dim)
    except RecipeError as err:
        # Builders only know the key path; the caller knows which file it came from.
        raise RecipeError(f"{source}: {err}") from None
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the builder of model kind {entry.name!r} returned {type(model).__name__}, "
                        f"expected a torch.nn.Module")
    return model


def complete_model_cfg(cfg: Mapping[str, Any] | None, source: str = "recipe"):
    """Validate a ``model`` section against the schema and fill in its defaults."""
    from ..recipe import MODEL, check_section

    return check_section(MODEL, dict(cfg or {}), "model", source)
