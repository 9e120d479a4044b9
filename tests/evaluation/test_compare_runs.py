"""`danlu compare` (benchmark table on the same rows) and `danlu runs` (the SQLite runs index)."""
import json
import shutil
import sqlite3

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import danlu
from danlu import training
from danlu._index import INDEX_FILE, index_run, list_runs, parse_filter
from danlu.errors import UserError
from danlu.evaluation import compute_metrics
from danlu.experiments import check_same_data, compare_runs
from danlu.experiments._compare import format_comparison


def _train(root, name, **changes):
    data = {"name": name, "seed": 0, "data": {"source": "sklearn", "name": "iris"},
            "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"lr": 0.02},
            "train": {"epochs": 3, "batch_size": 16}, "output": {"progress": "none", "runs_dir": str(root)}}
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            data.setdefault(section, {})[leaf] = value
        else:
            data[section] = value
    return danlu.train(danlu.Recipe.from_dict(data), root / name, progress="none")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = {"small": _train(root, "small"),
            "wide": _train(root, "wide", model={"kind": "mlp", "hidden": [16]}, train__epochs=4),
            "logistic": _train(root, "logistic", model={"kind": "logistic"},
                               data={"source": "sklearn", "name": "breast_cancer"})}
    # the same run saved under another seed: for the refusal it is the recipe that counts
    shutil.copytree(made["small"].path, root / "seed3")
    text = (root / "seed3" / "recipe.yaml").read_text()
    (root / "seed3" / "recipe.yaml").write_text(text.replace("seed: 0", "seed: 3", 1))
    made["seed3"] = training.Run(root / "seed3")
    return root, made


# --- compare ---------------------------------------------------------------------------------

def test_compare_scores_runs_baselines_and_references(runs):
    _, r = runs
    result = compare_runs([r["small"].path, r["wide"].path], n_boot=200)
    by_name = {row["name"]: row for row in result["rows"]}
    for key in ("small", "wide"):
        row = by_name[str(r[key].path)]
        assert row["kind"] == "run" and row["what"] == "mlp"
        assert row["metrics"] == pytest.approx(training.evaluate(r[key].path, "test")["test"])
        assert 0 <= row["p_value"] <= 1 and "the baseline" in row["verdict"]
    assert {"baseline: majority", "baseline: stratified"} <= set(by_name)
    # the sklearn reference is what fitting it on the same transformed training rows gives
    prepared = training.prepare_run_data(training.read_run_recipe(r["small"].path))
    (X_tr, y_tr), (X_te, y_te) = prepared.splits["train"], prepared.splits["test"]
    model = LogisticRegression(max_iter=2000).fit(X_tr.numpy(), y_tr.numpy())
    expected = compute_metrics("classification", y_te.numpy(), model.predict_proba(X_te.numpy()), n_classes=3)
    assert by_name["sklearn reference: LogisticRegression"]["metrics"] == pytest.approx(expected)
    # best first by accuracy, the quoted yardstick last and labelled as on other rows
    computed = [row["metrics"]["accuracy"] for row in result["rows"] if row["kind"] != "quoted"]
    assert computed == sorted(computed, reverse=True)
    assert result["rows"][-1]["kind"] == "quoted" and "5-fold CV" in result["rows"][-1]["what"]
    text = format_comparison(result)
    assert "sorted by accuracy (higher is better)" in text and "p vs majority" in text


def test_compare_sorts_by_the_metric_asked(runs):
    _, r = runs
    result = compare_runs([r["small"].path, r["wide"].path], metric="log_loss", references=False, n_boot=100)
    losses = [row["metrics"]["log_loss"] for row in result["rows"]]
    assert losses == sorted(losses) and not any(row["kind"] == "quoted" for row in result["rows"])
    with pytest.raises(UserError, match="did you mean 'accuracy'"):
        compare_runs([r["small"].path], metric="acuracy")


def test_compare_refuses_runs_on_other_data(runs):
    _, r = runs
    with pytest.raises(UserError, match=r"seed 3 vs 0"):
        check_same_data([r["small"].path, r["seed3"].path])
    with pytest.raises(UserError, match=r"data.name 'breast_cancer' vs 'iris'"):
        compare_runs([r["small"].path, r["logistic"].path])


