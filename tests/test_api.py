"""The Python API: the same verbs as the command line, one code path."""
import json

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import danlu
from danlu import training as runs
from danlu.errors import DataError, UserError
from danlu.recipe import Field, Recipe


def _iris(**extra):
    spec = {"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [16]},
            "optimizer": {"lr": 0.01}, "train": {"epochs": 15, "batch_size": 16}, "output": {"progress": "none"}}
    spec.update(extra)
    return Recipe.from_dict(spec)


def test_summary_metrics_agree_with_sklearn_on_the_saved_model(tmp_path):
    run = danlu.train(_iris(), tmp_path / "run")
    model, pipeline, meta, recipe = runs.load_model(run.path)
    prepared = runs.prepare_run_data(recipe)
    X, y = prepared.splits["test"]
    from danlu.training import model_outputs, scores_to_proba

    proba = scores_to_proba(model_outputs(model, X), meta["loss_kind"], prepared.info).numpy()
    y = y.numpy()
    pred = proba.argmax(1)
    test = run.summary["test"]
    assert test["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-6)
    assert test["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-6)
    assert test["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]), abs=1e-6)
    assert test["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=1e-6)


def test_same_recipe_same_seed_same_weights(tmp_path):
    a = danlu.train(_iris(), tmp_path / "a")
    b = danlu.train(_iris(), tmp_path / "b")
    assert (a.path / "model.safetensors").read_bytes() == (b.path / "model.safetensors").read_bytes()
    c = danlu.train(_iris(seed=1), tmp_path / "c")
    assert (a.path / "model.safetensors").read_bytes() != (c.path / "model.safetensors").read_bytes()


def test_default_run_dir_gets_a_suffix_instead_of_overwriting(tmp_path):
    r = _iris(output={"progress": "none", "runs_dir": str(tmp_path)}, name="iris", train={"epochs": 1})
    a = danlu.train(r)
    b = danlu.train(r)
    assert a.path.name == "iris" and b.path.name == "iris-2"


def test_regression_predictions_are_in_original_units(tmp_path):
    r = Recipe.from_dict({"data": {"source": "sklearn", "name": "diabetes"}, "model": {"kind": "linear"},
                          "optimizer": {"lr": 0.01}, "train": {"epochs": 40}, "output": {"progress": "none"}})
    run = danlu.train(r, tmp_path / "run")
    splits = runs.prepare_run_data(r).splits
    from sklearn.linear_model import LinearRegression

    ols = LinearRegression().fit(*(t.numpy() for t in splits["train"]))
    assert run.summary["test"]["r2"] > ols.score(*(t.numpy() for t in splits["test"])) - 0.03
    model, _, _, _ = runs.load_model(run.path)
    X, y = splits["test"]
    pred = runs.model_outputs(model, X).squeeze(1).numpy()
    assert skm.r2_score(y.numpy(), pred) == pytest.approx(run.summary["test"]["r2"], abs=1e-5)
    assert 50 < pred.mean() < 250        # the diabetes target's own range


def test_user_module_plugs_in_by_registering_a_builder(tmp_path):
    @danlu.register_model("test_tiny", params={"width": Field(int, 8, min=1)}, replace=True)
    def tiny(cfg, info, out_dim):
        return torch.nn.Sequential(torch.nn.Linear(info.input_shape[0], cfg["width"]), torch.nn.Tanh(),
                                   torch.nn.Linear(cfg["width"], out_dim))

    run = danlu.train(_iris(model={"kind": "test_tiny", "width": 12}), tmp_path / "run")
    assert run.summary["test"]["accuracy"] > 0.6
    assert run.summary["run"]["parameters"] == 4 * 12 + 12 + 12 * 3 + 3
    assert run.evaluate("test")["test"]["accuracy"] == pytest.approx(run.summary["test"]["accuracy"])


def test_bad_data_fails_before_a_run_dir_exists(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,label\n1,2,x\n3,,y\n5,6,x\n")
    r = Recipe.from_dict({"data": {"source": "csv", "path": str(csv), "label": "label"},
                          "output": {"progress": "none"}})
    with pytest.raises(DataError, match="b"):
        danlu.train(r, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_early_stopping_restores_best_weights(tmp_path):
    r = _iris(train={"epochs": 60, "batch_size": 16, "early_stopping": {"patience": 2, "monitor": "val_loss"}},
              optimizer={"lr": 0.05})
    run = danlu.train(r, tmp_path / "run")
    hist = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    best = min(hist, key=lambda h: h["val_loss"])
    if run.summary["run"]["stop_reason"]:
        assert len(hist) < 60
    assert run.summary["validation"]["loss"] == pytest.approx(best["val_loss"], rel=1e-5)


def test_predict_refuses_unfinished_run(tmp_path):
    (tmp_path / "recipe.yaml").write_text("data: {source: sklearn, name: iris}\n")
    # a folder made by hand has no manifest of checksums: refused before anything in it is read
    with pytest.raises(UserError, match="has not finished|has no manifest.json"):
        danlu.predict(tmp_path, "x.csv")


def test_verbs_stay_callable_after_every_package_is_imported():
    import importlib

    for name in ("training", "evaluation", "data", "models", "diagnose", "report", "tune", "compress"):
        importlib.import_module(f"danlu.{name}")
    for verb in ("train", "resume", "evaluate", "predict"):
        assert callable(getattr(danlu, verb)), verb
