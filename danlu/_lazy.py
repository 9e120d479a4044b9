"""Lazy package attributes: public names whose modules import torch load on first use, so that
importing a package (for ``danlu --help`` or recipe validation) stays cheap."""
from __future__ import annotations

from importlib import import_module


def lazy_getattr(package: str, table: dict[str, str]):
    """A module-level ``__getattr__`` for ``package``: ``table`` maps a public name to the private
    module (relative to the package) that defines it."""
    def __getattr__(name: str):
        if name in table:
            return getattr(import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
