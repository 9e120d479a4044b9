"""Provoked causes (issue 14): each scenario of diagnose_scenarios goes wrong in one known way; the
verdict must name that cause, say how sure it is on numbers from the run, propose no cure that
contradicts the cause or the run's history, and a blow-up must be rescued to a sensible model.
benchmarks/bench_diagnosis.py runs the same scenarios on three seeds."""
import math

import pytest

from danlu.cli import EXIT_DIVERGED, main
from danlu.diagnose import decide, story
from danlu.diagnose._story import proposals
from diagnose_scenarios import BY_NAME, CONTRADICTS, family
from diagnose_testkit import events, poisoned_model, run, weights_finite

# The comparators of the benchmark (healthy_sgd, healthy_rmsprop) are left to it.
TESTED = ["healthy", "lr_high_adam", "lr_high_sgd", "lr_high_rmsprop", "lr_too_low", "too_few_epochs", "overfit_gap",
          "overfit_rising", "underfit_capacity", "vanishing", "exploding", "nan_batch", "no_signal", "unscaled"]
_CUT_HISTORY = {"rescue", "collapse", "divergence", "rescue_exhausted", "lr_too_high", "exploding_gradient"}


@pytest.mark.parametrize("name", TESTED)
def test_the_verdict_names_the_provoked_cause(tmp_path, name):
    scenario = BY_NAME[name]
    r = run(tmp_path, **scenario.spec(0, tmp_path))
    verdict, cures = proposals(r.path)
    assert family(verdict["cause"]) == scenario.cause, (verdict["cause"], [e["kind"] for e in events(r.path)])
    # the verdict danlu diagnose tells is the one recorded (and shown) at the end of training
    recorded = events(r.path, "verdict")
    assert len(recorded) == 1 and recorded[0]["cause"] == verdict["cause"]
    assert recorded[0]["message"]
    # no cure against the cause, nor a higher rate once the run showed it too high
    against = CONTRADICTS.get(scenario.cause, set())
    assert not [c for c in cures if c["direction"] in against], cures
    if {e["kind"] for e in events(r.path)} & _CUT_HISTORY:
        assert not [c for c in cures if c["direction"] == "lr_up"], cures
    assert not [c for c in cures if c["direction"] in verdict["forbid"]]
    if scenario.cause == "healthy":
        assert not events(r.path) and verdict["skill"] > 0.9
        assert "Nothing needs fixing" in story(r.path, "en")
        return
    # how sure, and on what evidence: the deciding event with numbers from the run
    assert verdict["sure"] in ("certain", "likely", "possible")
    numbers = [v for k, v in verdict["evidence"].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "batch", "step")]
    assert numbers   # (a NaN loss is its own evidence: not every number is finite)
    assert "Nothing needs fixing" not in story(r.path, "en")
    if scenario.cause == "blow_up":
        assert verdict["sure"] == "certain" and events(r.path, "rescue")
        assert not events(r.path, "rescue_exhausted") and weights_finite(r.path)
        assert r.summary["test"]["accuracy"] > 0.93          # rescued to a sensible model
        rescue = events(r.path, "rescue")[-1]
        assert r.summary["run"]["stop_reason"] is None and rescue["lr_after"] < rescue["lr_before"]


def test_adam_far_too_high_collapses_without_nan_and_is_rescued(tmp_path):
    """The case of the issue: Adam at a rate 1000x too high never produces a NaN."""
    r = run(tmp_path, model={"kind": "mlp", "hidden": [64], "batch_norm": True},
            optimizer={"kind": "adam", "lr": 3.0}, train={"epochs": 10})
    collapse = events(r.path, "collapse")
    assert collapse and not events(r.path, "nan_loss")
    assert all(c["trivial"] == pytest.approx(math.log(10), rel=0.02) for c in collapse)   # ten balanced classes
    rescues = events(r.path, "rescue")
    assert any(r["cause"] == "collapse" for r in rescues)
    assert all(b["lr_before"] > b["lr_after"] for b in rescues)
    assert r.summary["test"]["accuracy"] > 0.93
    text = story(r.path, "en")
    assert "Verdict" in text and "(certain)" in text and "-> try 3" not in text


def test_findings_are_weighed_not_listed():
    base = {"epoch": 3, "step": 60}
    # underfitting after a blow-up is the blow-up's symptom, and the lr is never raised after a rescue
    found = decide([{**base, "kind": "rescue"}, {**base, "kind": "lr_too_high"}, {**base, "kind": "underfitting"}])
    assert found["cause"] == "rescue" and set(found["explains"]) == {"lr_too_high", "underfitting"}
    assert "lr_up" in found["forbid"]
    # a gap and a poor fit on validation over memorised training rows: no signal, not both
    found = decide([{**base, "kind": "overfitting"}, {**base, "kind": "no_signal"}])
    assert found["cause"] == "no_signal" and found["explains"] == ["overfitting"]
    assert {"capacity_up", "epochs_up"} <= set(found["forbid"])
    # nothing found: healthy only when clearly better than a constant guess
    assert decide([], {"metric": "accuracy", "train": 1.0, "val": 0.97, "trivial": 0.1})["cause"] == "healthy"
    assert decide([], {"metric": "accuracy", "train": 0.2, "val": 0.15, "trivial": 0.1})["cause"] == "inconclusive"


def test_verdict_is_shown_live_and_told_the_same_in_both_languages(tmp_path, capsys):
    import danlu
    from diagnose_testkit import recipe

    r = danlu.train(recipe(train={"epochs": 3}, optimizer={"lr": 0.003}, output={"progress": "lines"}),
                    tmp_path / "run")
    live = [line for line in capsys.readouterr().err.splitlines() if "[verdict]" in line]
    assert len(live) == 1 and "stopped while still improving" in live[0]
    assert "train.epochs: 3 -> try 6" in live[0]
    assert "stopped while still improving (likely)" in story(r.path, "en")
    zh = story(r.path, "zh")
    assert "结论" in zh and "仍在进步时就停止了（很可能）" in zh


def test_a_run_the_monitors_stop_exits_3_with_one_line(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    bad = list(range(6, 200))
    path.write_text("data: {source: sklearn, name: digits}\n"
                    f"model: {poisoned_model(nan_loss_at=bad)}\n"
                    "train: {epochs: 50}\nmonitors: {divergence: {max_rescues: 1}}\n")
    code = main(["train", str(path), "--run-dir", str(tmp_path / "run"), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == EXIT_DIVERGED == 3
    assert err.count("\n") == 1 and "rescue exhausted" in err and str(tmp_path / "run") in err
