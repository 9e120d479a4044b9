"""Graph embeddings (DeepWalk-style) and the walks and pairs they are trained from."""
import numpy as np
import pytest

from danlu.errors import DataError
from danlu.transfer import embed_graph_file, graph_embed, random_walks, read_edges, skipgram_pairs


def _two_communities(size=10):
    left = [(f"a{i}", f"a{j}") for i in range(size) for j in range(i + 1, size)]
    right = [(f"b{i}", f"b{j}") for i in range(size) for j in range(i + 1, size)]
    return left + right + [("a0", "b0")]          # one bridge


def _cosine(vectors):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def test_same_community_is_closer_than_across():
    nodes, vectors = graph_embed(_two_communities(), dim=16, walks=5, seed=0)
    assert vectors.shape == (20, 16) and vectors.dtype == np.float32
    sim = _cosine(vectors)
    group = np.array([n.startswith("a") for n in nodes])
    same = sim[group[:, None] == group[None, :]]
    across = sim[group[:, None] != group[None, :]]
    mean_same = (same.sum() - len(nodes)) / (len(same) - len(nodes))  # the diagonal is 1
    assert mean_same > across.mean() + 0.3
    # Every single node is closer to its own community's centroid than to the other one.
    for i, in_a in enumerate(group):
        own = sim[i, group == in_a].mean()
        other = sim[i, group != in_a].mean()
        assert own > other, nodes[i]


def test_same_seed_same_vectors():
    a = graph_embed(_two_communities(5), dim=4, walks=2, epochs=1, seed=3)[1]
    b = graph_embed(_two_communities(5), dim=4, walks=2, epochs=1, seed=3)[1]
    np.testing.assert_array_equal(a, b)


def test_walks_follow_edges_and_pairs_respect_the_window():
    adjacency = [np.array([1]), np.array([0, 2]), np.array([1]), np.array([], dtype=np.int64)]  # path + isolated
    paths = random_walks(adjacency, walks=3, length=6, rng=np.random.default_rng(0))
    assert paths.shape == (12, 6)
    for path in paths:
        for u, v in zip(path[:-1], path[1:]):
            assert (u == 3 and v == 3) or v in adjacency[u]
    centres, contexts = skipgram_pairs(np.array([[0, 1, 2, 3]]), window=2)
    assert sorted(zip(centres.tolist(), contexts.tolist())) == sorted(
        [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2), (0, 2), (2, 0), (1, 3), (3, 1)])


def test_edge_file_round_trip(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("source,target\n" + "\n".join(f"{u},{v}" for u, v in _two_communities(4)) + "\n")
    assert read_edges(path)[0] == ("a0", "a1")
    out = embed_graph_file(path, tmp_path / "vectors.csv", dim=3, walks=2, epochs=1)
    lines = out.read_text().splitlines()
    assert lines[0] == "node,e0,e1,e2" and len(lines) == 9
    from safetensors.numpy import load_file

    st = embed_graph_file(path, tmp_path / "vectors.safetensors", dim=3, walks=2, epochs=1)
    assert load_file(str(st))["vectors"].shape == (8, 3)
    bad = tmp_path / "bad.csv"
    bad.write_text("a0\n")
    with pytest.raises(DataError, match="two node names"):
        read_edges(bad)
    with pytest.raises(DataError, match="not found"):
        read_edges(tmp_path / "missing.csv")
