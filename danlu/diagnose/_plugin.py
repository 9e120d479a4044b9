"""The diagnosis capability's registration (no torch): the training monitors (on by default,
``monitors:`` in the recipe) as callbacks of every run trained by the loop."""
from . import _schema  # noqa: F401  (registers this capability's recipe sections)
from ..training._extend import register_callbacks


def monitor_callbacks(recipe, run_dir=None, progress: str = "none") -> list:
    from ._monitors import default_monitors

    return default_monitors(recipe)


register_callbacks("monitors", monitor_callbacks, order=10)
