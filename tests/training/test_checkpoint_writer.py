"""Checkpoints written on a background thread: the content is the state at the save, at most one
write is in flight, a failed write is raised in the training thread, and a run's checkpoints are
those a foreground write gives."""
import errno
import threading

import pytest
import torch

import danlu
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck
from danlu.training._callbacks import Checkpointer

RECIPE = {"seed": 3, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [8]},
          "train": {"epochs": 3, "batch_size": 32}, "checkpoint": {"every_epochs": 1, "keep_last": 5},
          "output": {"progress": "none"}}


class Step:
    def __init__(self, step):
        self.step = step


def test_the_snapshot_is_the_state_at_the_save_not_later():
    weights = {"w": torch.ones(3)}
    moments = {"state": {0: {"exp_avg": torch.zeros(2)}}, "history": [{"loss": 1.0}]}
    model_copy, state_copy = ck.snapshot(weights, moments)
    weights["w"].add_(5)                                  # the next training step
    moments["state"][0]["exp_avg"].add_(1)
    moments["history"].append({"loss": 0.5})
    assert torch.equal(model_copy["w"], torch.ones(3))
    assert torch.equal(state_copy["state"][0]["exp_avg"], torch.zeros(2))
    assert state_copy["history"] == [{"loss": 1.0}]


def test_one_write_in_flight_and_its_error_reaches_the_training_thread(tmp_path, monkeypatch):
    release, order = threading.Event(), []

    def slow_then_full(root, step, model_state, state):
        order.append(("start", step))
        if step == 1:
            assert release.wait(10)
            order.append(("end", step))
            raise OSError(errno.ENOSPC, "No space left on device", str(root))
        order.append(("end", step))

    monkeypatch.setattr(ck, "write_checkpoint", slow_then_full)
    saver = Checkpointer(tmp_path, collect=lambda: ({"w": torch.ones(1)}, {}))
    saver.save(Step(1))                                   # returns while the write is in flight
    assert order == [("start", 1)]
    threading.Timer(0.2, release.set).start()
    with pytest.raises(OSError) as got:                  # the next save waits for it, then raises its error
        saver.save(Step(2))
    assert got.value.errno == errno.ENOSPC
    assert order == [("start", 1), ("end", 1)]            # the second write never began
    saver.save(Step(3))
    saver.wait()
    assert order[-2:] == [("start", 3), ("end", 3)]


class Foreground:
    def __init__(self, write):
        write()

    def wait(self):
        pass


def test_a_run_ends_with_the_checkpoints_a_foreground_write_gives(tmp_path, monkeypatch):
    recipe = Recipe.from_dict(RECIPE)
    background = danlu.train(recipe, tmp_path / "background").path
    with monkeypatch.context() as patch:
        patch.setattr(ck, "BackgroundWrite", Foreground)
        foreground = danlu.train(recipe, tmp_path / "foreground").path
    ours, theirs = ck.list_checkpoints(background / "checkpoints"), ck.list_checkpoints(foreground / "checkpoints")
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == 3
    assert not list((background / "checkpoints").glob(".tmp-*"))
    for a, b in zip(ours, theirs):
        (wa, sa), (wb, sb) = ck.read_checkpoint(a), ck.read_checkpoint(b)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        ta, tb = {}, {}
        assert ck.split_tensors(sa, ta) == ck.split_tensors(sb, tb)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
