"""Checkpoint files: safetensors + JSON round trip, atomic writes, checksums, refused formats."""
import json
import random

import numpy as np
import pytest
import torch

from danlu.errors import CheckpointError
from danlu.training import _checkpoint as ck


def _state():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return model, opt


def test_split_join_round_trip_keeps_types():
    model, opt = _state()
    obj = {"optimizer": opt.state_dict(), "t": (1, [2.5, None], {"a": True}), "rng": ck.capture_rng()}
    tensors = {}
    meta = ck.split_tensors(obj, tensors)
    text = json.dumps(meta)   # must be plain JSON
    back = ck.join_tensors(json.loads(text), tensors)
    assert back["t"] == (1, [2.5, None], {"a": True})
    assert set(back["optimizer"]["state"]) == set(opt.state_dict()["state"])  # int keys survive
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(back["optimizer"]["state"][0][k], v)
    opt2 = torch.optim.Adam(model.parameters(), lr=0.5)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.param_groups[0]["lr"] == 0.01


def test_rng_restore_replays_every_generator():
    saved = ck.capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(3))
    tensors = {}
    meta = json.loads(json.dumps(ck.split_tensors(saved, tensors)))
    ck.restore_rng(ck.join_tensors(meta, tensors))
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_write_read_verify(tmp_path):
    model, opt = _state()
    path = ck.write_checkpoint(tmp_path, 7, model.state_dict(), {"optimizer": opt.state_dict(), "x": 1})
    assert path.name == "step-00000007"
    assert not list(tmp_path.glob(".tmp-*"))
    model_state, state = ck.read_checkpoint(path)
    assert state["x"] == 1
    for k, v in model.state_dict().items():
        assert torch.equal(model_state[k], v)


def test_tampered_and_truncated_checkpoints_are_refused_previous_loads(tmp_path):
    model, opt = _state()
    first = ck.write_checkpoint(tmp_path, 1, model.state_dict(), {"x": 1})
    second = ck.write_checkpoint(tmp_path, 2, model.state_dict(), {"x": 2})
    data = (second / "model.safetensors").read_bytes()
    (second / "model.safetensors").write_bytes(data[: len(data) // 2])          # truncated
    with pytest.raises(CheckpointError, match="model.safetensors does not match its checksum"):
        ck.read_checkpoint(second)
    _, state = ck.read_checkpoint(first)
    assert state["x"] == 1
    raw = bytearray((first / "state.json").read_bytes())
    raw[-3] = ord("9") if raw[-3] != ord("9") else ord("8")                       # tampered
    (first / "state.json").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="state.json does not match"):
        ck.read_checkpoint(first)
    (second / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json is damaged"):
        ck.verify_checkpoint(second)


def test_prune_keeps_last_and_named(tmp_path):
    model, _ = _state()
    for step in range(1, 6):
        ck.write_checkpoint(tmp_path, step, model.state_dict(), {})
    ck.prune_checkpoints(tmp_path, keep_last=2, keep={"step-00000002"})
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004", "step-00000005"]


def test_foreign_formats_refused_unless_allowed(tmp_path):
    model, _ = _state()
    pt = tmp_path / "w.pt"
    torch.save(model.state_dict(), pt)
    with pytest.raises(CheckpointError, match="safetensors only; convert it with safetensors.torch.save_file"):
        ck.load_weights(pt)
    loaded = ck.load_weights(pt, allow_pickle_format=True)
    assert torch.equal(loaded["0.weight"], model.state_dict()["0.weight"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pkl"
    torch.save({"w": Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused by the weights-only loader"):
        ck.load_weights(bad, allow_pickle_format=True)
    with pytest.raises(CheckpointError, match="unknown weights format"):
        (tmp_path / "x.h5").write_text("x")
        ck.load_weights(tmp_path / "x.h5")


def test_atomic_text_write_replaces_whole(tmp_path):
    p = tmp_path / "a.json"
    ck.atomic_write_text(p, "one")
    ck.atomic_write_text(p, "two")
    assert p.read_text() == "two"
    assert not list(tmp_path.glob(".*.tmp"))
