"""A checkpoint carries the id of the run that wrote it: `danlu resume RUN --checkpoint OTHER/...`
is refused, and accepted with --force-foreign-checkpoint (one warning line)."""
import json
import shutil

import pytest

import danlu
from danlu import _integrity as integrity
from danlu.cli import main
from danlu.errors import CheckpointError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck

RECIPE = {"seed": 2, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [8]},
          "train": {"epochs": 2, "batch_size": 32}, "output": {"progress": "none"}}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("foreign")
    a = danlu.train(Recipe.from_dict(RECIPE), base / "a").path
    b = danlu.train(Recipe.from_dict({**RECIPE, "seed": 5}), base / "b").path
    return a, b


@pytest.fixture
def runs(pair, tmp_path):
    return tuple(shutil.copytree(p, tmp_path / p.name) for p in pair)


def test_each_run_has_an_id_and_its_checkpoints_carry_it(pair):
    a, b = pair
    assert integrity.run_id(a) and integrity.run_id(b) and integrity.run_id(a) != integrity.run_id(b)
    for run in pair:
        for ckpt in ck.list_checkpoints(run / "checkpoints"):
            assert json.loads((ckpt / "manifest.json").read_text())["run_id"] == integrity.run_id(run)
            assert json.loads((ckpt / "state.json").read_text())["run_id"] == integrity.run_id(run)


def test_another_runs_checkpoint_is_refused_then_forced_with_a_warning(runs, capsys):
    a, b = runs
    theirs = ck.list_checkpoints(b / "checkpoints")[-1]
    before = (a / "model.safetensors").read_bytes()
    assert main(["resume", str(a), "--checkpoint", str(theirs)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "belongs to another run" in err and "--force-foreign-checkpoint" in err
    assert (a / "model.safetensors").read_bytes() == before          # refused: nothing changed

    assert main(["resume", str(a), "--checkpoint", str(theirs), "--force-foreign-checkpoint"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "belongs to another run" in warnings[0]
    # continued from b's last state, with nothing left to train: a now holds b's final weights
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_a_checkpoint_copied_into_a_run_is_refused(runs):
    a, b = runs
    (a / "summary.json").unlink()
    theirs = ck.list_checkpoints(b / "checkpoints")[-1]
    shutil.copytree(theirs, a / "checkpoints" / "step-99999999")    # the newest, so resume picks it
    with pytest.raises(CheckpointError, match="belongs to another run"):
        danlu.resume(a)


def test_its_own_checkpoint_is_accepted_by_name(runs):
    a, _ = runs
    first = ck.list_checkpoints(a / "checkpoints")[0]
    assert danlu.resume(a, first.name).summary["run"]["epochs"] == 2
