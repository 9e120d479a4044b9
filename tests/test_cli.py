"""The command line: fast help, one-line errors with exit code 2, nothing overwritten, the verbs."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


def test_help_does_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "from danlu.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--help'])\n"
            "    except SystemExit: pass\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_bad_recipe_is_one_line_exit_2(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: sklearn, name: iris}\noptimizer: {lr: -0.1}\n")
    res = run_cli("train", bad, "--run-dir", tmp_path / "run")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines == [f"danlu: error: {bad}: optimizer.lr must be > 0, got -0.1"]
    assert not (tmp_path / "run").exists()
    res = run_cli("train", bad, "--set", "optimizer.lr=0.1", "--set", "optimizer.kind=adamm",
                  "--run-dir", tmp_path / "run")
    assert res.returncode == 2 and "did you mean 'adam'" in res.stderr
    res = run_cli("train", bad, "--debug", "--run-dir", tmp_path / "run")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_missing_files_exit_2(run_cli, tmp_path):
    res = run_cli("train", tmp_path / "nope.yaml")
    assert res.returncode == 2 and "recipe file not found" in res.stderr
    res = run_cli("eval", tmp_path)
    assert res.returncode == 2 and "not a danlu run directory" in res.stderr
    res = run_cli("resume", tmp_path / "none")
    assert res.returncode == 2 and "Traceback" not in res.stderr


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iris")
    r = tmp / "iris.yaml"
    r.write_text("data: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [16]}\n"
                 "optimizer: {lr: 0.01}\ntrain: {epochs: 30, batch_size: 16}\n")
    res = subprocess.run([sys.executable, "-m", "danlu", "train", r, "--run-dir", tmp / "run"],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return r, tmp / "run", res


def test_train_writes_the_run_directory(iris_run):
    _, run, res = iris_run
    for name in ("recipe.yaml", "metrics.jsonl", "summary.json", "model.safetensors", "pipeline.json",
                 "events.jsonl"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.8
    assert set(summary) >= {"train", "validation", "test"}
    assert len((run / "metrics.jsonl").read_text().splitlines()) == summary["run"]["epochs"]
    assert "accuracy" in res.stdout and "test" in res.stdout      # the summary table
    assert "epoch 1/30" in res.stderr                              # progress lines (not a terminal)


def test_existing_run_dir_is_never_overwritten(iris_run, run_cli):
    recipe, run, _ = iris_run
    before = (run / "model.safetensors").read_bytes()
    res = run_cli("train", recipe, "--run-dir", run)
    assert res.returncode == 2 and "already exists" in res.stderr
    assert (run / "model.safetensors").read_bytes() == before


def test_eval_matches_summary(iris_run, run_cli):
    _, run, _ = iris_run
    res = run_cli("eval", run, "--split", "test", "--json")
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)["test"]
    summary = json.loads((run / "summary.json").read_text())["test"]
    for k, v in summary.items():
        assert figures[k] == pytest.approx(v, abs=1e-6)


def test_predict_csv_with_string_labels_and_probabilities(iris_run, run_cli, tmp_path):
    _, run, _ = iris_run
    from sklearn.datasets import load_iris

    data = load_iris()
    rows = tmp_path / "rows.csv"
    with open(rows, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(data.feature_names)
        for x in data.data[::10]:
            w.writerow(x)
    out = tmp_path / "pred.csv"
    res = run_cli("predict", run, rows, "-o", out)
    assert res.returncode == 0, res.stderr
    got = list(csv.DictReader(open(out)))
    assert len(got) == 15
    probs = [k for k in got[0] if k.startswith("proba_")]
    assert len(probs) == 3
    for row in got:
        assert abs(sum(float(row[k]) for k in probs) - 1) < 1e-5
    truth = data.target_names[data.target[::10]]        # answered with the species names
    hits = sum(row["prediction"] == t for row, t in zip(got, truth))
    assert hits >= 12
    res = run_cli("predict", run, rows, "-o", out)
    assert res.returncode == 2 and "already exists" in res.stderr


# A short run of each recipe: two epochs, or a few thousand environment steps for an agent.
QUICK = {"cartpole_ppo": ["rl.steps=2048", "env.eval_episodes=10"],
         "digits_diffusion": ["train.epochs=1", "model.channels=16", "model.blocks=1"]}


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_trains(recipe, tmp_path, capsys):
    # In this process (the command line in a fresh one is tested above and below): each start-up
    # would cost seconds of imports per recipe.
    from danlu.cli import main

    quick = QUICK.get(recipe.stem, ["train.epochs=2"])
    args = ["train", str(recipe), "--run-dir", str(tmp_path / "run"), "--progress", "none"]
    assert main(args + [a for item in quick for a in ("--set", item)]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary.get("test") or summary.get("evaluation")


def test_keys_and_version(run_cli):
    res = run_cli("keys")
    assert res.returncode == 0 and "optimizer.lr" in res.stdout
    res = run_cli("--version")
    assert res.stdout.startswith("danlu ")
