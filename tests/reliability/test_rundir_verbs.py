"""tune, cv and lr-find create their folders as every verb does (danlu._rundir, issue 12): a new
folder is marked as danlu's; ``danlu tune`` continues only the folder of a study and refuses a
user's folder that holds something, without touching it."""
import json
import sqlite3
from pathlib import Path

import pytest

from danlu import _rundir
from danlu.cli import main
from danlu.errors import UserError

optuna = pytest.importorskip("optuna")

from danlu.tune import tune  # noqa: E402
from danlu.tune._lr_find import LRFindResult  # noqa: E402

RECIPE = ("name: tiny\nseed: 0\ndata: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [8]}\n"
          "train: {epochs: 1, batch_size: 32}\ncheckpoint: {every_epochs: 0}\noutput: {progress: none, runs_dir: %s}\n")
SPACE = "optimizer.lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"


@pytest.fixture
def files(tmp_path):
    recipe, space = tmp_path / "r.yaml", tmp_path / "space.yaml"
    recipe.write_text(RECIPE % (tmp_path / "runs"))
    space.write_text(SPACE)
    return recipe, space


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _users_folder(path: Path) -> dict:
    (path / "data").mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    (path / "data" / "x.csv").write_text("a,b\n1,2\n")
    return snapshot(path)


# -- tune ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["-o", "default"])
def test_tune_refuses_a_users_folder_and_leaves_it_as_it_was(files, tmp_path, capsys, where):
    recipe, space = files
    folder = tmp_path / "mine" if where == "-o" else tmp_path / "runs" / "tune-tiny"
    before = _users_folder(folder)
    out = ["-o", str(folder)] if where == "-o" else []
    assert main(["tune", str(recipe), "--space", str(space), "--trials", "2", *out]) == 2
    err = one_line_error(capsys)
    assert str(folder) in err and "not the folder of a danlu study" in err
    assert snapshot(folder) == before


def test_tune_refuses_a_run_folder_of_danlus(files, tmp_path, capsys):
    recipe, space = files
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 0
    before = snapshot(run)
    capsys.readouterr()
    assert main(["tune", str(recipe), "--space", str(space), "--trials", "2", "-o", str(run)]) == 2
    assert "not the folder of a danlu study" in one_line_error(capsys)
    assert snapshot(run) == before


def test_tune_marks_its_folder_and_continues_only_that(files, tmp_path, capsys):
    recipe, space = files
    out = tmp_path / "study"
    args = ["tune", str(recipe), "--space", str(space), "--sampler", "random", "-o", str(out)]
    assert main([*args, "--trials", "1"]) == 0
    marker = _rundir.read_marker(out)
    assert marker["kind"] == "tune" and marker["made"] is True
    assert _rundir.read_marker(out / "trial-0")["kind"] == "run"
    assert main([*args, "--trials", "2"]) == 0                 # the same folder: the study continues
    assert [t["number"] for t in json.loads((out / "tune.json").read_text())["trials"]] == [0, 1]
    assert _rundir.read_marker(out) == marker
    # a study's folder from before markers is known by its files, and continued too
    (out / _rundir.MARKER).unlink()
    assert main([*args, "--trials", "2"]) == 0
    assert len(json.loads((out / "tune.json").read_text())["trials"]) == 2
    # the trials are indexed in the runs folder that holds the study's folder
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        assert {p for (p,) in conn.execute("SELECT path FROM runs")} == {"study/trial-0", "study/trial-1"}


def test_tune_adopts_an_empty_folder_and_removes_a_new_one_it_could_not_open(files, tmp_path):
    recipe, space = files
    from danlu.recipe import Recipe

    empty = tmp_path / "empty"
    empty.mkdir()
    new = tmp_path / "new" / "study"
    with pytest.raises(UserError, match="cannot open the study database"):
        tune(Recipe.from_yaml(recipe), space, trials=1, storage="nosuchdb://x", out_dir=new, progress=False)
    assert not (tmp_path / "new").exists()
    with pytest.raises(UserError, match="cannot open the study database"):
        tune(Recipe.from_yaml(recipe), space, trials=1, storage="nosuchdb://x", out_dir=empty, progress=False)
    assert empty.is_dir() and list(empty.iterdir()) == []


# -- cv ------------------------------------------------------------------------------------------

def test_cv_creates_a_marked_folder_whose_folds_are_indexed_in_the_runs_folder(files, tmp_path, capsys):
    recipe, _ = files
    runs = tmp_path / "runs"
    assert main(["cv", str(recipe), "--folds", "2"]) == 0
    out = runs / "cv-tiny"
    assert _rundir.read_marker(out)["kind"] == "cv"
    assert all(_rundir.read_marker(out / f"fold-{k}")["kind"] == "run" for k in (1, 2))
    with sqlite3.connect(runs / "index.sqlite") as conn:
        assert {p for (p,) in conn.execute("SELECT path FROM runs")} == {"cv-tiny/fold-1", "cv-tiny/fold-2"}
    assert not (out / "index.sqlite").exists()


# -- lr-find -------------------------------------------------------------------------------------

def test_lr_find_creates_a_marked_folder_beside_a_users_one(files, tmp_path, capsys):
    recipe, _ = files
    mine = tmp_path / "runs" / "lr-find-tiny"
    before = _users_folder(mine)
    assert main(["lr-find", str(recipe), "--steps", "20"]) == 0
    assert snapshot(mine) == before
    made = tmp_path / "runs" / "lr-find-tiny-2"
    assert _rundir.read_marker(made)["kind"] == "lr-find"
    assert (made / "lr_find.json").is_file() and (made / "lr_find.png").is_file()


def test_lr_find_save_refuses_a_users_folder(tmp_path):
    result = LRFindResult(lrs=[1e-3, 1e-2], losses=[1.0, 0.5], smoothed=[1.0, 0.5], suggested=1e-2,
                          rule="steepest", steepest_lr=1e-2, min_loss_lr=1e-2, stopped_early=False, reason="test")
    mine = tmp_path / "mine"
    before = _users_folder(mine)
    with pytest.raises(UserError, match="already exists and is not empty"):
        result.save(mine)
    assert snapshot(mine) == before
    made = result.save(tmp_path / "new")
    assert _rundir.read_marker(made)["kind"] == "lr-find"
    result.save(made)                                        # its own folder: saved again
    assert json.loads((made / "lr_find.json").read_text())["suggested"] == 1e-2
