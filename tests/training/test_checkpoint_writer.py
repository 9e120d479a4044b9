"""Checkpoints written on a background thread: the content is the state at the save, at most one
write is in flight (a save waits for the one before), a failed write is raised in the training
thread at the next save or at the end of the fit as the same one line as a write in the
foreground, and what lists or reads checkpoints waits for the write in flight."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import danlu
from danlu import _integrity as integrity
from danlu.cli import main
from danlu._integrity import StorageError
from danlu.errors import CheckpointError, UserError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck
from danlu.training._callbacks import Checkpointer

RECIPE = {"seed": 3, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [8]},
          "optimizer": {"kind": "adam", "lr": 0.01}, "train": {"epochs": 3, "batch_size": 32},
          "checkpoint": {"every_epochs": 1, "keep_last": 5}, "output": {"progress": "none"}}
STEPS_PER_EPOCH = 4   # 150 rows of iris, 70% for training, batches of 32
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The recipe's run, never interrupted."""
    return danlu.train(Recipe.from_dict(RECIPE), tmp_path_factory.mktemp("reference") / "run").path


def _same_weights(a: Path, b: Path) -> bool:
    return (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def _on_disk(ckpt_root: Path) -> list[str]:
    """The folder's entries as they are now (ck.list_checkpoints would wait for the write in flight)."""
    return sorted(os.listdir(ckpt_root)) if ckpt_root.is_dir() else []


class Step:
    def __init__(self, step):
        self.step = step


def test_the_snapshot_is_the_state_at_the_save_not_later(tmp_path):
    weights = {"w": torch.ones(3)}
    moments = {"state": {0: {"exp_avg": torch.zeros(2)}}, "history": [{"loss": 1.0}]}
    snap = ck.snapshot(tmp_path, 7, weights, moments)
    weights["w"].add_(5)                                  # the next training step
    moments["state"][0]["exp_avg"].add_(1)
    moments["history"].append({"loss": 0.5})
    ck.write_snapshot(snap)
    model, state = ck.read_checkpoint(tmp_path / "step-00000007")
    assert torch.equal(model["w"], torch.ones(3))
    assert torch.equal(state["state"][0]["exp_avg"], torch.zeros(2))
    assert state["history"] == [{"loss": 1.0}]


def test_a_state_json_cannot_hold_fails_at_the_save_itself(tmp_path):
    saver = Checkpointer(tmp_path, collect=lambda: ({"w": torch.ones(1)}, {"bad": {1, 2}}))
    with pytest.raises(TypeError, match="set"):
        saver.save(Step(1))
    assert saver._writing is None                         # nothing was started


def _leaf_by_leaf(obj, tensors, prefix="t"):
    """split_tensors as it was before its fast paths for plain containers: the oracle."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _leaf_by_leaf(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {"__items__": [[k, _leaf_by_leaf(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_leaf_by_leaf(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_leaf_by_leaf(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj


def test_split_tensors_gives_what_splitting_leaf_by_leaf_gives():
    import random

    state = {"rng": ck.capture_rng(), "python": random.getstate(), "floats": [0.5, 1, None, True, "x"],
             "numpy": [np.float32(0.25), 3], "pair": (1, 2.0), "mixed": (torch.ones(2), [torch.zeros(1), 4]),
             "ints": {0: {"exp_avg": torch.arange(3.0), "step": torch.tensor(5.0)}, 1: [1, 2]},
             "flat": {"a": 1.5, "b": None}, "deep": [{"a": [1, 2], "b": (np.int64(3),)}], "empty": ([], {}, ())}
    ours, theirs = {}, {}
    meta = ck.split_tensors(state, ours)
    assert meta == _leaf_by_leaf(state, theirs)
    assert json.dumps(meta) == json.dumps(_leaf_by_leaf(state, {}))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert all(ours[k].is_contiguous() and ours[k].data_ptr() != theirs[k].data_ptr() for k in ours)
    state["flat"]["a"] = 9.0                               # the containers are the copy's own
    assert meta["flat"]["a"] == 1.5 and ck.join_tensors(meta, ours)["pair"] == (1, 2.0)


@pytest.mark.parametrize("extra", [{}, {"half": torch.randn(3).bfloat16()}])
def test_a_snapshot_writes_the_bytes_safetensors_torch_writes(tmp_path, extra):
    from safetensors.torch import save_file

    tensors = {"w": torch.randn(4, 3), "b": torch.randn(3).double(), "step": torch.tensor(7.0),
               "keys": torch.arange(5), "bits": torch.tensor([True, False]), "rng": torch.zeros(4, dtype=torch.uint8),
               "f16": torch.randn(2).half(), "i32": torch.tensor([1, -2], dtype=torch.int32), "none": torch.empty(0),
               **extra}
    owned = {k: ck.own_copy(v) for k, v in tensors.items()}
    ck.save_tensors(tmp_path / "ours.safetensors", owned, owned=True)
    save_file(tensors, str(tmp_path / "theirs.safetensors"))
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "theirs.safetensors").read_bytes()


def test_a_copy_names_the_run_it_was_taken_from(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    old = integrity.begin_run(run)
    snap = ck.snapshot(run / "checkpoints", 4, {"w": torch.ones(1)}, {})
    shutil.rmtree(run)                                     # the folder replaced before the copy is written
    run.mkdir()
    assert integrity.begin_run(run) != old
    path = ck.write_snapshot(snap)
    assert ck.verify_checkpoint(path)["run_id"] == old
    with pytest.raises(CheckpointError, match="another run"):
        ck.read_checkpoint(path)


class GatedWrites:
    """ck.write_snapshot that records when each write starts and ends and holds every write until
    ``gate`` is set."""

    def __init__(self, monkeypatch):
        self.gate, self.started, self.order = threading.Event(), threading.Event(), []
        self.real = ck.write_snapshot
        monkeypatch.setattr(ck, "write_snapshot", self)

    def __call__(self, snap):
        self.order.append(("start", snap.step))
        self.started.set()
        assert self.gate.wait(30)
        try:
            return self.real(snap)
        finally:
            self.order.append(("end", snap.step))


def _collect():
    return {"w": torch.ones(1)}, {}


def test_a_save_waits_for_the_write_before_it(tmp_path, monkeypatch):
    writes = GatedWrites(monkeypatch)
    saver = Checkpointer(tmp_path, collect=_collect)
    saver.save(Step(1))                                   # returns while the write is held
    assert writes.started.wait(30)
    assert writes.order == [("start", 1)]
    second = threading.Thread(target=saver.save, args=(Step(2),))
    second.start()
    second.join(0.2)
    assert second.is_alive(), "the second save went ahead while the first write was in flight"
    assert writes.order == [("start", 1)]
    writes.gate.set()
    second.join(30)
    saver.wait()
    assert writes.order == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]
    assert _on_disk(tmp_path / "checkpoints") == ["step-00000001", "step-00000002"]


def test_a_failed_write_is_raised_by_the_next_save_which_writes_nothing(tmp_path, monkeypatch):
    seen = []

    def full_disk_once(snap):
        seen.append(snap.step)
        if snap.step == 1:
            raise integrity.storage_error(snap.root / "step-00000001", OSError(errno.ENOSPC, "No space left"))
        return ck.write_snapshot.__wrapped__(snap)

    full_disk_once.__wrapped__ = ck.write_snapshot
    monkeypatch.setattr(ck, "write_snapshot", full_disk_once)
    saver = Checkpointer(tmp_path, collect=_collect)
    saver.save(Step(1))
    with pytest.raises(StorageError, match="No space left"):
        saver.save(Step(2))
    assert seen == [1]                                    # the second write never began
    saver.save(Step(3))                                   # the error is raised once
    saver.wait()
    assert seen == [1, 3] and _on_disk(tmp_path / "checkpoints") == ["step-00000003"]


class RefuseWrite:
    """ck._fsync_file refusing (read-only disk) the ``nth`` checkpoint's state.json."""

    def __init__(self, monkeypatch, nth):
        self.nth, self.seen, self.real = nth, 0, ck._fsync_file
        monkeypatch.setattr(ck, "_fsync_file", self)

    def __call__(self, path):
        if path.name == "state.json":
            self.seen += 1
            if self.seen == self.nth:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return self.real(path)


class Foreground:
    """ck.BackgroundWrite's interface, writing on the training thread at once (as before)."""

    def __init__(self, root, write):
        write()

    def wait(self):
        pass


def test_a_refused_write_is_raised_at_the_next_save_as_the_foreground_one_line(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:                  # the error a write in the foreground gives
        RefuseWrite(patch, nth=1)
        patch.setattr(ck, "BackgroundWrite", Foreground)
        with pytest.raises(UserError) as before:
            danlu.train(Recipe.from_dict(RECIPE), tmp_path / "foreground" / "run")
    RefuseWrite(monkeypatch, nth=1)
    run = tmp_path / "background" / "run"
    with pytest.raises(UserError) as caught:
        danlu.train(Recipe.from_dict(RECIPE), run)
    message = str(caught.value)
    assert message == str(before.value).replace(str(tmp_path / "foreground"), str(tmp_path / "background"))
    assert "\n" not in message and "read-only" in message and ck.checkpoint_name(STEPS_PER_EPOCH) in message
    # raised by epoch 2's save: two epochs were logged, epoch 2's checkpoint was never written
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert _on_disk(run / "checkpoints") == [] and not (run / "summary.json").exists()


def test_a_refused_last_write_is_raised_at_fit_end_and_the_cli_says_it_in_one_line(tmp_path, monkeypatch,
                                                                                  reference, capsys):
    RefuseWrite(monkeypatch, nth=3)                       # the last epoch's: no save comes after it
    recipe = tmp_path / "r.yaml"
    recipe.write_text(Recipe.from_dict(RECIPE).to_yaml())
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlu: error: ") and len(err.splitlines()) == 1, err
    assert "read-only" in err.lower() and ck.checkpoint_name(3 * STEPS_PER_EPOCH) in err
    assert not (run / "summary.json").exists()            # the run's final files come after the checkpoint
    assert [p.name for p in ck.list_checkpoints(run / "checkpoints")] == [
        ck.checkpoint_name(STEPS_PER_EPOCH), ck.checkpoint_name(2 * STEPS_PER_EPOCH)]
    monkeypatch.undo()
    danlu.resume(run)
    assert _same_weights(reference, run)


class Crash(Exception):
    pass


class CrashAfterEpoch:
    """Given after the default callbacks: raises once epoch ``epoch``'s checkpoint is saved."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise Crash()


def test_a_crash_releases_the_run_only_once_the_write_in_flight_landed_and_resume_is_bit_identical(
        tmp_path, monkeypatch, reference):
    writes = GatedWrites(monkeypatch)
    writes.gate.set()                                     # epoch 1's write goes through
    real_join = ck.BackgroundWrite.join

    def join(self):                                       # a wait for the held write lets it go
        writes.gate.set()
        real_join(self)

    monkeypatch.setattr(ck.BackgroundWrite, "join", join)
    real_wait = ck.BackgroundWrite.wait

    def wait(self):
        real_wait(self)
        writes.gate.clear()                               # hold the next write

    monkeypatch.setattr(ck.BackgroundWrite, "wait", wait)
    read = []
    real_read = ck.read_checkpoint
    monkeypatch.setattr(ck, "read_checkpoint", lambda path, *a, **k: read.append(Path(path).name) or
                        real_read(path, *a, **k))
    run = tmp_path / "run"
    with pytest.raises(Crash):
        danlu.train(Recipe.from_dict(RECIPE), run, callbacks=[CrashAfterEpoch(2)])
    second = ck.checkpoint_name(2 * STEPS_PER_EPOCH)
    # the run's lock is released only after the write in flight: no other process can take the run
    # (and find its folder being written) in between
    assert ("end", 2 * STEPS_PER_EPOCH) in writes.order
    assert second in _on_disk(run / "checkpoints") and not (run / ".danlu-lock").exists()
    resumed = danlu.resume(run)
    assert read[0] == second                              # resumed from the checkpoint that was in flight
    assert resumed.summary["run"]["epochs"] == 3
    assert _same_weights(reference, run)


def test_after_fit_returns_every_checkpoint_is_complete_and_as_a_foreground_write_gives(tmp_path, monkeypatch,
                                                                                       reference):
    run = danlu.train(Recipe.from_dict(RECIPE), tmp_path / "background").path
    names = _on_disk(run / "checkpoints")                # as they are when train returns, no waiting
    assert names == [ck.checkpoint_name(e * STEPS_PER_EPOCH) for e in (1, 2, 3)]
    for name in names:
        ck.verify_checkpoint(run / "checkpoints" / name)  # every checksum matches
    assert _same_weights(reference, run)

    with monkeypatch.context() as patch:
        patch.setattr(ck, "BackgroundWrite", Foreground)
        foreground = danlu.train(Recipe.from_dict(RECIPE), tmp_path / "foreground").path
    for name in names:
        (wa, sa), (wb, sb) = (ck.read_checkpoint(r / "checkpoints" / name) for r in (run, foreground))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        ta, tb = {}, {}
        assert ck.split_tensors(sa, ta) == ck.split_tensors(sb, tb)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        for f in ("model.safetensors", "state.safetensors"):
            assert (run / "checkpoints" / name / f).read_bytes() == (foreground / "checkpoints" / name / f).read_bytes()


def test_a_sigkill_in_the_middle_of_a_background_write_leaves_the_previous_checkpoint(tmp_path, reference):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(Recipe.from_dict(RECIPE).to_yaml())
    run = tmp_path / "run"
    env = {**os.environ, "DANLU_KILL_AT": "after_file:5", "OMP_NUM_THREADS": "1"}   # the 2nd write's 2nd file
    proc = subprocess.run([sys.executable, "-m", "danlu", "train", str(recipe), "--run-dir", str(run)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _on_disk(run / "checkpoints") == [f".tmp-{ck.checkpoint_name(2 * STEPS_PER_EPOCH)}",
                                             ck.checkpoint_name(STEPS_PER_EPOCH)]
    ck.verify_checkpoint(run / "checkpoints" / ck.checkpoint_name(STEPS_PER_EPOCH))
    danlu.resume(run)
    assert _same_weights(reference, run)
    assert _on_disk(run / "checkpoints") == [ck.checkpoint_name(e * STEPS_PER_EPOCH) for e in (1, 2, 3)]


ENDS_MID_WRITE = """
import sys, time
import torch
from danlu.training import _checkpoint as ck
from danlu.training._callbacks import Checkpointer

real = ck.write_snapshot

def slow(snap):
    time.sleep(0.5)
    return real(snap)

class At:
    step = 5

ck.write_snapshot = slow
Checkpointer(sys.argv[1], collect=lambda: ({"w": torch.ones(2)}, {"x": 1})).save(At())
raise RuntimeError("the program fails while the checkpoint is being written")
"""


def test_a_process_that_fails_during_a_write_still_commits_it(tmp_path):
    proc = subprocess.run([sys.executable, "-c", ENDS_MID_WRITE, str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 1 and "RuntimeError: the program fails" in proc.stderr, proc.stderr[-2000:]
    assert _on_disk(tmp_path / "checkpoints") == ["step-00000005"]
    weights, state = ck.read_checkpoint(tmp_path / "checkpoints" / "step-00000005")
    assert torch.equal(weights["w"], torch.ones(2)) and state == {"x": 1}
