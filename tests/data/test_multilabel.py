"""data.task multilabel: several 0/1 label columns, one sigmoid output each, per-label metrics.

Oracles: scikit-learn's multilabel metrics on indicator matrices (the metrics, to 1e-12, and the
model's own predictions of a trained run), torch's binary_cross_entropy_with_logits (the loss).
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import danlu
from danlu.errors import DataError, RecipeError, UserError
from danlu.evaluation import compute_metrics
from danlu.evaluation._baseline import baseline_scores, compare_to_baseline
from danlu.evaluation._metrics import metric_direction
from danlu.recipe import Recipe

LABELS = ["a", "b", "c"]


def sklearn_figures(y: np.ndarray, proba: np.ndarray, names=LABELS) -> dict:
    """What compute_metrics must report for multilabel, from scikit-learn."""
    pred = (proba >= 0.5).astype(int)
    out = {"accuracy": skm.accuracy_score(y, pred), "hamming_loss": skm.hamming_loss(y, pred)}
    for avg in ("micro", "macro"):
        out[f"precision_{avg}"] = skm.precision_score(y, pred, average=avg, zero_division=0)
        out[f"recall_{avg}"] = skm.recall_score(y, pred, average=avg, zero_division=0)
        out[f"f1_{avg}"] = skm.f1_score(y, pred, average=avg, zero_division=0)
    defined = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    if len(defined) == y.shape[1]:
        out["roc_auc"] = skm.roc_auc_score(y, proba, average="macro")
    elif defined:   # scikit-learn refuses a label with one class: the mean over the defined ones
        out["roc_auc"] = float(np.mean([skm.roc_auc_score(y[:, j], proba[:, j]) for j in defined]))
    for j, name in enumerate(names):
        out[f"f1_{name}"] = skm.f1_score(y[:, j], pred[:, j], zero_division=0)
    return out


def assert_same(ours: dict, theirs: dict, tol: float = 1e-12) -> None:
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=tol), key


# --- metrics against scikit-learn ---------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_metrics_equal_sklearn_on_random_indicators(seed):
    rng = np.random.default_rng(seed)
    n, k = 40, 4
    y = (rng.random((n, k)) < rng.uniform(0.2, 0.7, k)).astype(np.int64)
    proba = rng.random((n, k))
    proba[:, 0] = np.round(proba[:, 0], 1)   # ties in the ranking, and exact 0.5 thresholds
    names = ["x", "y", "z", "w"]
    ours = compute_metrics("multilabel", y, proba, label_names=names)
    expected = sklearn_figures(y, proba, names)
    assert_same(ours, expected)
    assert set(ours) == set(expected)   # nothing else, no stray keys


def test_roc_auc_skips_a_label_with_one_class_and_no_label_gives_none():
    rng = np.random.default_rng(7)
    y = (rng.random((30, 3)) < 0.5).astype(int)
    y[:, 1] = 1   # every row has label 1: its AUC is undefined
    proba = rng.random((30, 3))
    ours = compute_metrics("multilabel", y, proba, label_names=LABELS)
    assert_same(ours, sklearn_figures(y, proba))
    assert ours["roc_auc"] == pytest.approx(np.mean([skm.roc_auc_score(y[:, j], proba[:, j]) for j in (0, 2)]))
    y[:] = 0
    assert "roc_auc" not in compute_metrics("multilabel", y, proba)
    nan = compute_metrics("multilabel", (proba > 0.5).astype(int), np.full_like(proba, np.nan))
    assert np.isnan(nan["roc_auc"])


def test_metric_directions_and_bad_inputs():
    assert metric_direction("val_hamming_loss") == "min"
    assert metric_direction("test_f1_a") == metric_direction("f1_loss_label") == "max"
    with pytest.raises(DataError, match="0 or 1"):
        compute_metrics("multilabel", np.array([[0, 2], [1, 0]]), np.full((2, 2), 0.5))
    with pytest.raises(DataError, match=r"\(N, n_labels\)"):
        compute_metrics("multilabel", np.array([0, 1]), np.full((2, 2), 0.5))


def test_baseline_is_each_labels_training_frequency():
    y_train = np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [1, 1, 1]])
    scores = baseline_scores("multilabel", y_train, 5)
    np.testing.assert_allclose(scores["prior"], np.tile([0.75, 0.25, 0.75], (5, 1)))
    rng = np.random.default_rng(1)
    y_eval = (rng.random((60, 3)) < 0.5).astype(int)
    model = np.clip(y_eval + rng.normal(0, 0.2, y_eval.shape), 0, 1)   # a good model
    out = compare_to_baseline("multilabel", y_train, y_eval, model, label_names=LABELS, n_boot=200)
    assert out["against"] == "prior"
    assert_same(out["baseline"]["prior"], sklearn_figures(y_eval, scores["prior"][:1].repeat(60, 0)))
    assert out["significance"]["bootstrap"]["difference"] == pytest.approx(
        skm.accuracy_score(y_eval, model >= 0.5) - skm.accuracy_score(y_eval, np.tile([1, 0, 1], (60, 1))))
    assert out["significance"]["verdict"].startswith("significantly better")


def test_loss_is_bce_with_logits_per_label():
    from danlu.data._info import DataInfo
    from danlu.training._factory import build_loss, output_dim, resolve_loss_kind, scores_to_proba

    info = DataInfo("multilabel", "tabular", (4,), None, LABELS, ["f0", "f1", "f2", "f3"], n_targets=3)
    assert resolve_loss_kind({}, info) == resolve_loss_kind({"kind": "bce"}, info) == "bce"
    assert output_dim("bce", info) == 3
    out = torch.randn(8, 3)
    y = (torch.rand(8, 3) < 0.5).float()
    loss = build_loss({}, info)(out, y)
    assert float(loss) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(out, y)),
                                        rel=1e-6)
    torch.testing.assert_close(scores_to_proba(out, "bce", info), torch.sigmoid(out))
    for kind in ("cross_entropy", "mse", "hinge"):
        with pytest.raises(RecipeError, match="multilabel"):
            resolve_loss_kind({"kind": kind}, info)
    with pytest.raises(RecipeError, match="class_weights applies to classification"):
        build_loss({"class_weights": "auto"}, info)


# --- a run, end to end --------------------------------------------------------------------------

def write_data(path, n=300, seed=0, label_cells=None):
    """4 features, 3 labels with learnable rules: a = f0 > 0, b = f1 + f2 > 0, c = f3 < -0.3."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < -0.3], axis=1).astype(int)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["f0", "f1", "f2", "f3", *LABELS])
        for i in range(n):
            cells = [f"{v:.6f}" for v in X[i]] + [str(v) for v in y[i]]
            if label_cells and i in label_cells:
                cells[-3:] = label_cells[i]
            w.writerow(cells)
    return X, y


