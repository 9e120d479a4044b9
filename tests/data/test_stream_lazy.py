"""data.stream for image folders and for the user's own torch Datasets (map-style and iterable).

The oracle is the in-memory path on the same data: the same split, the same values, the same
scaling (to float32 rounding) and the same history; a streamed run resumes byte-identical (after a
SIGKILL for an image folder; given the Dataset again for a Dataset, which a run does not keep).
"""
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import danlu
import danlu.data._stream_images as stream_images
import danlu.models._budget as budget
from danlu.cli import main as cli_main
from danlu.data import prepare, prepare_python
from danlu.data._stream import _CACHES, StreamedArray, wants_stream
from danlu.errors import DataError, RecipeError, UserError
from danlu.recipe import DATA, check_section
from danlu.training import _checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]


# --- data -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 tiny 8x6 RGB PNGs in two class folders, the classes told apart by brightness."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for c, (name, base) in enumerate((("dark", 40), ("light", 150))):
        (root / name).mkdir()
        for i in range(20):
            pixels = np.clip(base + rng.normal(0, 40, (6, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    return root


class Items(torch.utils.data.Dataset):
    """A map-style Dataset of (x, label) pairs, x a float32 tensor."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]), self.y[i]


class Flow(torch.utils.data.IterableDataset):
    """The same items, given only in order."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __iter__(self):
        for x, y in zip(self.X, self.y):
            yield torch.from_numpy(x), y


def _items(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(2.0, 3.0, (n, 5)).astype(np.float32)
    y = np.where(X[:, 0] - X[:, 3] + rng.normal(0, 1, n) > 0, "up", "down")
    return X, y


def _same_prepared(a, b, exact=False):
    assert list(a.splits) == list(b.splits)
    for name in a.splits:
        (Xa, ya), (Xb, yb) = a.splits[name], b.splits[name]
        assert torch.equal(ya, yb), name
        assert Xa.shape == Xb.shape
        if exact:
            assert torch.equal(Xa[:], Xb[:]), name
        else:
            torch.testing.assert_close(Xa[:], Xb[:], rtol=1e-6, atol=1e-6)
    assert a.info.to_json() == b.info.to_json()
    torch.testing.assert_close(a.pipeline.scaler.shift, b.pipeline.scaler.shift, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(a.pipeline.scaler.div, b.pipeline.scaler.div, rtol=1e-6, atol=1e-7)


def _recipe(data, epochs=2, model=None):
    return {"seed": 4, "data": data,
            "model": model or {"kind": "mlp", "hidden": [8], "dropout": 0.2},
            "optimizer": {"kind": "adam", "lr": 0.01},
            "train": {"epochs": epochs, "batch_size": 8},
            "checkpoint": {"every_epochs": 1},
            "output": {"progress": "none"}}


def _history(run):
    return [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]


def _same_history(a, b):
    ha, hb = _history(a), _history(b)
    assert len(ha) == len(hb) and len(ha) >= 2
    for ra, rb in zip(ha, hb):
        assert ra.keys() == rb.keys()
        for key, value in ra.items():
            if isinstance(value, float):
                assert rb[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            elif key not in ("time", "seconds", "wall_s"):
                assert rb[key] == value, key


# --- image folders ----------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"image_size": [4, 5], "grayscale": False}])
def test_streamed_image_folder_prepares_as_in_memory(images, extra, monkeypatch):
    data = {"source": "images", "path": str(images), **extra}
    mem, streamed = prepare({**data, "stream": False}, 2), prepare({**data, "stream": True}, 2)
    assert isinstance(mem.splits["train"][0], torch.Tensor)
    assert isinstance(streamed.splits["train"][0], StreamedArray)
    _same_prepared(mem, streamed, exact=True)   # the same read_image: the same pixels
    assert streamed.pipeline.reader == mem.pipeline.reader
    # rows are decoded when read, and only those asked for
    decoded = []
    real = stream_images.read_image
    monkeypatch.setattr(stream_images, "read_image", lambda path, *a: decoded.append(path) or real(path, *a))
    X = streamed.splits["train"][0]
    got = X[torch.tensor([3, 0, 3])]
    assert len(decoded) == 3
    assert torch.equal(got, mem.splits["train"][0][torch.tensor([3, 0, 3])])


def test_auto_streams_an_image_folder_larger_than_a_share_of_free_memory(images, monkeypatch):
    cfg = check_section(DATA, {"source": "images", "path": str(images)}, "data", "recipe")
    size = 40 * 1 * 6 * 8 * 4   # n images x C x H x W x float32, H and W from the first image's header
    assert wants_stream(cfg, "recipe", available=4 * size + 4) is False
    assert wants_stream(cfg, "recipe", available=4 * size - 4) is True
    sized = check_section(DATA, {"source": "images", "path": str(images), "image_size": [3, 3],
                                 "grayscale": False}, "data", "recipe")
    assert wants_stream(sized, "recipe", available=4 * 40 * 27 * 4 - 4) is True
    monkeypatch.setattr(budget, "available_memory", lambda: 2 * size)
    assert isinstance(prepare({"source": "images", "path": str(images)}, 0).splits["test"][0], StreamedArray)


def test_an_unreadable_image_is_named(images, tmp_path):
    folder = tmp_path / "broken"
    for d in images.iterdir():
        (folder / d.name).mkdir(parents=True)
        for f in d.iterdir():
            (folder / d.name / f.name).write_bytes(f.read_bytes())
    (folder / "light" / "07.png").write_bytes(b"not an image at all")
    for stream in (False, True):   # the same line as in memory
        with pytest.raises(DataError, match=r"light/07\.png: cannot read the image .*remove or replace the file"
                           ) as err:
            prepare({"source": "images", "path": str(folder), "stream": stream}, 0)
        assert "\n" not in str(err.value)
    (folder / "dark" / "00.png").write_bytes(b"nor this")   # the first image, whose size the others take
    for stream in (False, True):
        with pytest.raises(DataError, match=r"dark/00\.png: cannot read the image"):
            prepare({"source": "images", "path": str(folder), "stream": stream}, 0)
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="class folder has no images"):
        prepare({"source": "images", "path": str(empty), "stream": True}, 0)


def test_a_streamed_image_run_gives_the_in_memory_history(images, tmp_path):
    data = {"source": "images", "path": str(images)}
    mem = danlu.train(_recipe({**data, "stream": False}), tmp_path / "mem")
    streamed = danlu.train(_recipe({**data, "stream": True}), tmp_path / "streamed")
    _same_history(mem, streamed)
    assert streamed.summary["test"]["accuracy"] == pytest.approx(mem.summary["test"]["accuracy"])


def test_streamed_images_decoded_by_workers_train_the_same(images, tmp_path):
    data = {"source": "images", "path": str(images), "stream": True}
    alone = danlu.train(_recipe({**data, "workers": 0}, epochs=1), tmp_path / "alone")
    helped = danlu.train(_recipe({**data, "workers": 2}, epochs=1), tmp_path / "helped")
    assert (alone.path / "model.safetensors").read_bytes() == (helped.path / "model.safetensors").read_bytes()


def _cli(*args, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "danlu", *args], capture_output=True, text=True, env=full,
                          cwd=ROOT, timeout=300)


def test_a_streamed_image_run_killed_mid_epoch_resumes_byte_identical(images, tmp_path):
    recipe = _recipe({"source": "images", "path": str(images), "stream": True})
    recipe["checkpoint"] = {"every_epochs": 1, "every_steps": 2, "keep_last": 2}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    danlu.train(str(path), tmp_path / "ref")   # the uninterrupted run (the CLI's code path, in this process)
    killed = _cli("train", str(path), "--run-dir", str(tmp_path / "killed"), env={"DANLU_KILL_AT": "before_rename:4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    newest = ck.list_checkpoints(tmp_path / "killed" / "checkpoints")[-1]
    assert ck.read_checkpoint(newest)[1]["position"]["batch"] > 0, "killed after a mid-epoch checkpoint"
    danlu.resume(tmp_path / "killed", progress="none")   # in this process: the killed run's checkpoint is all it has
    assert ((tmp_path / "ref" / "model.safetensors").read_bytes()
            == (tmp_path / "killed" / "model.safetensors").read_bytes())


# --- torch Datasets ---------------------------------------------------------------------------

def test_a_streamed_dataset_prepares_as_in_memory():
    X, y = _items()
    mem = prepare_python(Items(X, y), {"stream": False}, 3)
    streamed = prepare_python(Items(X, y), {"stream": True}, 3)
    assert isinstance(mem.splits["train"][0], torch.Tensor)
    assert isinstance(streamed.splits["train"][0], StreamedArray)
    _same_prepared(mem, streamed)
    # the reader is the in-memory one, plus the fingerprint a resumed run checks
    fingerprint = streamed.pipeline.reader["python"].pop("fingerprint")
    assert set(fingerprint) == {"items", "labels"}
    assert streamed.pipeline.reader == mem.pipeline.reader
    # a DataLoader's dataset streams the same way
    loader = torch.utils.data.DataLoader(Items(X, y), batch_size=8)
    _same_prepared(streamed, prepare_python(loader, {"stream": True}, 3))


def test_auto_streams_a_dataset_larger_than_a_share_of_free_memory(monkeypatch):
    X, y = _items()
    size = 200 * 5 * 4   # len(dataset) x the float32 bytes of item 0's x
    monkeypatch.setattr(budget, "available_memory", lambda: 4 * size + 4)
    assert isinstance(prepare_python(Items(X, y), {}, 0).splits["train"][0], torch.Tensor)
    monkeypatch.setattr(budget, "available_memory", lambda: 4 * size - 4)
    assert isinstance(prepare_python(Items(X, y), {}, 0).splits["train"][0], StreamedArray)
    monkeypatch.setattr(budget, "available_memory", lambda: None)   # unknown: kept in memory
    assert isinstance(prepare_python(Items(X, y), {}, 0).splits["train"][0], torch.Tensor)


def test_an_iterable_dataset_in_memory_and_streamed(monkeypatch):
    X, y = _items()
    oracle = prepare_python(Items(X, y), {"stream": False}, 3)
    mem = prepare_python(Flow(X, y), {"stream": False}, 3)
    assert isinstance(mem.splits["train"][0], torch.Tensor)
    _same_prepared(oracle, mem, exact=True)
    streamed = prepare_python(Flow(X, y), {"stream": True}, 3)
    X_train = streamed.splits["train"][0]
    assert isinstance(X_train, StreamedArray)
    _same_prepared(oracle, streamed)
    # the items went to a cache file in a folder danlu made, removed once nothing reads it
    cache = Path(X_train.source.path)
    assert cache.is_file() and cache.parent in _CACHES and cache.stat().st_size == 200 * 5 * 4
    del streamed, X_train
    gc.collect()
    assert not cache.parent.exists() and cache.parent not in _CACHES
    # auto: in memory until the items pass the share of free memory, then the cache
    monkeypatch.setattr(budget, "available_memory", lambda: 4 * 100 * 5 * 4)
    moved = prepare_python(Flow(X, y), {}, 3)
    assert isinstance(moved.splits["train"][0], StreamedArray)
    _same_prepared(oracle, moved)


class Pairs(torch.utils.data.IterableDataset):
    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


@pytest.mark.parametrize("stream", [False, True])
def test_bad_items_are_one_line_in_memory_and_streamed(stream, monkeypatch):
    good = [(torch.zeros(3), 0)] * 4
    cases = [
        (Pairs(good + [torch.zeros(3)] + good), r"^Dataset Pairs: item 4 is a Tensor, not an \(x, y\) pair"),
        (Pairs(good + [(torch.zeros(4), 1)]), r"^Dataset Pairs: item 4 has x of shape \(4,\) but item 0 has \(3,\)"),
        (Pairs([]), r"^Dataset Pairs: no items; the data set is empty"),
        (Items(np.zeros((6, 2), np.float32) + [[0, np.nan]], np.arange(6) % 2),
         r"^Dataset Items: (missing values in 'x1'|column 'x1' has a missing value \(NaN\) on row 0)"),
    ]
    made = []
    monkeypatch.setattr(tempfile, "mkdtemp", lambda real=tempfile.mkdtemp, **kw: made.append(real(**kw)) or made[-1])
    for data, message in cases:
        with pytest.raises(DataError, match=message) as err:
            prepare_python(data, {"stream": stream}, 0)
        assert "\n" not in str(err.value)
    assert len(made) == (2 if stream else 0)   # streamed: the bad items came after the cache was begun
    assert not any(Path(folder).exists() for folder in made), "a cache left behind by a refused Dataset"
    with pytest.raises(RecipeError, match="data.impute: mean needs the data in memory"):
        prepare_python(Items(*_items()), {"stream": True, "impute": "mean"}, 0)


def test_a_streamed_dataset_run_resumes_given_the_data_again(tmp_path, capsys):
    X, y = _items()
    whole = danlu.train(_recipe({"stream": True}), tmp_path / "whole", data=Items(X, y))
    mem = danlu.train(_recipe({"stream": False}), tmp_path / "mem", data=Items(X, y))
    _same_history(mem, whole)
    assert not (whole.path / "data.safetensors").exists()   # the run does not keep the data

    class Interrupted(Exception):
        pass

    class StopAfterEpoch1:
        def on_epoch_start(self, state):
            if state.epoch == 1:
                raise Interrupted

    cut = tmp_path / "cut"
    with pytest.raises(Interrupted):
        danlu.train(_recipe({"stream": True}), cut, data=Items(X, y), callbacks=[StopAfterEpoch1()])
    assert not (cut / "summary.json").exists()

    # without the data: one line that says to pass it again (Python and the command line alike)
    with pytest.raises(UserError, match=r"trained on a streamed Dataset Items of 200 items, which a run does not "
                                        r"keep; pass the same data again from Python: danlu.resume\(.*data=\.\.\.\)"):
        danlu.resume(cut)
    assert cli_main(["resume", str(cut)]) == 2
    err = capsys.readouterr().err
    assert "pass the same data again" in err and len(err.strip().splitlines()) == 1

    # other data: refused in one line, before any training
    flipped = y.copy()
    flipped[11] = "up" if y[11] == "down" else "down"
    with pytest.raises(DataError, match=r"^Dataset Items: is not the data this run was trained on \(its labels "
                                        r"differ\)"):
        danlu.resume(cut, data=Items(X, flipped))
    changed = X.copy()
    changed[0, 2] += 1.0
    with pytest.raises(DataError, match=r"is not the data this run was trained on \(its items differ\)"):
        danlu.resume(cut, data=Items(changed, y))
    with pytest.raises(UserError, match="pass that Dataset again, not a tuple"):
        danlu.resume(cut, data=(X, y))

    resumed = danlu.resume(cut, data=Items(X, y))
    assert (resumed.path / "model.safetensors").read_bytes() == (whole.path / "model.safetensors").read_bytes()
    assert resumed.summary["test"] == whole.summary["test"]
    # evaluating the finished run needs the data too: the same one line
    assert cli_main(["eval", str(whole.path)]) == 2
    err = capsys.readouterr().err
    assert "pass the same data again" in err and len(err.strip().splitlines()) == 1
    # predict needs only the run's pipeline: arrays in, the in-memory run's predictions out
    assert list(danlu.predict(whole.path, X[:40])) == list(danlu.predict(mem.path, X[:40]))
    # a run that keeps its data is resumed without it
    with pytest.raises(UserError, match="keeps the data it was trained on"):
        danlu.resume(mem.path, ck.list_checkpoints(mem.path / "checkpoints")[-1].name, data=Items(X, y))
