"""`danlu ensemble` on real runs: neural and classical members, every method, the same-data check."""
import json
import math

import numpy as np
import pytest

import danlu
from danlu import training as runs
from danlu.combine import combine, ensemble, figures, load_members
from danlu.combine._ensemble import _labels
from danlu.errors import UserError
from danlu.recipe import Recipe

QUIET = {"divergence": {"enabled": False}, "gradients": {"enabled": False}, "fit": {"enabled": False},
         "convergence": {"enabled": False}}


def _recipe(data, model, **extra):
    return Recipe.from_dict({"seed": 0, "data": {"source": "sklearn", "name": data}, "model": model,
                             "checkpoint": {"every_epochs": 0}, "monitors": QUIET, "output": {"progress": "none"},
                             **extra})


@pytest.fixture(scope="module")
def digits_members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    # a neural and two classical members of similar accuracy (0.95 - 0.96 on validation)
    specs = {
        "mlp": _recipe("digits", {"kind": "mlp", "hidden": [32]}, optimizer={"lr": 0.01}, train={"epochs": 4}),
        "forest": _recipe("digits", {"kind": "random_forest", "n_estimators": 40}),
        "boost": _recipe("digits", {"kind": "gradient_boosting", "n_estimators": 20}),
    }
    return [danlu.train(recipe, root / name).path for name, recipe in specs.items()]


@pytest.fixture(scope="module")
def diabetes_members(tmp_path_factory):
    root = tmp_path_factory.mktemp("regressors")
    specs = {
        "linear": _recipe("diabetes", {"kind": "linear"}, optimizer={"lr": 0.01}, train={"epochs": 15}),
        "tree": _recipe("diabetes", {"kind": "decision_tree", "max_depth": 3}),
        "boosting": _recipe("diabetes", {"kind": "gradient_boosting", "n_estimators": 30, "learning_rate": 0.05}),
    }
    return [danlu.train(recipe, root / name).path for name, recipe in specs.items()]


def _combined(loaded, method):
    """What ``ensemble`` computes, from members loaded once: {"members": [...], "ensemble": {...}}."""
    members, prepared = loaded
    info = prepared.info
    labels = {s: _labels(prepared.splits[s][1], info) for s in ("validation", "test")}
    combined, weights, details = combine(method, [m.outputs for m in members], labels["validation"], info)
    return {"members": [{"weight": None if weights is None else weights[i],
                         **{s: figures(info, labels[s], m.outputs[s]) for s in labels}} for i, m in enumerate(members)],
            "ensemble": {s: figures(info, labels[s], combined[s]) for s in labels},
            "rows": {s: len(y) for s, y in labels.items()}, "details": details}


@pytest.fixture(scope="module")
def digits_loaded(digits_members):
    return load_members(digits_members, ("validation", "test"), progress=False)


@pytest.fixture(scope="module")
def diabetes_loaded(diabetes_members):
    return load_members(diabetes_members, ("validation", "test"), progress=False)


def _best(result, split, metric, pick=min):
    return pick(m[split][metric] for m in result["members"])


@pytest.mark.parametrize("method", ["vote", "soft-vote", "weighted", "stack", "bayes"])
def test_every_method_is_no_worse_than_its_best_member_on_validation(method, digits_loaded):
    result = _combined(digits_loaded, method)
    val, test = result["ensemble"]["validation"], result["ensemble"]["test"]
    n_val, m = result["rows"]["validation"], len(result["members"])
    best_loss = _best(result, "validation", "log_loss")
    if method == "weighted":     # fitted to the validation log loss over the simplex, members included
        assert val["log_loss"] <= best_loss + 1e-12
    if method == "bayes":        # a softmax of log-likelihoods: at most (m - 1) / (e n) above the best member
        assert val["log_loss"] <= best_loss + (m - 1) / (math.e * n_val)
    if method == "stack":        # fitted on these rows (not guaranteed by construction: L2-penalised)
        assert val["log_loss"] <= best_loss
        assert val["accuracy"] >= _best(result, "validation", "accuracy", max)
    if method == "soft-vote":    # the log loss of a mean is at most the mean log loss (convexity)
        assert val["log_loss"] <= np.mean([mem["validation"]["log_loss"] for mem in result["members"]])
    if method in ("vote", "soft-vote"):   # not fitted: for these members, on this seed
        assert val["accuracy"] >= _best(result, "validation", "accuracy", max)
    assert 0 <= test["accuracy"] <= 1
    weights = [mem["weight"] for mem in result["members"]]
    if method == "stack":
        assert weights == [None] * m and len(result["details"]["coef"]) == 10
    else:
        assert sum(weights) == pytest.approx(1.0) and min(weights) >= 0


