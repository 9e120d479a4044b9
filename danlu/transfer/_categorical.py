"""Export the learned category embeddings of a finished tabular run, as vectors and 2-D maps.

A network trained on rows with categorical columns learns one vector per category (the
``nn.Embedding`` tables of :class:`danlu.models.FeatureInput`). Categories that the task treats
alike end up near each other, so the vectors are worth reading and reusing elsewhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def categorical_embeddings(run_dir: str | Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{column: (categories, vectors)}`` for every embedded categorical column of the run.

    Only the categories seen in training are returned (the rows for "unknown" were never
    trained). Raises UserError when the model has no categorical embeddings.
    """
    from ..training import load_model
    from ..models._inputs import FeatureInput

    model, pipeline, _meta, _recipe = load_model(run_dir)
    inputs = [m for m in model.modules() if isinstance(m, FeatureInput) and m.columns]
    if not inputs:
        raise UserError(f"{run_dir}: the model has no categorical embeddings; train it on data with "
                        f"categorical columns (data.categorical) and a model kind that embeds them (mlp, linear)")
    names = list(pipeline.info.feature_names)
    categories = pipeline.encoder.categories
    out = {}
    for column, embedding in zip(inputs[0].columns, inputs[0].embeddings):
        cats = [str(c) for c in categories.get(column, [])]
        vectors = embedding.weight.detach().cpu().numpy()[:len(cats)]
        name = names[column] if column < len(names) else f"x{column}"
        out[name] = (cats, vectors.astype(np.float32))
    return out


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal axes (zero-padded when fewer exist)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    _u, _s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = centred @ vt[:2].T
    return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))


def plot_categorical_embeddings(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """One PNG per categorical column: its categories placed on the 2-D PCA map of their vectors.
    Written to ``out_dir`` (default ``RUN/plots``) as ``embedding_<column>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir) if out_dir is not None else Path(run_dir) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for column, (cats, vectors) in categorical_embeddings(run_dir).items():
        xy = pca_2d(vectors)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.scatter(xy[:, 0], xy[:, 1], s=30)
        for (x, y), cat in zip(xy, cats):
            ax.annotate(cat, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=9)
        ax.set_title(f"embedding of '{column}' (PCA, {vectors.shape[1]}-d)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        fig.tight_layout()
        path = out_dir / f"embedding_{_safe(column)}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
