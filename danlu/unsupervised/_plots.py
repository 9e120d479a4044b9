"""The drawing functions of ``danlu.unsupervised``: plain arrays in, one PNG out, its path returned.

They follow the report's house style (``danlu.report._plots``): a ``matplotlib.figure.Figure``
saved by its Agg canvas, English labels, big scatters thinned to a readable number of points.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..report._plots import _LEGEND_MAX, _POINTS_MAX, _figure, _integer_x, _save, _text

SCREE_MAX = 100                 # components drawn in the explained-variance picture
SPECTRUM_MAX_FEATURES = 4096    # the full spectrum needs a features x features covariance matrix


@dataclass
class Colouring:
    """One panel of a map: a title and a value per point. With ``names`` the values are category
    ids (clusters, classes), each drawn in its own colour and named in the legend; without, they
    are numbers (a regression target) drawn on a colour scale."""

    title: str
    values: np.ndarray
    names: list | None = None


def map_2d(reference, *arrays, what: str = "feature") -> tuple[list[np.ndarray], tuple[str, str]]:
    """``arrays`` placed on one plane, and the names of its two axes.

    Rows with two columns are drawn as they are. Wider rows go onto the plane of the first two
    principal components of ``reference`` (the training rows): fitted there once, so the shown
    split, cluster centres or codes all land on the same plane and can be compared.
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 2 or reference.shape[1] < 2:
        raise ValueError(f"a 2-D map needs rows with at least two columns, got shape {reference.shape}")
    if reference.shape[1] == 2:
        return [np.asarray(a, dtype=np.float64) for a in arrays], (f"{what} 1", f"{what} 2")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full").fit(reference)
    share = pca.explained_variance_ratio_
    axes = (f"pc1 of the {what}s ({share[0]:.0%} of the variance)", f"pc2 of the {what}s ({share[1]:.0%})")
    return [pca.transform(np.asarray(a, dtype=np.float64)) for a in arrays], axes


