"""Pictures of unsupervised results: rows on a 2-D map coloured by cluster or label, the
silhouette of each cluster, and how much variance the principal components explain.

They take plain arrays and write one PNG each (matplotlib's ``Figure``, no pyplot), so k-means
and PCA runs (``danlu.classical``) and the autoencoder's codes (``danlu.generative``) draw the
same pictures. Importing this package imports neither matplotlib nor scikit-learn.
"""
from __future__ import annotations

_LAZY = {"Colouring": "_plots", "map_2d": "_plots", "plot_map": "_plots", "plot_silhouette": "_plots",
         "plot_scree": "_plots", "variance_spectrum": "_plots"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
