"""data.workers: a streamed split's batches read ahead by DataLoader worker processes.

The oracle is the same run read in process (data.workers: 0): the same batches in the same order,
so byte-identical weights, and a run killed mid-epoch resumes byte-identical with workers too.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import danlu
from danlu.data import _batches
from danlu.data._batches import read_batches
from danlu.data._prepare import prepare
from danlu.errors import RecipeError
from danlu.training import _checkpoint as ck
from danlu.training._loop import batch_slice, epoch_permutation

ROOT = Path(__file__).resolve().parents[2]


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


def test_killed_mid_epoch_with_workers_resumes_byte_identical(npy, tmp_path):
    import yaml

    recipe = _recipe(npy, 2)
    recipe["checkpoint"] = {"every_epochs": 1, "every_steps": 3, "keep_last": 2}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    danlu.train(str(path), tmp_path / "ref")
    env = {**os.environ, "DANLU_KILL_AT": "before_rename:4"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True,
                                       env=env if args[0] == "train" else dict(os.environ), cwd=ROOT, timeout=300)
    killed = run("train", str(path), "--run-dir", str(tmp_path / "killed"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    newest = ck.list_checkpoints(tmp_path / "killed" / "checkpoints")[-1]
    assert ck.read_checkpoint(newest)[1]["position"]["batch"] > 0, "killed after a mid-epoch checkpoint"
    resumed = run("resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert ((tmp_path / "ref" / "model.safetensors").read_bytes()
            == (tmp_path / "killed" / "model.safetensors").read_bytes())
