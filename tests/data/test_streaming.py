"""data.stream: .npy / .npz rows read from the file batch by batch.

The oracle is the in-memory path on the same file: the same split, the same scaling (to float32
rounding), the same metrics; a streamed run killed in a checkpoint write resumes byte-identical.
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
from danlu.data._prepare import prepare
from danlu.data._stream import StreamedArray, wants_stream
from danlu.errors import DataError, RecipeError
from danlu.recipe import DATA, check_section
from danlu.training import _checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]


def _table(n=240, width=7, seed=0):
    """A classification table (float32) with the label in column 2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(3.0, 2.0, (n, width)).astype(np.float32)
    y = ((X[:, 0] - X[:, 4] + 0.5 * rng.normal(size=n)) > 0).astype(np.float32) + (X[:, 5] > 4)
    return np.insert(X, 2, y, axis=1)


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, _table())
    return path


def _data(path, stream, **extra):
    return {"source": "npy", "path": str(path), "label": 2, "stream": stream, **extra}


def _same_prepared(a, b):
    assert a.splits.keys() == b.splits.keys()
    for name in a.splits:
        (Xa, ya), (Xb, yb) = a.splits[name], b.splits[name]
        assert torch.equal(ya, yb), name
        assert Xa.shape == Xb.shape
        torch.testing.assert_close(Xa[:], Xb[:], rtol=1e-6, atol=1e-6)
    assert a.info.to_json() == b.info.to_json()
    assert a.pipeline.reader == b.pipeline.reader
    torch.testing.assert_close(a.pipeline.scaler.shift, b.pipeline.scaler.shift, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.pipeline.scaler.div, b.pipeline.scaler.div, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("extra", [{}, {"features": [0, 6, 3, 1]}, {"scale": "normalize"},
                                   {"split": {"stratify": False}}])
def test_streamed_npy_prepares_as_in_memory(npy, extra):
    mem, streamed = prepare(_data(npy, False, **extra), 3), prepare(_data(npy, True, **extra), 3)
    assert isinstance(mem.splits["train"][0], torch.Tensor)
    assert isinstance(streamed.splits["train"][0], StreamedArray)
    _same_prepared(mem, streamed)
    X = streamed.splits["train"][0]
    idx = torch.tensor([5, 0, 17, 5])   # the loop's X[permutation slice], repeated rows included
    torch.testing.assert_close(X[idx], mem.splits["train"][0][idx], rtol=1e-6, atol=1e-6)
    assert X.to("cpu").device == torch.device("cpu") and len(X) == len(mem.splits["train"][0])
    # torch functions see a float tensor (the monitors ask); others read the rows
    assert torch.is_floating_point(X)
    torch.testing.assert_close(torch.mean(X, 0), mem.splits["train"][0].mean(0))


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_streamed_npz_prepares_as_in_memory(tmp_path, save):
    # (N, T, F) sequences: scaling per feature on axis 2, as in memory
    rng = np.random.default_rng(1)
    X = rng.normal(1.0, 3.0, (150, 5, 2))
    y = np.where(X[:, :, 0].sum(1) > 5, "up", "down")
    path = tmp_path / "s.npz"
    save(path, X=X, y=y)
    data = {"source": "npy", "path": str(path)}
    mem, streamed = prepare({**data, "stream": False}, 0), prepare({**data, "stream": True}, 0)
    assert isinstance(streamed.splits["test"][0], StreamedArray)
    _same_prepared(mem, streamed)
    assert streamed.info.kind == "sequence" and streamed.pipeline.labels.classes == ["down", "up"]


def _recipe(path, stream, epochs=3, **train):
    return {"seed": 4, "data": _data(path, stream),
            "model": {"kind": "mlp", "hidden": [16], "dropout": 0.2},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "train": {"epochs": epochs, "batch_size": 32, **train},
            "output": {"progress": "none"}}


def test_streamed_run_gives_the_in_memory_metrics_and_predicts_files(npy, tmp_path):
    mem = danlu.train(_recipe(npy, False), tmp_path / "mem")
    streamed = danlu.train(_recipe(npy, True), tmp_path / "streamed")
    for split in ("train", "validation", "test"):
        for key, value in mem.summary[split].items():
            assert streamed.summary[split][key] == pytest.approx(value, rel=1e-5, abs=1e-5), (split, key)
    # the run's pipeline reads new rows from a file as for any run
    new = tmp_path / "new.npy"
    np.save(new, _table(n=20, seed=9))
    got_mem, got_streamed = mem.predict(str(new)), streamed.predict(str(new))
    assert [r["prediction"] for r in got_streamed] == [r["prediction"] for r in got_mem]


def test_auto_streams_only_data_larger_than_a_share_of_free_memory(npy, monkeypatch):
    import danlu.models._budget as budget

    cfg = check_section(DATA, _data(npy, "auto"), "data", "recipe")
    size = 240 * 7 * 4   # the float32 features
    assert wants_stream(cfg, "recipe", available=10 * size) is False
    assert wants_stream(cfg, "recipe", available=3 * size) is True
    monkeypatch.setattr(budget, "available_memory", lambda: 3 * size)
    assert isinstance(prepare(_data(npy, "auto"), 0).splits["train"][0], StreamedArray)
    monkeypatch.setattr(budget, "available_memory", lambda: None)   # unknown: kept in memory
    assert isinstance(prepare(_data(npy, "auto"), 0).splits["train"][0], torch.Tensor)
    # sources that are read whole never stream on their own
    assert wants_stream(check_section(DATA, {"source": "sklearn", "name": "iris"}, "data", "r"), "r", 1) is False


def test_default_small_run_is_byte_identical_to_stream_false(npy, tmp_path):
    recipe = _recipe(npy, False, epochs=2)
    del recipe["data"]["stream"]   # default: auto
    a = danlu.train(recipe, tmp_path / "auto")
    b = danlu.train(_recipe(npy, False, epochs=2), tmp_path / "false")
    assert (a.path / "model.safetensors").read_bytes() == (b.path / "model.safetensors").read_bytes()


def _cli(*args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True, env=full,
                          cwd=ROOT, timeout=300)


def test_streamed_run_killed_in_a_checkpoint_write_resumes_byte_identical(npy, tmp_path):
    import yaml

    recipe = _recipe(npy, True, epochs=2)
    recipe["data"]["workers"] = 2   # batches read ahead by worker processes: the same batches, the same resume
    recipe["checkpoint"] = {"every_epochs": 1, "every_steps": 2, "keep_last": 2}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    danlu.train(str(path), tmp_path / "ref")   # the uninterrupted run (the CLI's code path, in this process)
    killed = _cli("train", str(path), "--run-dir", str(tmp_path / "killed"), env={"DANLU_KILL_AT": "before_rename:3"})
    assert killed.returncode == -signal.SIGKILL
    newest = ck.list_checkpoints(tmp_path / "killed" / "checkpoints")[-1]
    assert ck.read_checkpoint(newest)[1]["position"]["batch"] > 0, "killed after a mid-epoch checkpoint"
    danlu.resume(tmp_path / "killed", progress="none")   # in this process: the killed run's checkpoint is all it has
    assert ((tmp_path / "ref" / "model.safetensors").read_bytes()
            == (tmp_path / "killed" / "model.safetensors").read_bytes())


def test_bad_streamed_files_are_one_line(tmp_path, npy):
    bad = _table()
    bad[7, 4] = np.nan
    nan = tmp_path / "nan.npy"
    np.save(nan, bad)
    with pytest.raises(DataError, match=r"nan\.npy: column 'col4' has a missing value \(NaN\) on row 7"):
        prepare(_data(nan, True), 0)
    cut = tmp_path / "cut.npy"
    cut.write_bytes(npy.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        prepare(_data(cut, True), 0)
    text = tmp_path / "text.npy"
    np.save(text, np.array([["a", "b"]] * 4))
    with pytest.raises(DataError, match="plain numeric array"):
        prepare(_data(text, True), 0)
    fortran = tmp_path / "f.npy"
    np.save(fortran, np.asfortranarray(_table()))
    with pytest.raises(DataError, match="Fortran"):
        prepare(_data(fortran, True), 0)
    z = tmp_path / "z.npz"
    np.savez(z, X=np.ones((4, 2)), y=np.arange(4))
    with pytest.raises(DataError, match="no array 'XX'"):
        prepare({"source": "npy", "path": str(z), "features": ["XX"], "stream": True}, 0)
    with pytest.raises(RecipeError, match="data.stream: true reads .npy or .npz"):
        prepare({"source": "sklearn", "name": "iris", "stream": True}, 0)
    with pytest.raises(RecipeError, match="data.impute: mean needs the data in memory"):
        prepare(_data(npy, True, impute="mean"), 0)
    with pytest.raises(DataError) as info:
        prepare(_data(npy, True, label=40), 0)
    assert "\n" not in str(info.value) and "data.label" in str(info.value)


def test_an_extracted_npz_member_is_removed_when_nothing_reads_it(tmp_path):
    import gc

    z = tmp_path / "c.npz"
    np.savez_compressed(z, X=_table()[:, :4], y=np.arange(240) % 2)
    prepared = prepare({"source": "npy", "path": str(z), "stream": True}, 0)
    folder = prepared.splits["train"][0].source.path.parent
    assert folder != tmp_path and (folder / "X.npy").is_file()
    assert (folder / "owner").read_text().split()[0] == str(os.getpid())   # a killed process's goes later
    del prepared
    gc.collect()
    assert not folder.exists()