def recipe(path, tmp_path, **data):
    return Recipe.from_dict({
        "data": {"source": "csv", "path": str(path), "task": "multilabel", "label": LABELS, **data},
        "model": {"kind": "mlp", "hidden": [16]}, "train": {"epochs": 25, "batch_size": 32},
        "optimizer": {"kind": "adam", "lr": 0.01}, "seed": 0,
        "output": {"runs_dir": str(tmp_path / "runs"), "progress": "none"}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multilabel")
    write_data(tmp / "ml.csv")
    run = danlu.train(recipe(tmp / "ml.csv", tmp))
    return tmp, run


def test_run_figures_equal_evaluate_and_sklearn_on_its_own_predictions(trained):
    from danlu.data import prepare
    from danlu.training import load_model
    from danlu.training._factory import scores_to_proba

    tmp, run = trained
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["test"]["accuracy"] > 0.8 and summary["test"]["f1_a"] > 0.9   # it learned the rules
    evaluated = danlu.evaluate(run.path, "all")
    for split in ("train", "validation", "test"):
        assert evaluated[split] == pytest.approx(summary[split], abs=1e-12), split
    model, pipeline, meta, rec = load_model(run.path)
    assert pipeline.info.task == "multilabel" and pipeline.info.classes == LABELS and meta["loss_kind"] == "bce"
    X, y = prepare(rec.data, rec.seed, str(run.path / "recipe.yaml")).splits["test"]
    with torch.no_grad():
        proba = scores_to_proba(model(X), "bce", pipeline.info).double().numpy()
    assert_same(summary["test"], sklearn_figures(y.numpy().astype(int), proba), tol=1e-6)
    assert summary["baseline"]["against"] == "prior"
    assert summary["test"]["accuracy"] > summary["baseline"]["baseline"]["prior"]["accuracy"]


def test_predict_writes_the_labels_on_and_each_probability(trained, cli):
    tmp, run = trained
    X, y = write_data(tmp / "new.csv", n=40, seed=5)
    result = cli("predict", run.path, tmp / "new.csv", "-o", tmp / "pred.csv")
    assert result.returncode == 0, result.stderr
    with open(tmp / "pred.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["row", "prediction", "proba_a", "proba_b", "proba_c"]
    for row in rows:
        on = [name for name in LABELS if float(row[f"proba_{name}"]) >= 0.5]
        assert row["prediction"] == "|".join(on)
    expected = ["|".join(n for n, v in zip(LABELS, r) if v) for r in y]
    assert sum(r["prediction"] == e for r, e in zip(rows, expected)) >= 30
    assert any("|" in r["prediction"] for r in rows)
    python = danlu.predict(run.path, tmp / "new.csv")
    assert [r["prediction"] for r in python] == [r["prediction"] for r in rows]


def test_serve_answers_like_predict(trained):
    from danlu.serve._predictor import Predictor

    tmp, run = trained
    predictor = Predictor(run.path, device="cpu")
    rows = [{"f0": 1.0, "f1": 1.0, "f2": 1.0, "f3": -2.0}, {"f0": -1.0, "f1": -1.0, "f2": -1.0, "f3": 2.0}]
    answers = predictor.predict(rows)
    assert answers[0]["prediction"] == "a|b|c" and answers[1]["prediction"] == ""
    assert set(answers[0]["probabilities"]) == set(LABELS)


def test_a_dataframe_gives_the_run_a_csv_gives(trained):
    import pandas as pd

    tmp, run = trained
    frame = pd.read_csv(tmp / "ml.csv")
    cfg = recipe(tmp / "ml.csv", tmp).to_dict()
    from danlu.data import prepare
    from danlu.data._python import prepare_python

    a = prepare(cfg["data"], 0)
    b = prepare_python(frame, cfg["data"], 0)
    assert b.info.task == "multilabel" and b.info.classes == LABELS
    for split in a.splits:
        torch.testing.assert_close(a.splits[split][1], b.splits[split][1])
        assert a.splits[split][1].dtype == torch.float32 and a.splits[split][1].shape[1] == 3
    arrays = prepare_python((frame[["f0", "f1", "f2", "f3"]].to_numpy(), frame[LABELS].to_numpy()),
                            {"task": "multilabel"}, 0)   # arrays: the labels are named by their column numbers
    assert arrays.info.classes == ["0", "1", "2"]
    torch.testing.assert_close(arrays.splits["test"][1], a.splits["test"][1])


# --- bad inputs: one line -------------------------------------------------------------------------

def one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_label_cell_that_is_not_0_or_1(tmp_path):
    from danlu.data import prepare

    write_data(tmp_path / "bad.csv", label_cells={6: ["1", "2", "0"]})
    with pytest.raises(DataError) as err:
        prepare(recipe(tmp_path / "bad.csv", tmp_path).data, 0)
    assert "label column 'b' line 8: 2 is not 0 or 1" in one_line(err)
    write_data(tmp_path / "text.csv", label_cells={3: ["yes", "0", "1"]})
    with pytest.raises(DataError) as err:
        prepare(recipe(tmp_path / "text.csv", tmp_path).data, 0)
    assert "column 'a' line 5: 'yes' is not a number" in one_line(err)


def test_one_label_column_and_a_list_without_multilabel(tmp_path, cli):
    from danlu.data import prepare

    write_data(tmp_path / "ml.csv")
    with pytest.raises(DataError) as err:
        prepare(recipe(tmp_path / "ml.csv", tmp_path, label="a").data, 0)
    assert "needs two or more 0/1 label columns" in one_line(err)
    with pytest.raises(RecipeError) as err:
        prepare(recipe(tmp_path / "ml.csv", tmp_path, task="classification").data, 0)
    assert "only data.task multilabel takes" in one_line(err)
    (tmp_path / "r.yaml").write_text(f"data: {{source: csv, path: {tmp_path / 'ml.csv'}, task: multilabel, "
                                     f"label: a}}\nmodel: {{kind: mlp}}\ntrain: {{epochs: 1}}\n")
    result = cli("train", tmp_path / "r.yaml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs two or more 0/1 label columns" in result.stderr
    with pytest.raises(UserError) as err:   # binary-classification knobs are refused before training
        danlu.train(recipe(tmp_path / "ml.csv", tmp_path, positive_class="a"))
    assert "data.positive_class applies to classification" in one_line(err)


def test_a_classical_model_refuses_multilabel(tmp_path):
    write_data(tmp_path / "ml.csv", n=60)
    cfg = recipe(tmp_path / "ml.csv", tmp_path).to_dict()
    cfg["model"] = {"kind": "random_forest"}
    with pytest.raises(RecipeError) as err:
        danlu.train(Recipe.from_dict(cfg))
    assert "does not learn data.task multilabel" in one_line(err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/summary.json"))


def test_onnx_export_gives_each_labels_probability(trained):
    ort = pytest.importorskip("onnxruntime")
    from danlu.serve import export_onnx

    tmp, run = trained
    path = export_onnx(run.path, tmp / "model.onnx")
    X, _ = write_data(tmp / "onnx.csv", n=20, seed=9)
    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    assert names == ["logits", "probabilities"]
    proba = session.run(["probabilities"], {session.get_inputs()[0].name: X.astype(np.float32)})[0]
    expected = danlu.predict(run.path, tmp / "onnx.csv")
    np.testing.assert_allclose(proba, [[r[f"proba_{n}"] for n in LABELS] for r in expected], atol=1e-5)


def test_report_shows_each_labels_figures_not_regression_plots(trained, cli):
    import re

    tmp, run = trained
    result = cli("report", run.path)
    assert result.returncode == 0, result.stderr
    text = (run.path / "report.html").read_text()
    summary = json.loads((run.path / "summary.json").read_text())
    cells = re.findall(r"<tr><td>(\w)</td><td>[\d.]+</td><td>[\d.]+</td><td>([\d.]+)</td></tr>", text)
    assert cells == [(name, f"{summary['test'][f'f1_{name}']:.3f}") for name in LABELS]
    assert not (run.path / "plots" / "residuals.png").exists()


def test_cross_validation_reports_the_multilabel_figures(tmp_path):
    import io

    from danlu.experiments import cross_validate

    write_data(tmp_path / "ml.csv", n=120)
    cfg = recipe(tmp_path / "ml.csv", tmp_path).to_dict()
    cfg["train"]["epochs"] = 2
    result = cross_validate(Recipe.from_dict(cfg), 2, tmp_path / "cv", progress="none", stream=io.StringIO())
    assert result.task == "multilabel" and result.count["accuracy"] == 2
    assert "hamming_loss" in result.table() and "prior baseline (mean)" in result.table()
    assert result.baseline_mean["prior"]["roc_auc"] == 0.5   # a constant score ranks nothing
    assert set(result.mean) >= {"hamming_loss", "f1_a", "f1_b", "f1_c"}
