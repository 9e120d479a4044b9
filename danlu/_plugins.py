"""Plugins: the one way code joins danlu — the capabilities that ship with it and the user's own.

A plugin is a Python module that registers things when it is imported: model kinds
(:func:`danlu.models.register_model`), run kinds (:func:`danlu.training.register_run_kind`),
callbacks for recipe sections (:func:`danlu.training.register_callbacks`), losses, metrics and
data sources. Three lists name plugins, and all three are loaded by :func:`load`:

* ``BUILTIN`` below: the capabilities shipped in this package (classical, generative, ...);
* the ``danlu.plugins`` entry-point group: packages that declare, in their pyproject.toml,
  ``[project.entry-points."danlu.plugins"] mine = "my_package.danlu_plugin"``;
* a recipe's top-level ``plugins: [my_models, ...]``: modules of the user's own project, found
  on ``sys.path``, in the working directory or beside the recipe file.

The core never imports a capability by name in code: it asks its registries, which this module
fills before a recipe is validated. A module that fails to import is reported in one line.
"""
from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path

from .errors import RecipeError

ENTRY_POINT_GROUP = "danlu.plugins"

#: The capabilities that ship with danlu, in the order they register (each imports the core only,
#: and the ones it builds on). Importing one is cheap: torch and friends load on first use.
BUILTIN = (
    "danlu.models",                # the built-in networks (linear ... rnn) of the core
    "danlu.classical",             # decision trees ... k-means, PCA: a run kind fitted once
    "danlu.generative._plugin",    # VAE, diffusion, autoencoder
    "danlu.diagnose._plugin",      # the training monitors, as callbacks
    "danlu.compress._plugin",      # quantization-aware training, as callbacks; --quantized models
    "danlu.transfer._plugin",      # hypernetworks, fine-tuning runs, LoRA adapters
    "danlu.distributed._plugin",   # torchrun / DDP
    "danlu.rl._plugin",            # agents in environments: a run kind
    "danlu.combine._plugin",       # ensembles as runs
)

_lock = threading.RLock()
_loaded: set[str] = set()
_builtin_done = False


def load_builtin() -> None:
    """Import the shipped capabilities and the installed packages' plugins, once."""
    global _builtin_done
    if _builtin_done:
        return
    with _lock:
        if _builtin_done:
            return
        _builtin_done = True   # set first: a capability that validates a recipe while it loads must not recurse
        for name in BUILTIN:
            importlib.import_module(name)
            _loaded.add(name)
        for entry in _entry_points():
            _import(entry.value.split(":")[0], f"entry point {entry.name!r} of group {ENTRY_POINT_GROUP}", None)


def _entry_points():
    from importlib.metadata import entry_points

    try:
        return list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 — broken package metadata must not stop danlu
        return []


def load(modules=(), *, source: str = "recipe", near: str | Path | None = None) -> None:
    """Load the built-in plugins, then ``modules`` (a recipe's ``plugins:`` list). ``near``: the
    recipe file's folder, searched after ``sys.path`` and the working directory."""
    load_builtin()
    if modules is None:
        return
    if isinstance(modules, str) or not isinstance(modules, (list, tuple)):
        raise RecipeError(f"{source}: plugins must be a list of module names, e.g. plugins: [my_models]; "
                          f"got {modules!r}")
    for i, name in enumerate(modules):
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise RecipeError(f"{source}: plugins[{i}] must be a module name such as my_models or "
                              f"my_package.models; got {name!r}")
        _import(name, f"{source}: plugins[{i}]", near)


def _import(name: str, where: str, near) -> None:
    if name in _loaded:
        return
    with _lock:
        if name in _loaded:
            return
        try:
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as err:
                if err.name != name.split(".")[0] or not _import_from_folders(name, near):
                    missing = err.name or name
                    raise RecipeError(f"{where}: cannot import module {name!r} ({missing} not found); put {name}.py "
                                      f"in the working directory or beside the recipe, or install its package") from None
        except RecipeError:
            raise
        except Exception as err:  # noqa: BLE001 — the user's module failed while importing: say where
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise RecipeError(f"{where}: importing module {name!r} failed ({type(err).__name__}: {first}); "
                              f"fix the module, or run with --debug for the traceback") from err
        _loaded.add(name)


def _import_from_folders(name: str, near) -> bool:
    """Look for the module in the working directory, then beside the recipe; True once imported."""
    top = name.split(".")[0]
    for folder in (Path.cwd(), Path(near) if near else None):
        if folder is None:
            continue
        if (folder / f"{top}.py").is_file() or (folder / top / "__init__.py").is_file():
            text = str(folder.resolve())
            if text not in sys.path:
                sys.path.append(text)   # after everything else: it never shadows an installed module
            importlib.invalidate_caches()
            importlib.import_module(name)
            return True
    return False


def loaded() -> list[str]:
    """Names of the modules loaded as plugins so far (for ``danlu plugins`` and tests)."""
    return sorted(_loaded)