def test_compare_refuses_other_cv_rows_and_warns_on_other_inputs(runs, tmp_path):
    _, r = runs
    folded = tmp_path / "folded"
    shutil.copytree(r["small"].path, folded)
    (folded / "rows.json").write_text(json.dumps({"train": list(range(100)), "test": list(range(100, 150))}))
    with pytest.raises(UserError, match="rows.json"):
        check_same_data([r["small"].path, folded])
    scaled = tmp_path / "scaled"
    shutil.copytree(r["small"].path, scaled)
    text = (scaled / "recipe.yaml").read_text().replace("scale: standardize", "scale: normalize")
    (scaled / "recipe.yaml").write_text(text)
    warnings = check_same_data([r["small"].path, scaled])
    assert len(warnings) == 1 and "data.scale" in warnings[0]


def test_compare_command(run_cli, runs):
    _, r = runs
    res = run_cli("compare", r["small"].path, r["logistic"].path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"danlu: error: {r['logistic'].path}: scored on other data than {r['small'].path} (data.name "
        f"'breast_cancer' vs 'iris'); compare only runs of the same data, seed and split"]
    res = run_cli("compare", r["small"].path, r["wide"].path, "--no-reference", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [row["kind"] for row in rows].count("run") == 2


# --- runs index ------------------------------------------------------------------------------

def test_index_lists_filters_and_sorts(runs):
    root, r = runs
    rows = list_runs(root, rebuild=True)
    assert {row["path"] for row in rows} == set(r)
    assert (root / INDEX_FILE).is_file()
    by_path = {row["path"]: row for row in rows}
    assert by_path["logistic"]["model_kind"] == "logistic" and by_path["logistic"]["data_name"] == "breast_cancer"
    assert by_path["wide"]["epochs"] == 4 and by_path["small"]["status"] == "finished"
    assert by_path["small"]["primary_value"] == pytest.approx(r["small"].summary["test"]["accuracy"])

    assert {row["path"] for row in list_runs(root, ["model.kind=logistic"])} == {"logistic"}
    assert {row["path"] for row in list_runs(root, ["data.name=iris", "seed!=3"])} == {"small", "wide"}
    assert {row["path"] for row in list_runs(root, ["model.hidden=[16]"])} == {"wide"}
    threshold = float(np.median([run.summary["test"]["accuracy"] for run in r.values()]))
    expected = {name for name, run in r.items() if run.summary["test"]["accuracy"] > threshold}
    assert {row["path"] for row in list_runs(root, [f"test.accuracy>{threshold}"])} == expected

    ordered = list_runs(root, sort="accuracy")
    values = [row["summary"]["test"]["accuracy"] for row in ordered]
    assert values == sorted(values, reverse=True)
    losses = [row["summary"]["test"]["log_loss"] for row in list_runs(root, sort="test.log_loss")]
    assert losses == sorted(losses)
    with pytest.raises(UserError, match="did you mean 'model'"):
        parse_filter("modle.kind=mlp")
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_filter("model.kind")


def test_index_follows_the_folders(runs, tmp_path):
    root, r = runs
    mine = tmp_path / "mine"
    shutil.copytree(r["small"].path, mine / "a")
    shutil.copytree(r["wide"].path, mine / "cv-x" / "fold-1")
    assert {row["path"] for row in list_runs(mine)} == {"a", "cv-x/fold-1"}
    # an unfinished run (no summary yet) is listed as such
    (mine / "cv-x" / "fold-1" / "summary.json").unlink()
    row = [row for row in list_runs(mine) if row["path"] == "cv-x/fold-1"][0]
    assert row["status"] == "unfinished" and row["primary_value"] is None
    # a vanished folder leaves the index; a broken index file of danlu's (its header names it
    # danlu's, the rest is garbage) is rebuilt from the folders
    shutil.rmtree(mine / "a")
    assert [row["path"] for row in list_runs(mine)] == ["cv-x/fold-1"]
    header = (mine / INDEX_FILE).read_bytes()[:100]
    (mine / INDEX_FILE).write_bytes(header + b"not a database at all" * 100)
    assert [row["path"] for row in list_runs(mine)] == ["cv-x/fold-1"]
    # index_run adds one run to the index above it without a scan
    shutil.copytree(r["logistic"].path, mine / "b")
    assert index_run(mine / "b") == (mine / INDEX_FILE).resolve()
    with sqlite3.connect(mine / INDEX_FILE) as conn:
        assert {p for (p,) in conn.execute("SELECT path FROM runs")} == {"cv-x/fold-1", "b"}


def test_runs_command(run_cli, runs):
    root, _ = runs
    res = run_cli("runs", "--runs-dir", root, "--filter", "data.name=iris", "--sort", "accuracy")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["name", "path", "created", "model"]
    assert {line.split()[1] for line in lines[2:]} == {"small", "wide", "seed3"}
    res = run_cli("runs", "--runs-dir", root / "nope")
    assert res.returncode == 2 and "no such runs folder" in res.stderr
