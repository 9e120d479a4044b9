"""Dead ReLUs: a mass death of a layer's units after a step far too large is a collapse (炸炉),
rolled back with a lower learning rate; a healthy run's units never trip it."""
import pytest
import torch

import danlu
from danlu.diagnose._text import facts_text
from diagnose_testkit import events, recipe

EPOCHS = 6


class KillUnits:
    """At the first batch of epoch ``at`` (once), pushes every bias of the first Linear layer far
    negative: all its ReLU units then output zero for every input, as after a huge step."""

    def __init__(self, at: int = 2):
        self.at, self.done = at, False

    def on_batch_end(self, state):
        if self.done or state.epoch != self.at:
            return
        first = next(m for m in state.model.modules() if isinstance(m, torch.nn.Linear))
        with torch.no_grad():
            first.bias.fill_(-1e3)
        self.done = True


def _train(tmp_path, name, callbacks=()):
    return danlu.train(recipe(train={"epochs": EPOCHS}), tmp_path / name, callbacks=callbacks)


def test_mass_death_of_relu_units_is_rolled_back_with_a_lower_rate(tmp_path):
    healthy = _train(tmp_path, "healthy")
    killer = KillUnits()
    r = _train(tmp_path, "killed", callbacks=[killer])
    assert killer.done
    collapse = [e for e in events(r.path, "collapse") if e["variant"] == "dead_units"]
    assert len(collapse) == 1
    dead = collapse[0]
    assert dead["epoch"] == 2
    assert dead["dead_share"] == pytest.approx(1.0) and dead["dead_before"] < 0.5
    text = facts_text("collapse", "en", dead)
    assert "dead ReLUs" in text and f"layer {dead['layer']} " in text and "100%" in text
    rescue = events(r.path, "rescue")
    assert len(rescue) == 1 and rescue[0]["cause"] == "collapse" and rescue[0]["epoch"] == 2
    assert rescue[0]["lr_after"] == pytest.approx(rescue[0]["lr_before"] * 0.1)
    verdict = events(r.path, "verdict")[0]
    assert verdict["cause"] == "collapse" and "dead ReLUs" in verdict["message"]
    # rolled back to a good epoch: the rescued run ends close to the healthy one
    assert r.summary["test"]["accuracy"] >= healthy.summary["test"]["accuracy"] - 0.05
    assert not [e for e in events(healthy.path, "collapse") if e.get("variant") == "dead_units"]


def test_healthy_relu_runs_report_no_dead_units(tmp_path):
    for name, hidden in (("one", [64]), ("deep", [128, 64, 32])):
        r = danlu.train(recipe(model={"kind": "mlp", "hidden": hidden}, optimizer={"lr": 0.003},
                               train={"epochs": 4}), tmp_path / name)
        assert not events(r.path, "collapse") and not events(r.path, "rescue")
        assert r.summary["test"]["accuracy"] > 0.9
