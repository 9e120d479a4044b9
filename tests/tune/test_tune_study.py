"""``danlu tune``: the grid, pruning, the best recipe, and a study that continues after a re-run or a kill."""
import json
import signal
import sqlite3

import pytest

optuna = pytest.importorskip("optuna")

from danlu.errors import RecipeError, UserError  # noqa: E402
from danlu.recipe import Recipe  # noqa: E402
from danlu.tune import tune  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {"name": "tiny", "seed": 0, "data": {"source": "sklearn", "name": "iris"},
        "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"kind": "adam", "lr": 0.01},
        "train": {"epochs": 3, "batch_size": 32}, "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"}}
GRID = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True, "points": 2},
        "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]}}


def _memory():
    return optuna.storages.InMemoryStorage()


@pytest.fixture(scope="module")
def grid_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    return tune(Recipe.from_dict(TINY), GRID, trials=10, sampler="grid", storage=_memory(), prune=False,
                out_dir=out, progress=False)


def test_grid_sampler_visits_every_point_once(grid_result):
    seen = sorted((row["params"]["optimizer.lr"], row["params"]["model.activation"]) for row in grid_result.trials)
    assert seen == [(1e-3, "relu"), (1e-3, "tanh"), (0.1, "relu"), (0.1, "tanh")]   # then it stops: 4 < 10
    assert all(row["state"] == "COMPLETE" for row in grid_result.trials)


def test_best_recipe_loads_and_matches_the_best_trial(grid_result):
    complete = [r for r in grid_result.trials if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r["value"])      # val_accuracy: higher is better
    assert grid_result.metric == "val_accuracy" and grid_result.direction == "max"
    assert grid_result.best_value == best["value"]
    loaded = Recipe.from_yaml(grid_result.best_recipe_path)
    assert loaded.optimizer.lr == pytest.approx(grid_result.best_params["optimizer.lr"])
    assert loaded.model.activation == grid_result.best_params["model.activation"]
    assert loaded.train.epochs == 3                     # everything else is the recipe's
    # the objective is the best validation value of the trial's own run
    history = [json.loads(line) for line in
               open(f"{grid_result.best_run_dir}/metrics.jsonl", encoding="utf-8")]
    assert grid_result.best_value == max(h["val_accuracy"] for h in history)


def test_search_plots_and_summary_are_written(grid_result):
    out = grid_result.out_dir
    for name in ("history.png", "importance.png"):
        assert (out / name).read_bytes()[:8] == PNG
    summary = json.loads((out / "tune.json").read_text())
    assert summary["best_trial"] == grid_result.best_trial and len(summary["trials"]) == 4
    assert set(summary["importances"]) <= {"optimizer.lr", "model.activation"}


def test_pruning_stops_the_bad_trials(tmp_path):
    space = {"optimizer.lr": {"type": "categorical", "choices": [0.05, 1e-7, 0.1, 2e-7]}}
    # a bad learning rate keeps val_loss near ln(3) = 1.1; a good one is far below after 2 epochs
    pruner = optuna.pruners.ThresholdPruner(upper=0.95, n_warmup_steps=1)
    result = tune(Recipe.from_dict({**TINY, "train": {"epochs": 5, "batch_size": 16}}), space, trials=4,
                  sampler="grid", metric="val_loss", storage=_memory(), pruner=pruner, out_dir=tmp_path,
                  progress=False)
    by_lr = {row["params"]["optimizer.lr"]: row for row in result.trials}
    assert {by_lr[1e-7]["state"], by_lr[2e-7]["state"]} == {"PRUNED"}
    assert {by_lr[0.05]["state"], by_lr[0.1]["state"]} == {"COMPLETE"}
    pruned_run = json.loads((tmp_path / f"trial-{by_lr[1e-7]['number']}" / "summary.json").read_text())
    assert pruned_run["run"]["stop_reason"] == "pruned by the tuner" and pruned_run["run"]["epochs"] < 5


def test_annealing_sampler_runs_through_tune(tmp_path):
    space = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    result = tune(Recipe.from_dict(TINY), space, trials=3, sampler="anneal", storage=_memory(), out_dir=tmp_path,
                  progress=False)
    assert len(result.trials) == 3
    assert all(1e-3 <= row["params"]["optimizer.lr"] <= 1e-1 for row in result.trials)


def test_running_again_continues_the_study(tmp_path):
    space = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    recipe = Recipe.from_dict(TINY)
    first = tune(recipe, space, trials=2, sampler="tpe", out_dir=tmp_path, prune=False, progress=False)
    assert first.storage == f"sqlite:///{tmp_path.resolve() / 'study.db'}"
    again = tune(recipe, space, trials=3, sampler="tpe", out_dir=tmp_path, prune=False, progress=False)
    assert [r["number"] for r in again.trials] == [0, 1, 2]
    assert again.trials[:2] == first.trials          # the old trials, untouched
    assert (tmp_path / "trial-2" / "summary.json").is_file()
    same = tune(recipe, space, trials=3, sampler="tpe", out_dir=tmp_path, prune=False, progress=False)
    assert len(same.trials) == 3                     # already has 3 finished trials: nothing to do
    with pytest.raises(UserError, match="created to maximize"):
        tune(recipe, space, trials=4, direction="min", out_dir=tmp_path, progress=False)


def test_metric_and_validation_split_are_checked(tmp_path):
    space = {"optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1}}
    with pytest.raises(UserError, match="did you mean 'val_accuracy'"):
        tune(Recipe.from_dict(TINY), space, metric="acuracy", storage=_memory(), out_dir=tmp_path)
    no_val = {**TINY, "data": {"source": "sklearn", "name": "iris", "split": {"validation": 0.0}}}
    with pytest.raises(RecipeError, match="validation split"):
        tune(Recipe.from_dict(no_val), space, storage=_memory(), out_dir=tmp_path)


def _states(db):
    with sqlite3.connect(db) as con:
        return dict(con.execute("select number, state from trials").fetchall())


def test_a_killed_tuner_continues_and_reruns_the_interrupted_grid_point(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: killed\ndata: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [8]}\n"
                      "train: {epochs: 3, batch_size: 32}\ncheckpoint: {every_epochs: 1}\n")
    space = tmp_path / "space.yaml"
    space.write_text("optimizer.lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true, points: 2}\n"
                     "model.activation: {type: categorical, choices: [relu, tanh]}\n")
    out = tmp_path / "out"
    args = ("tune", recipe, "--space", space, "--trials", "4", "--sampler", "grid", "--no-prune", "-o", out,
            "--progress", "none")
    # SIGKILL at the 5th checkpoint write: trial 0 has written 3, trial 1 is in its second epoch
    killed = run_cli(*args, env={"DANLU_KILL_AT": "before_rename:5", "OMP_NUM_THREADS": "1"})
    assert killed.returncode == -signal.SIGKILL
    assert _states(out / "study.db") == {0: "COMPLETE", 1: "RUNNING"}

    done = run_cli(*args, env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{out / 'study.db'}")
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE", 3: "COMPLETE", 4: "COMPLETE"}
    assert study.trials[1].user_attrs["interrupted"] is True
    complete = {(t.params["optimizer.lr"], t.params["model.activation"]) for t in study.trials
                if t.state.name == "COMPLETE"}
    assert len(complete) == 4                        # the interrupted grid point was run again
    assert Recipe.from_yaml(out / "best_recipe.yaml").name == "killed"
    assert "best recipe:" in done.stdout
