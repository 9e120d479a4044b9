"""Gradient health: the sampled per-layer norms are right, and vanishing / exploding gradients
are reported with the layers named."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from danlu.diagnose import GradientMonitor
from diagnose_testkit import events, run


def _state(model, step=0):
    recorded = []
    state = SimpleNamespace(model=model, device=torch.device("cpu"), run_dir=None, step=step, epoch=0, batch=1,
                            grad_norms=[], grad_total=None, record_event=lambda kind, **facts: recorded.append((kind, facts)))
    return state, recorded


def test_per_layer_norms_match_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.Tanh(), nn.Linear(7, 3))
    model(torch.randn(16, 5)).square().mean().backward()
    mon = GradientMonitor(every=1)
    state, _ = _state(model)
    mon.on_fit_start(state)
    mon.on_backward_end(state)
    row = state.grad_norms[-1]
    for name in ("0", "1", "3"):
        grads = torch.cat([p.grad.reshape(-1) for p in getattr(model, name).parameters()])
        assert row["layers"][name] == pytest.approx(float(grads.norm()), rel=1e-6)
    every = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    assert row["total"] == pytest.approx(float(every.norm()), rel=1e-6)
    assert state.grad_total == (0, row["total"])


def test_exploding_gradient_is_reported_once_with_the_largest_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    mon = GradientMonitor(every=1, explode_norm=100.0)
    state, recorded = _state(model)
    mon.on_fit_start(state)
    for step, scale in enumerate([1.0, 1e3, 1e3]):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        model[1].weight.grad *= scale
        state.step = step
        mon.on_backward_end(state)
    assert [k for k, _ in recorded] == ["exploding_gradient"]   # reported when it starts, not every sample
    facts = recorded[0][1]
    assert facts["variant"] == "norm" and facts["layer"] == "1" and facts["total"] > 100


def test_steadily_growing_gradients_are_exploding_before_the_limit():
    model = nn.Linear(3, 1)
    mon = GradientMonitor(every=1, window=4, explode_norm=1e9)
    state, recorded = _state(model)
    mon.on_fit_start(state)
    for step in range(5):
        for p in model.parameters():
            p.grad = torch.full_like(p, 2.0 ** (step * 1.5))  # x2.8 per sample, x64 over the window
        state.step = step
        mon.on_backward_end(state)
    assert [k for k, _ in recorded] == ["exploding_gradient"]
    assert recorded[0][1]["variant"] == "growth" and recorded[0][1]["growth"] == pytest.approx(64.0)


def test_deep_sigmoid_network_has_vanishing_gradients(tmp_path):
    r = run(tmp_path, model={"kind": "mlp", "hidden": [32] * 6, "activation": "sigmoid"}, train={"epochs": 1},
            monitors={"gradients": {"every": 4, "window": 3}})
    found = events(r.path, "vanishing_gradient")
    assert len(found) == 1
    e = found[0]
    assert e["first"] == "body.0" and e["last"] == "head" and e["ratio"] < 1e-3 and e["samples"] == 3
    assert "body.0" in e["message"] and "head" in e["message"] and "model.activation" in e["message"]
    rows = [json.loads(line) for line in (r.path / "grad_norms.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(0, 20, 4))
    last = next(row for row in rows if row["step"] == e["step"])
    assert e["first_norm"] == pytest.approx(last["layers"]["body.0"])
    assert e["ratio"] == pytest.approx(last["layers"]["body.0"] / last["layers"]["head"])


def test_a_relu_network_of_the_same_depth_does_not_vanish(tmp_path):
    r = run(tmp_path, model={"kind": "mlp", "hidden": [32] * 6, "activation": "relu"}, train={"epochs": 1},
            monitors={"gradients": {"every": 4, "window": 3}})
    assert not events(r.path, "vanishing_gradient")


def test_a_layer_without_gradient_is_left_out_not_vanishing():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(3, 3)     # registered first, never called
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 1)

        def forward(self, x):
            return self.b(self.a(x))

    model = Net()
    model(torch.randn(8, 3)).sum().backward()
    mon = GradientMonitor(every=1, window=1)
    state, recorded = _state(model)
    mon.on_fit_start(state)
    mon.on_backward_end(state)
    assert set(state.grad_norms[-1]["layers"]) == {"a", "b"}
    assert recorded == []
