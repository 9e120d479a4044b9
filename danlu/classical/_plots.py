"""The pictures of an unsupervised classical run, drawn into ``RUN/plots/`` once it is fitted.

* k-means: ``clusters.png`` — the rows of the shown split on the plane of the training rows' first
  two principal components, coloured by cluster with the centres marked, beside the same points
  coloured by the true label; ``silhouette.png`` — the silhouette of each row, per cluster.
* pca: ``components.png`` — pc1 against pc2 of the shown split, coloured by the label;
  ``scree.png`` — the share of the variance of every principal component of the training rows,
  with the kept ones marked (how many components the data needs).

The shown split is the test split, else validation, else train: rows the model did not learn
from, where the run has them. Drawing is in ``danlu.unsupervised``; this module picks the data and the files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._fit import SILHOUETTE_ROWS
from ._module import as_rows, thread_limit


def write_plots(estimator, kind: str, splits: dict, info, folder: str | Path, seed: int = 0,
                n_jobs: int = 1) -> list[Path]:
    """Draw the pictures of a fitted k-means or PCA ``estimator``; returns the files written."""
    name = shown_split(splits)
    X, y = splits[name]
    rows, train = as_rows(X), as_rows(splits["train"][0])
    folder = Path(folder)
    with thread_limit(n_jobs):
        if kind == "kmeans":
            return _kmeans_plots(estimator, train, rows, label_colouring(y, info, name), folder, seed)
        if kind == "pca":
            return _pca_plots(estimator, train, rows, label_colouring(y, info, name), folder, name)
    raise ValueError(f"no pictures for model kind {kind!r}")


def shown_split(splits: dict) -> str:
    return next(s for s in ("test", "validation", "train") if s in splits)


def label_colouring(y, info, split: str):
    """The panel that colours rows by their label: class names, or a single regression target on a
    colour scale; None for several targets (one colour cannot show them)."""
    from ..unsupervised import Colouring

    y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    if info.task == "classification":
        return Colouring(f"true label ({split} split)", y.astype(np.int64), [str(c) for c in info.classes])
    if y.ndim == 1 or y.shape[1] == 1:
        return Colouring(f"target ({split} split)", y.reshape(-1))
    return None


def _kmeans_plots(estimator, train, rows, label, folder: Path, seed: int) -> list[Path]:
    from ..unsupervised import Colouring, map_2d, plot_map, plot_silhouette

    clusters = estimator.predict(rows)
    k = len(estimator.cluster_centers_)
    written = []
    if rows.shape[1] >= 2:
        (points, centres), axes = map_2d(train, rows, estimator.cluster_centers_)
        panels = [Colouring(f"k-means clusters (k = {k})", clusters, [str(c) for c in range(k)])]
        panels += [label] if label is not None else []
        written.append(plot_map(points, panels, folder / "clusters.png", axes=axes, centres=centres,
                                title=f"{len(rows)} rows; centres marked X"))
    if 2 <= len(np.unique(clusters)) <= len(rows) - 1:   # where a silhouette is defined
        written.append(plot_silhouette(rows, clusters, folder / "silhouette.png", max_rows=SILHOUETTE_ROWS,
                                       seed=seed))
    return written


def _pca_plots(estimator, train, rows, label, folder: Path, split: str) -> list[Path]:
    from ..unsupervised import Colouring, plot_map, plot_scree, variance_spectrum
    from ..unsupervised._plots import SPECTRUM_MAX_FEATURES

    written = []
    components = estimator.transform(rows)
    ratio = estimator.explained_variance_ratio_
    if components.shape[1] >= 2:
        panel = label or Colouring(f"{split} split", np.zeros(len(rows), dtype=np.int64), ["rows"])
        scale = ", whitened" if estimator.whiten else ""
        axes = (f"pc1 ({ratio[0]:.1%} of the variance{scale})", f"pc2 ({ratio[1]:.1%}{scale})")
        written.append(plot_map(components[:, :2], [panel], folder / "components.png", axes=axes,
                                title=f"First two principal components, {len(rows)} rows"))
    # every component of the training rows, when affordable: shows what more components would add
    spectrum = variance_spectrum(train) if train.shape[1] <= SPECTRUM_MAX_FEATURES else ratio
    written.append(plot_scree(spectrum, folder / "scree.png", kept=len(ratio)))
    return written
