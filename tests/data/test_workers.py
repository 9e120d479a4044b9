"""data.workers: a streamed split's batches read ahead by DataLoader worker processes.

The oracle is the same run read in process (data.workers: 0): the same batches in the same order,
so byte-identical weights (a run killed mid-epoch with workers resumes byte-identical:
tests/data/test_streaming.py).
"""
import numpy as np
import pytest
import torch

import danlu
from danlu.data import _batches
from danlu.data._batches import read_batches
from danlu.data._prepare import prepare
from danlu.errors import RecipeError
from danlu.training._loop import batch_slice, epoch_permutation


@pytest.fixture
def npy(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(0.0, 1.0, (300, 6)).astype(np.float32)
    y = (X[:, 0] + X[:, 3] > 0).astype(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, np.column_stack([X, y]))
    return path


def _recipe(path, workers, stream=True, epochs=2):
    return {"seed": 2, "data": {"source": "npy", "path": str(path), "label": 6, "stream": stream, "workers": workers},
            "model": {"kind": "mlp", "hidden": [12], "dropout": 0.1},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "train": {"epochs": epochs, "batch_size": 16},
            "output": {"progress": "none"}}


def test_workers_read_the_same_batches_in_the_same_order(npy):
    X, y = prepare({"source": "npy", "path": str(npy), "label": 6, "stream": True}, 0).splits["train"]
    perm = epoch_permutation(5, 1, len(X), "cpu")
    batches = [perm[batch_slice(i, 7, 30, len(X))] for i in range(2, 7)]   # a resumed epoch: from batch 2
    in_process = list(read_batches(X, y, batches, workers=0))
    ahead = list(read_batches(X, y, batches, workers=3))
    assert len(ahead) == len(in_process) == 5
    for (xa, ya), (xb, yb) in zip(ahead, in_process):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert list(read_batches(X, y, [], workers=2)) == []


def test_data_in_memory_is_indexed_in_process(npy, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no DataLoader for data in memory")

    monkeypatch.setattr(_batches.torch.utils.data, "DataLoader", refuse)
    X, y = prepare({"source": "npy", "path": str(npy), "label": 6, "stream": False}, 0).splits["train"]
    got = list(read_batches(X, y, [torch.tensor([3, 1]), torch.tensor([0])], workers=4))
    assert torch.equal(got[0][0], X[torch.tensor([3, 1])]) and torch.equal(got[1][1], y[torch.tensor([0])])


def test_a_run_with_workers_is_byte_identical_to_one_without(npy, tmp_path):
    a = danlu.train(_recipe(npy, 0), tmp_path / "w0")
    b = danlu.train(_recipe(npy, 2), tmp_path / "w2")
    assert (a.path / "model.safetensors").read_bytes() == (b.path / "model.safetensors").read_bytes()
    assert (a.path / "metrics.jsonl").read_text() == (b.path / "metrics.jsonl").read_text()
    c = danlu.train(_recipe(npy, 2, stream=False), tmp_path / "mem")   # in memory: workers change nothing
    assert c.summary["test"] == pytest.approx(a.summary["test"], rel=1e-5, abs=1e-5)


def test_workers_must_be_a_count(npy):
    for bad in (-1, 1.5, "two"):
        with pytest.raises(RecipeError, match="data.workers"):
            danlu.Recipe.from_dict(_recipe(npy, bad))

# A streamed run with workers killed mid-epoch resumes byte-identical: tests/data/test_streaming.py
