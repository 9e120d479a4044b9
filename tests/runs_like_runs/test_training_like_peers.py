"""Early stopping waits exactly `patience` epochs (as Keras' EarlyStopping); one-cycle follows
torch.optim.lr_scheduler.OneCycleLR, learning rate and momentum, step by step."""
import json
from types import SimpleNamespace

import pytest
import torch

import danlu
from danlu.training._callbacks import EarlyStopping
from danlu.training._factory import build_schedule


def keras_stop_epoch(values, patience, min_delta=0.0):
    """Keras' EarlyStopping rule (mode min, baseline None), written out: the 1-based epoch after
    which it stops, or None. wait resets on improvement, else grows; stop once wait >= patience."""
    best, wait = float("inf"), 0
    for epoch, value in enumerate(values, start=1):
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return None


def danlu_stop_epoch(values, patience, min_delta=0.0):
    cb = EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta, restore_best=False)
    for epoch, value in enumerate(values):
        state = SimpleNamespace(metrics={"val_loss": value}, epoch=epoch, extra={}, stop_reason=None)
        state.request_stop = lambda reason, s=state: setattr(s, "stop_reason", reason)
        cb.on_validation_end(state)
        if state.stop_reason:
            return epoch + 1
    return None


@pytest.mark.parametrize("values, patience", [
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 2),      # best at 2; epochs 3 and 4 do not improve -> stop after 4
    ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], 3),
    ([1.0, 0.9, 0.95, 0.8, 0.85, 0.86, 0.87], 1),
    ([1.0, 0.9, 0.95, 0.8, 0.85, 0.86, 0.87], 0),  # patience 0: the first epoch without improvement
    ([1.0, 0.9, 0.8, 0.7], 2),                    # always improving: never stops
    ([1.0, 1.0, 1.0, 1.0, 1.0], 3),               # equal is not better
])
def test_early_stopping_waits_exactly_patience_epochs_as_keras(values, patience):
    assert danlu_stop_epoch(values, patience) == keras_stop_epoch(values, patience)


def test_min_delta_counts_as_keras_does():
    values = [1.0, 0.95, 0.93, 0.92, 0.91]
    # 0.95 is not 0.05 below 1.0; 0.93 is, and becomes the best; 0.92 and 0.91 are not: stop after 5
    assert danlu_stop_epoch(values, 2, min_delta=0.05) == keras_stop_epoch(values, 2, min_delta=0.05) == 5


def test_a_run_stops_patience_epochs_after_its_best(tmp_path):
    recipe = {"seed": 0, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [16]},
              "optimizer": {"lr": 0.3}, "train": {"epochs": 80, "batch_size": 16,
                                                  "early_stopping": {"patience": 3, "monitor": "val_loss"}},
              "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}
    run = danlu.train(recipe, tmp_path / "run")
    history = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert run.summary["run"]["stop_reason"], "the run should stop early with this learning rate"
    assert len(history) == keras_stop_epoch([h["val_loss"] for h in history], 3)


def _pair(optimizer_kind, momentum=0.9):
    def make():
        p = torch.nn.Parameter(torch.zeros(3))
        if optimizer_kind == "sgd":
            return torch.optim.SGD([p], lr=0.01, momentum=momentum)
        return torch.optim.AdamW([p], lr=0.01)
    return make(), make()


@pytest.mark.parametrize("optimizer_kind", ["sgd", "adamw"])
@pytest.mark.parametrize("steps_per_epoch, epochs, max_lr", [(10, 10, None), (7, 3, 0.05), (4, 1, 0.2)])
def test_onecycle_follows_pytorch_lr_and_momentum(optimizer_kind, steps_per_epoch, epochs, max_lr):
    ours_opt, torch_opt = _pair(optimizer_kind)
    ours = build_schedule({"kind": "onecycle", "max_lr": max_lr}, ours_opt, steps_per_epoch, epochs)
    peak = max_lr or 0.1                              # danlu's default peak: 10 x lr
    total = steps_per_epoch * epochs
    oracle = torch.optim.lr_scheduler.OneCycleLR(torch_opt, max_lr=peak, total_steps=total, div_factor=peak / 0.01,
                                                 final_div_factor=1e4)
    key = "momentum" if optimizer_kind == "sgd" else "betas"
    for step in range(total):
        a, b = ours_opt.param_groups[0], torch_opt.param_groups[0]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9, abs=1e-12), step
        m_ours = a[key] if key == "momentum" else a[key][0]
        m_torch = b[key] if key == "momentum" else b[key][0]
        assert m_ours == pytest.approx(m_torch, abs=1e-12), step
        ours_opt.step(), torch_opt.step()
        ours.step()
        if step + 1 < total:                           # PyTorch refuses to step past its last step
            oracle.step()


def test_onecycle_leaves_plain_sgd_without_momentum_and_can_keep_momentum_fixed():
    plain, _ = _pair("sgd", momentum=0.0)
    schedule = build_schedule({"kind": "onecycle"}, plain, 10, 2)
    for _ in range(15):
        schedule.step()
    assert plain.param_groups[0]["momentum"] == 0.0
    fixed, _ = _pair("sgd")
    schedule = build_schedule({"kind": "onecycle", "cycle_momentum": False}, fixed, 10, 2)
    for _ in range(15):
        schedule.step()
    assert fixed.param_groups[0]["momentum"] == 0.9
