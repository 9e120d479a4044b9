"""``embed``: vectors for rows or sentences, their nearest neighbours, and a 2-D map (嵌入, 潜在空间).

The vectors come from the packaged MiniLM sentence encoder (``source="minilm"``) or from any
finished run: what its last ``nn.Linear`` receives — the penultimate layer — caught with a forward
hook, so every model kind works without knowing its structure.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DataError, UserError


@dataclass
class Embedding:
    vectors: np.ndarray          # (N, D) float32
    ids: list                    # one identifier per row (row number, file name)
    labels: list | None          # label of each row when the input carried them
    texts: list | None = None    # the sentences, for text inputs


def embed(source: str | Path, input_path: str | Path, *, text_column: str = "text", label_column: str = "label",
          max_length: int = 64) -> Embedding:
    """Vectors of the rows in ``input_path``; ``source`` is ``"minilm"`` or a run directory."""
    if str(source) == "minilm":
        return _embed_sentences(Path(input_path), text_column, label_column, max_length)
    return _embed_with_run(Path(source), Path(input_path))


def _embed_sentences(path: Path, text_column: str, label_column: str, max_length: int) -> Embedding:
    from ._backbone import encode_texts
    from ._text import read_text_csv

    if path.suffix.lower() == ".txt":   # one sentence a line
        if not path.is_file():
            raise DataError(f"{path}: file not found; give a .txt file (one sentence a line) or a CSV file")
        texts, labels = [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()], None
    else:
        texts, labels = read_text_csv(path, text_column, label_column)
    if not texts:
        raise DataError(f"{path}: no sentences to embed")
    vectors = encode_texts(texts, max_length).numpy()
    return Embedding(vectors, list(range(len(texts))), labels, texts)


def _embed_with_run(run_dir: Path, path: Path) -> Embedding:
    from ._text import is_text_run

    if is_text_run(run_dir):
        from ._finetune import load_text_model

        model, pipeline, _meta, _recipe = load_text_model(run_dir)
    else:
        from ..training import load_model

        model, pipeline, _meta, _recipe = load_model(run_dir)
    X, rows = pipeline.load_input(str(path))
    return Embedding(penultimate(model, X), rows.ids, rows.labels)


@torch.no_grad()
def penultimate(model: nn.Module, X: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """What the model's last ``nn.Linear`` receives, for every row of X (a forward hook)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("this run's model has no linear layer to read a penultimate vector from "
                        "(classical models have none); embed a neural run or use minilm")
    caught: list[torch.Tensor] = []
    handle = linears[-1].register_forward_hook(lambda _m, inputs, _out: caught.append(inputs[0].detach().float().cpu()))
    try:
        device = next(model.parameters()).device
        model.eval()
        for start in range(0, len(X), batch_size):
            model(X[start:start + batch_size].to(device))
    finally:
        handle.remove()
    return torch.cat(caught).flatten(1).numpy()


def nearest_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine similarities), each (N, k): the k most similar other rows, best first."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)   # a row is not its own neighbour
    k = min(k, len(vectors) - 1)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def map_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Two coordinates per row: PCA, or t-SNE (perplexity capped for small inputs)."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(vectors)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(max(2, min(30, (len(vectors) - 1) // 3)))
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(vectors)
    raise UserError(f"--method must be pca or tsne; got {method!r}")


def plot_map(points: np.ndarray, labels: list | None, path: str | Path, title: str) -> Path:
    """A scatter of the 2-D map, one colour per label when labels exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=12, alpha=0.8)
    else:
        names = [str(v) for v in labels]
        for name in sorted(set(names)):
            mask = np.array([n == name for n in names])
            ax.scatter(points[mask, 0], points[mask, 1], s=12, alpha=0.8, label=name)
        ax.legend(fontsize=8, markerscale=1.5)
    ax.set_title(title)
    ax.set_xlabel("dimension 1")
    ax.set_ylabel("dimension 2")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_vectors(emb: Embedding, path: str | Path) -> Path:
    """``.npy`` (the matrix alone) or ``.csv`` (id, label, v0 ... v{D-1})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, emb.vectors.astype(np.float32), allow_pickle=False)
        return path
    if path.suffix.lower() != ".csv":
        raise UserError(f"{path}: the output must end in .npy or .csv")
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        head = ["id"] + (["label"] if emb.labels is not None else [])
        writer.writerow(head + [f"v{j}" for j in range(emb.vectors.shape[1])])
        for i, row in enumerate(emb.vectors):
            first = [emb.ids[i]] + ([emb.labels[i]] if emb.labels is not None else [])
            writer.writerow(first + [f"{v:.6g}" for v in row])
    return path


def write_neighbours(emb: Embedding, k: int, path: str | Path) -> Path:
    """One line per (row, neighbour): id, rank, neighbour id, cosine (and texts / labels if known)."""
    index, sims = nearest_neighbours(emb.vectors, k)
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        extra = (["text", "neighbour_text"] if emb.texts else []) + (["label", "neighbour_label"] if emb.labels else [])
        writer.writerow(["id", "rank", "neighbour", "cosine"] + extra)
        for i in range(len(index)):
            for rank, (j, s) in enumerate(zip(index[i], sims[i]), start=1):
                row = [emb.ids[i], rank, emb.ids[j], f"{s:.4f}"]
                if emb.texts:
                    row += [emb.texts[i], emb.texts[j]]
                if emb.labels:
                    row += [emb.labels[i], emb.labels[j]]
                writer.writerow(row)
    return path
