"""Tuning (调参): the learning-rate finder and hyper-parameter search with Optuna.

* :func:`lr_find` — sweep the learning rate over training batches, plot loss against rate and
  suggest one (``danlu lr-find``);
* :func:`tune` — grid, random, Bayesian (TPE) or simulated-annealing search over recipe keys,
  one danlu run per trial, pruning, a study that continues after a kill (``danlu tune``);
* :class:`AnnealingSampler` — the simulated-annealing Optuna sampler behind ``--sampler anneal``;
* :func:`load_space` — read and check a search-space file against a recipe.

Optuna is optional (``pip install 'danlu[tune]'``): it is imported only by the search, so the
learning-rate finder works without it.
"""
from ._lr_find import LRFindResult, lr_find, suggest
from ._space import Param, Space, load_space

_LAZY = {  # names that import optuna
    "tune": "_tune",
    "TuneResult": "_tune",
    "SAMPLERS": "_tune",
    "AnnealingSampler": "_anneal",
}

__all__ = ["AnnealingSampler", "LRFindResult", "Param", "SAMPLERS", "Space", "TuneResult", "load_space", "lr_find",
           "suggest", "tune"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