def plot_map(points, panels: list[Colouring], path, *, axes: tuple[str, str] = ("pc1", "pc2"),
             centres=None, title: str | None = None) -> Path:
    """``points`` (N, 2) drawn once per panel, coloured as the panel says. ``centres`` (K, 2),
    when given, are marked with their index on the first panel (k-means centres)."""
    points = np.asarray(points, dtype=np.float64)
    keep = slice(None, None, max(1, len(points) // _POINTS_MAX))
    fig, ax_list = _figure(5.6 * len(panels), 4.8, len(panels))
    ax_list = np.atleast_1d(ax_list)
    for ax, panel in zip(ax_list, panels):
        _scatter(fig, ax, points[keep], np.asarray(panel.values)[keep], panel.names)
        ax.set(xlabel=_text(axes[0]), ylabel=_text(axes[1]), title=_text(panel.title))
        ax.grid(alpha=0.3)
    if centres is not None:
        _mark_centres(ax_list[0], np.asarray(centres, dtype=np.float64))
    if title:
        fig.suptitle(_text(title))
    return _save(fig, path)


def _scatter(fig, ax, points: np.ndarray, values: np.ndarray, names: list | None) -> None:
    if names is None:
        image = ax.scatter(points[:, 0], points[:, 1], c=values.astype(float), cmap="viridis", s=10, alpha=0.8)
        fig.colorbar(image, ax=ax, shrink=0.8)
        return
    values = values.astype(np.int64)
    colours = _colours(len(names))
    for c in np.unique(values):   # one call per category, so that the legend can name each
        mask = values == c
        ax.scatter(points[mask, 0], points[mask, 1], s=10, alpha=0.8, color=colours[c], label=_text(names[c]))
    if len(names) <= _LEGEND_MAX:
        # outside the axes: a legend inside would hide points, and "best" placement is slow on big scatters
        ax.legend(fontsize="small", markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _mark_centres(ax, centres: np.ndarray) -> None:
    ax.scatter(centres[:, 0], centres[:, 1], marker="X", s=140, c="white", edgecolors="black", linewidths=1.5,
               zorder=3)
    for k, (x, y) in enumerate(centres):
        ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(7, 7), fontsize=9, weight="bold", zorder=4)


def _colours(n: int) -> np.ndarray:
    """``n`` distinguishable colours: the qualitative tab10 / tab20 tables, a colour scale beyond."""
    from matplotlib import colormaps

    if n <= 10:
        return np.asarray(colormaps["tab10"].colors)[:n]
    if n <= 20:
        return np.asarray(colormaps["tab20"].colors)[:n]
    return colormaps["viridis"](np.linspace(0, 1, n))


def plot_silhouette(rows, clusters, path, *, max_rows: int = 2000, seed: int = 0) -> Path:
    """Each row's silhouette, sorted within its cluster, with the mean as a dashed line.

    The silhouette of a row is (b - a) / max(a, b): a is its mean distance to its own cluster, b to
    the nearest other one. A cluster whose rows mostly fall short of the mean, or below zero, is
    a poor one. Above ``max_rows`` rows a seeded sample is drawn (the cost grows with rows squared).
    """
    from sklearn.metrics import silhouette_samples

    rows, clusters = np.asarray(rows), np.asarray(clusters, dtype=np.int64)
    if len(rows) > max_rows:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        rows, clusters = rows[pick], clusters[pick]
    values = silhouette_samples(rows, clusters)
    colours = _colours(int(clusters.max()) + 1)
    gap = max(2, len(rows) // 100)
    fig, ax = _figure(6.4, 5.0)
    bottom = gap
    for c in np.unique(clusters):
        mine = np.sort(values[clusters == c])
        ax.fill_betweenx(np.arange(bottom, bottom + len(mine)), 0, mine, color=colours[c], alpha=0.8, linewidth=0)
        ax.text(-0.02, bottom + len(mine) / 2, str(c), ha="right", va="center", fontsize=8)
        bottom += len(mine) + gap
    mean = float(values.mean())
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, label=f"mean {mean:.3f}")
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="silhouette", ylabel="rows, by cluster", xlim=(min(-0.1, float(values.min()) - 0.05), 1.0),
           ylim=(0, bottom), title=f"Silhouette of {len(rows)} rows")
    ax.set_yticks([])
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def variance_spectrum(rows) -> np.ndarray:
    """The share of the variance along every principal axis of ``rows``, largest first.

    These are the eigenvalues of the covariance matrix, divided by their sum: what a PCA keeping
    every component reports as ``explained_variance_ratio_``, for a features x features cost.
    """
    rows = np.asarray(rows, dtype=np.float64)
    features = rows.shape[1]
    if features > SPECTRUM_MAX_FEATURES:
        raise ValueError(f"{features} features: the full variance spectrum is drawn up to "
                         f"{SPECTRUM_MAX_FEATURES} features")
    covariance = np.cov(rows, rowvar=False).reshape(features, features)
    eigen = np.clip(np.linalg.eigvalsh(covariance)[::-1], 0.0, None)
    total = eigen.sum()
    return eigen / total if total > 0 else eigen


def plot_scree(spectrum, path, kept: int | None = None) -> Path:
    """Variance explained per principal component (bars) and in total (line), for at most the first
    100 components; a dashed line marks the ``kept`` components and the share they explain."""
    spectrum = np.asarray(spectrum, dtype=np.float64)
    cumulative = np.cumsum(spectrum)[:SCREE_MAX]
    ratios = spectrum[:SCREE_MAX]
    k = np.arange(1, len(ratios) + 1)
    fig, ax = _figure()
    ax.bar(k, ratios, color="tab:blue", alpha=0.6, label="each component")
    ax.plot(k, cumulative, marker="o", markersize=3, color="tab:orange", label="cumulative")
    if kept:
        ax.axvline(kept + 0.5, color="grey", linestyle="--", linewidth=1,
                   label=f"kept: {kept} ({np.cumsum(spectrum)[kept - 1]:.1%} of the variance)")
    ax.set(xlabel="principal component", ylabel="share of the variance", ylim=(0, 1.02),
           title=f"Explained variance ({len(spectrum)} components)")
    _integer_x(ax)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize="small")
    return _save(fig, path)