def test_ensemble_writes_what_it_computed(digits_members, digits_loaded, tmp_path):
    result = ensemble(digits_members, "stack", tmp_path / "ens", progress=False)
    saved = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert saved["ensemble"] == result["ensemble"] == _combined(digits_loaded, "stack")["ensemble"]
    assert saved["method"] == "stack" and saved["fitted_on"] == "validation"


def test_members_figures_are_the_runs_own_and_weights_follow_quality(digits_members, tmp_path):
    result = ensemble(digits_members, "bayes", tmp_path / "ens", progress=False)
    for member, path in zip(result["members"], digits_members):
        own = runs.evaluate(path, "test")["test"]
        assert member["test"]["accuracy"] == own["accuracy"]
        assert member["test"]["log_loss"] == pytest.approx(own["log_loss"], abs=1e-6)
    ll = result["details"]["log_likelihood"]
    weights = [m["weight"] for m in result["members"]]
    assert int(np.argmax(weights)) == int(np.argmax(ll))
    assert [m["kind"] for m in result["members"]] == ["mlp", "random_forest", "gradient_boosting"]


@pytest.mark.parametrize("method", ["average", "weighted", "stack", "bayes"])
def test_regression_ensembles(method, diabetes_loaded):
    result = _combined(diabetes_loaded, method)
    val = result["ensemble"]["validation"]
    members = result["members"]
    if method in ("weighted", "stack"):   # fitted to the validation MSE; every member is in their family
        assert val["mse"] <= _best(result, "validation", "mse") + 1e-9
    if method == "average":               # the squared error of a mean is at most the mean squared error
        assert val["mse"] <= np.mean([m["validation"]["mse"] for m in members])
        assert [m["weight"] for m in members] == pytest.approx([1 / 3] * 3)
    if method == "bayes":                 # Gaussian likelihoods: the member with the lowest MSE weighs most
        mses = [m["validation"]["mse"] for m in members]
        assert int(np.argmax([m["weight"] for m in members])) == int(np.argmin(mses))
    assert result["ensemble"]["test"]["r2"] > 0


def test_members_trained_on_other_data_are_refused(digits_members, tmp_path):
    other = danlu.train(_recipe("digits", {"kind": "decision_tree"}, seed=1), tmp_path / "seed1").path
    with pytest.raises(UserError, match=r"its seed is 1 but .* has 0; ensemble members must share"):
        ensemble([digits_members[0], other], "soft-vote", tmp_path / "ens", progress=False)
    kmeans = danlu.train(_recipe("digits", {"kind": "kmeans", "n_init": 1}), tmp_path / "km").path
    with pytest.raises(UserError, match="learns without the labels"):
        ensemble([digits_members[0], kmeans], "soft-vote", tmp_path / "ens", progress=False)
    with pytest.raises(UserError, match="did you mean 'stack'"):
        ensemble(digits_members, "stak", tmp_path / "ens", progress=False)
    assert not (tmp_path / "ens").exists()


def test_vote_is_refused_for_regression(diabetes_members, tmp_path):
    with pytest.raises(UserError, match="needs classes to vote on"):
        ensemble(diabetes_members, "vote", tmp_path / "ens", progress=False)


def test_cli_ensemble(digits_members, cli, tmp_path):
    res = cli("ensemble", *digits_members, "--method", "weighted", "-o", tmp_path / "ens")
    assert res.returncode == 0, res.stderr
    assert "ensemble (weighted)" in res.stdout and "fitted here" in res.stdout
    saved = json.loads((tmp_path / "ens" / "ensemble.json").read_text())
    assert saved["method"] == "weighted" and len(saved["members"]) == 3
    res = cli("ensemble", *digits_members, "--method", "weighted", "-o", tmp_path / "ens")
    assert res.returncode == 2 and "--overwrite" in res.stderr
