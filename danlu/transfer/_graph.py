"""Graph embeddings, DeepWalk style: random walks read as sentences, skip-gram with negative sampling.

Nodes that appear near each other on short random walks get similar vectors, so the embedding
keeps the graph's community structure: two nodes of one dense cluster end up closer (cosine)
than two nodes on either side of a sparse cut.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Hashable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import DataError


def graph_embed(edges: Iterable[Sequence[Hashable]], dim: int = 16, walks: int = 10, walk_length: int = 20,
                window: int = 4, negatives: int = 5, epochs: int = 3, lr: float = 0.05, batch_size: int = 1024,
                seed: int = 0, device=None, verbose: bool = False) -> tuple[list, np.ndarray]:
    """Embed the nodes of an undirected graph given as ``(u, v)`` edges.

    ``walks`` random walks of ``walk_length`` nodes start at every node; every pair of nodes at
    most ``window`` steps apart on a walk is a positive (centre, context) pair, scored against
    ``negatives`` nodes drawn from the unigram^0.75 distribution (word2vec's choice). Returns the
    node names (in first-seen order) and a ``(len(nodes), dim)`` float32 array.
    """
    nodes, adjacency = _adjacency(edges)
    rng = np.random.default_rng(seed)
    paths = random_walks(adjacency, walks, walk_length, rng)
    centres, contexts = skipgram_pairs(paths, window)
    counts = np.bincount(paths.ravel(), minlength=len(nodes)).astype(np.float64)
    noise = torch.as_tensor(counts ** 0.75 / (counts ** 0.75).sum())
    vectors = _train(len(nodes), dim, centres, contexts, noise, negatives, epochs, lr, batch_size, seed,
                     torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")), verbose)
    return nodes, vectors


def _adjacency(edges) -> tuple[list, list[np.ndarray]]:
    index: dict = {}
    neighbours: list[list[int]] = []
    for k, edge in enumerate(edges):
        if len(edge) < 2:
            raise DataError(f"edge {k}: expected two node names (u, v), got {edge!r}")
        ids = []
        for node in edge[:2]:
            if node not in index:
                index[node] = len(index)
                neighbours.append([])
            ids.append(index[node])
        u, v = ids
        neighbours[u].append(v)
        if u != v:
            neighbours[v].append(u)
    if not index:
        raise DataError("the graph has no edges; give at least one (u, v) pair")
    return list(index), [np.asarray(n, dtype=np.int64) for n in neighbours]


def random_walks(adjacency: list[np.ndarray], walks: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(walks * n_nodes, length) node ids; a walk stays put at a node without neighbours."""
    n = len(adjacency)
    starts = np.tile(np.arange(n), walks)
    rng.shuffle(starts)
    paths = np.empty((len(starts), length), dtype=np.int64)
    paths[:, 0] = starts
    degree = np.array([len(a) for a in adjacency])
    offsets = np.concatenate([[0], np.cumsum(degree)])
    flat = np.concatenate(adjacency) if degree.sum() else np.zeros(0, dtype=np.int64)
    for step in range(1, length):
        here = paths[:, step - 1]
        d = degree[here]
        # One uniform neighbour per walk, vectorised over all walks of this step.
        pick = np.floor(rng.random(len(here)) * np.maximum(d, 1)).astype(np.int64)
        nxt = flat[np.minimum(offsets[here] + pick, max(len(flat) - 1, 0))] if len(flat) else here
        paths[:, step] = np.where(d > 0, nxt, here)
    return paths


def skipgram_pairs(paths: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """All (centre, context) pairs at distance 1..window along each walk, both directions."""
    centres, contexts = [], []
    for gap in range(1, min(window, paths.shape[1] - 1) + 1):
        a, b = paths[:, :-gap].ravel(), paths[:, gap:].ravel()
        centres += [a, b]
        contexts += [b, a]
    return np.concatenate(centres), np.concatenate(contexts)


def _train(n_nodes, dim, centres, contexts, noise, negatives, epochs, lr, batch_size, seed, device,
           verbose) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    centre_vecs = nn.Embedding(n_nodes, dim).to(device)
    context_vecs = nn.Embedding(n_nodes, dim).to(device)
    with torch.no_grad():  # word2vec's start: small random inputs, zero outputs
        centre_vecs.weight.copy_((torch.rand(n_nodes, dim, generator=gen) - 0.5) / dim)
        context_vecs.weight.zero_()
    optimizer = torch.optim.Adam([centre_vecs.weight, context_vecs.weight], lr=lr)
    c_all, x_all = torch.as_tensor(centres), torch.as_tensor(contexts)
    for epoch in range(epochs):
        order = torch.randperm(len(c_all), generator=gen)
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            c, x = c_all[idx].to(device), x_all[idx].to(device)
            neg = torch.multinomial(noise, len(idx) * negatives, replacement=True, generator=gen)
            loss = _sgns_loss(centre_vecs(c), context_vecs(x), context_vecs(neg.to(device).view(len(idx), -1)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        if verbose:
            print(f"graph embed: epoch {epoch + 1}/{epochs} loss {total / len(order):.4f}", file=sys.stderr)
    return centre_vecs.weight.detach().cpu().numpy().astype(np.float32)


def _sgns_loss(centre: torch.Tensor, context: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Skip-gram negative sampling: pull true pairs together, push noise pairs apart."""
    pos = nn.functional.logsigmoid((centre * context).sum(-1))
    neg = nn.functional.logsigmoid(-torch.einsum("nd,nkd->nk", centre, negative)).sum(-1)
    return -(pos + neg).mean()


# --- files ----------------------------------------------------------------------------------------

def read_edges(path: str | Path) -> list[tuple[str, str]]:
    """Edges from a CSV file: the first two columns are the node names; a header row is skipped
    when its first two cells are named like ``source,target`` / ``u,v`` / ``from,to``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: edge file not found; give a CSV with two columns u,v (one edge per row)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if rows and [c.strip().lower() for c in rows[0][:2]] in _HEADERS:
        rows = rows[1:]
    for k, row in enumerate(rows):
        if len(row) < 2:
            raise DataError(f"{path}: row {k + 1} has {len(row)} cell(s); each row needs two node names u,v")
    return [(r[0].strip(), r[1].strip()) for r in rows]


_HEADERS = [["u", "v"], ["source", "target"], ["from", "to"], ["src", "dst"], ["node1", "node2"]]


def write_embeddings(nodes: Sequence, vectors: np.ndarray, path: str | Path) -> Path:
    """One row per node: ``node,e0,e1,...`` (CSV), or a safetensors file with ``vectors`` and the
    node names in its metadata when ``path`` ends in ``.safetensors``."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({"vectors": np.ascontiguousarray(vectors)}, str(path),
                  metadata={"nodes": json.dumps([str(n) for n in nodes])})
        return path
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["node", *(f"e{i}" for i in range(vectors.shape[1]))])
        for node, vec in zip(nodes, vectors):
            writer.writerow([node, *(f"{v:.6g}" for v in vec)])
    return path


def embed_graph_file(edges_csv: str | Path, output: str | Path, dim: int = 16, seed: int = 0,
                     **kwargs) -> Path:
    """``danlu embed --graph EDGES.csv``: read edges, embed, write the vectors; returns the output path."""
    nodes, vectors = graph_embed(read_edges(edges_csv), dim=dim, seed=seed, verbose=True, **kwargs)
    return write_embeddings(nodes, vectors, output)
