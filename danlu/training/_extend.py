"""How capabilities and plugins extend a training run, without the core naming them.

Two registries, filled when a plugin module is imported (danlu._plugins):

* :func:`register_callbacks` — a factory of callbacks for the recipes it applies to (the
  diagnosis monitors, quantization-aware training, LoRA adapters). Callbacks are the one way to
  take part in a run: the loop's events, the loss hook ``compute_loss(state, xb, yb)``, and two
  build-time methods the run (not the loop) calls:

  * ``transform_model(model, info) -> model`` — when the model is built (after the regression
    target scaling wraps it), before the optimizer sees its parameters, and again when a finished
    run's model is rebuilt for eval/predict, so the saved weights fit; QAT and LoRA wrap the model
    here, fine-tuning loads or attaches its backbone;
  * ``param_groups(model) -> list`` — what the optimizer trains, in torch param groups (at most
    one callback of a run; fine-tuning gives the backbone its own rate);
  * ``on_run_end(state)`` — after the run's model and summary are written (one process only);
    the QAT export writes the integer model here.

* :func:`register_quantized_loader` — how ``--quantized FOLDER`` (eval, predict, serve) reads a
  compressed model of a run (danlu.compress registers it).

* :func:`register_process_group` — how a run joins a multi-process job (torchrun): a function
  ``join(recipe) -> group`` whose group has ``is_main``, ``callbacks()``, ``broadcast_text(text)``
  and ``wait_for_all()``.

Entries may name their code as ``"package.module:attribute"`` so that registering stays cheap (no
torch) and the code loads on first use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


def resolve(ref):
    """A callable given directly, or ``"package.module:attribute"`` imported now."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class CallbackFactory:
    name: str
    factory: Any                                  # (recipe, run_dir, progress) -> callbacks, or "module:attr"
    when: Callable[[Any], bool] | None = None     # applies to this recipe? None: always
    order: int = 50                               # lower runs first (and transforms the model first)


CALLBACK_FACTORIES: dict[str, CallbackFactory] = {}
PROCESS_GROUP: dict[str, Any] = {}


def register_callbacks(name: str, factory, *, when: Callable[[Any], bool] | None = None, order: int = 50) -> None:
    """Add callbacks to every run whose recipe ``when(recipe)`` accepts: ``factory(recipe, run_dir,
    progress)`` returns them, in order (``run_dir`` None: not written; ``progress``: the run's
    progress mode, bar/plain/none). Registering a name again replaces it."""
    CALLBACK_FACTORIES[name] = CallbackFactory(name, factory, when, order)


def recipe_callbacks(recipe, run_dir=None, progress: str = "none") -> list:
    """The registered callbacks that apply to ``recipe``, by their order (then registration)."""
    from .. import _plugins

    _plugins.load_builtin()
    out = []
    for entry in sorted(CALLBACK_FACTORIES.values(), key=lambda e: e.order):
        if entry.when is None or entry.when(recipe):
            out.extend(cb for cb in resolve(entry.factory)(recipe, run_dir, progress) if cb is not None)
    return out


def transform_model(callbacks, model, info):
    """Apply the callbacks' ``transform_model`` in order (QAT, then adapters)."""
    for cb in callbacks:
        hook = getattr(cb, "transform_model", None)
        if callable(hook):
            model = hook(model, info)
    return model


def param_groups(callbacks, model):
    """What the optimizer trains: the one callback's ``param_groups(model)`` (a list of torch param
    groups, e.g. a backbone at its own rate), else every parameter of the model."""
    defined = [cb for cb in callbacks if callable(getattr(cb, "param_groups", None))]
    if len(defined) > 1:
        from ..errors import UserError

        names = ", ".join(type(cb).__name__ for cb in defined)
        raise UserError(f"callbacks {names} each define param_groups; at most one callback of a run may say what "
                        f"the optimizer trains")
    return defined[0].param_groups(model) if defined else model.parameters()


def register_process_group(join) -> None:
    """How a run joins a torchrun job: ``join(recipe) -> group`` (see the module docstring)."""
    PROCESS_GROUP["join"] = join


def join_process_group(recipe):
    """This process's group under torchrun (WORLD_SIZE > 1), or None in a single process."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from .. import _plugins
    from ..errors import UserError

    _plugins.load_builtin()
    if "join" not in PROCESS_GROUP:
        raise UserError("WORLD_SIZE > 1 (torchrun) but no plugin registered a process group; "
                        "is danlu.distributed installed?")
    return resolve(PROCESS_GROUP["join"])(recipe)


QUANTIZED_LOADER: dict[str, Any] = {}


def register_quantized_loader(load) -> None:
    """``load(run_dir, folder, device) -> module``: a run's compressed model from ``folder``."""
    QUANTIZED_LOADER["load"] = load


def load_quantized(run_dir, folder, device):
    from .. import _plugins
    from ..errors import UserError

    _plugins.load_builtin()
    if "load" not in QUANTIZED_LOADER:
        raise UserError(f"{folder}: no plugin registered a loader of quantized models; is danlu.compress installed?")
    return resolve(QUANTIZED_LOADER["load"])(run_dir, folder, device)


def _ema_on(recipe) -> bool:
    return recipe.train.ema is not None


# The core's own registered callback: train.ema (the moving average of the weights, _ema.py)
register_callbacks("ema", "danlu.training._ema:ema_callbacks", when=_ema_on, order=40)
