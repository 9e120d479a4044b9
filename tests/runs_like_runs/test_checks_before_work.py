"""Fine-tuning from base.run refuses a test split that may hold the base run's training rows (the
check ensembles and distillation use); `danlu tune` says when a study is continued with another
sampler, and why no new trial runs."""
import pytest

import danlu
from danlu.errors import UserError
from danlu.transfer import finetune

QUIET = {"divergence": {"enabled": False}, "gradients": {"enabled": False}, "fit": {"enabled": False},
         "convergence": {"enabled": False}}


def _iris(seed, **extra):
    return {"name": "iris", "seed": seed, "data": {"source": "sklearn", "name": "iris"},
            "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32},
            "checkpoint": {"every_epochs": 0}, "monitors": QUIET, "output": {"progress": "none"}, **extra}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return danlu.train(_iris(0), tmp_path_factory.mktemp("base") / "base").path


def _rows(seed):
    from danlu.training import prepare_run_data as _prepare_data
    from danlu.recipe import Recipe

    prepared = _prepare_data(Recipe.from_dict(_iris(seed)))
    scaler = prepared.pipeline.scaler   # fitted on each seed's own training rows: compare the raw rows
    raw = {name: X * scaler.div + scaler.shift for name, (X, _) in prepared.splits.items()}
    return {name: {tuple(round(v, 3) for v in row) for row in X.tolist()} for name, X in raw.items()}


def test_finetune_on_another_seed_is_refused_in_one_line(base_run, tmp_path):
    seed0, seed1 = _rows(0), _rows(1)
    assert seed1["test"] & seed0["train"]     # the leak the check prevents is real: test rows the base trained on
    recipe = _iris(1, base={"run": str(base_run), "mode": "full"})
    with pytest.raises(UserError) as err:
        finetune(recipe, tmp_path / "tuned")
    message = str(err.value)
    assert "\n" not in message
    assert "its seed is 1 but" in message and "base run's training rows" in message
    assert "base.allow_overlap: true" in message
    assert not (tmp_path / "tuned").exists()    # refused before anything is written


def test_finetune_with_the_base_split_or_knowingly_runs(base_run, tmp_path):
    same = finetune(_iris(0, base={"run": str(base_run), "mode": "full"}), tmp_path / "same")
    assert "test" in same.summary
    knowingly = finetune(_iris(1, base={"run": str(base_run), "mode": "full", "allow_overlap": True}),
                         tmp_path / "knowingly")
    assert "test" in knowingly.summary


def test_the_same_check_refuses_ensembles_and_distillation(base_run, tmp_path):
    other = danlu.train(_iris(1), tmp_path / "other").path
    from danlu.combine import ensemble

    with pytest.raises(UserError, match="its seed is 1 but"):
        ensemble([base_run, other], "soft-vote", tmp_path / "ens", progress=False)


# --- tune -------------------------------------------------------------------------------------

SPACE = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}}


def _tune(out, sampler, trials):
    pytest.importorskip("optuna")
    from danlu.tune import tune

    return tune(_iris(0, train={"epochs": 1, "batch_size": 32}), SPACE, trials=trials, sampler=sampler,
                out_dir=out, prune=False, progress=False)


def test_tune_warns_when_a_study_is_continued_with_another_sampler(tmp_path, capsys):
    out = tmp_path / "study"
    assert len(_tune(out, "tpe", 1).trials) == 1
    assert "warning" not in capsys.readouterr().err
    again = _tune(out, "random", 1)                  # --trials counts the study's trials: nothing to add
    err = capsys.readouterr().err
    assert len(again.trials) == 1
    assert "was made with --sampler tpe, not random" in err and "no new trial will run" in err
    assert "pass --trials 2 to add 1 random trials" in err
    more = _tune(out, "random", 2)                   # as the warning says: one more, by the new sampler
    err = capsys.readouterr().err
    assert len(more.trials) == 2 and "it will run 1 random trial(s)" in err
    _tune(out, "random", 2)                          # random is one of the study's samplers now
    assert "warning" not in capsys.readouterr().err
