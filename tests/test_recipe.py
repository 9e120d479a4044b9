"""The recipe schema: defaults, validation messages, overrides."""
import pytest

from danlu.errors import RecipeError
from danlu.recipe import Recipe, apply_overrides, describe

BASE = {"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp"}}


def test_defaults_filled_and_attribute_access():
    r = Recipe.from_dict(BASE)
    assert r.optimizer.lr == 1e-3
    assert r.train.early_stopping.enabled is True
    assert r.model.hidden == [128, 64]
    assert r.to_dict()["data"]["split"]["validation"] == 0.15


@pytest.mark.parametrize("patch, expected", [
    ({"optimizer": {"lr": -0.1}}, "optimizer.lr must be > 0, got -0.1"),
    ({"optimizer": {"lrr": 0.1}}, "unknown key optimizer.lrr (did you mean 'lr'?)"),
    ({"schedule": {"kind": "cosin"}}, "schedule.kind must be one of constant, linear, cosine"),
    ({"schedule": {"kind": "cosin"}}, "(did you mean 'cosine'?)"),
    ({"train": {"epochs": "ten"}}, "train.epochs must be an integer, got 'ten'"),
    ({"train": {"batch_size": 0}}, "train.batch_size must be >= 1, got 0"),
    ({"train": {"epochs": 2.5}}, "train.epochs must be an integer"),
    ({"seed": True}, "seed must be an integer"),
    ({"model": {"kind": "mlpp"}}, "model.kind must be one of"),
    ({"model": {"kind": "mlp", "hiden": [3]}}, "unknown key model.hiden (did you mean 'hidden'?)"),
    ({"data": {"source": "csv"}}, "data.path is required when data.source is csv"),
    ({"data": {"split": {"validation": 0.5, "test": 0.5}}}, "must leave rows to train on"),
    ({"schedule": {"kind": "multistep"}}, "schedule.milestones is required"),
    ({"optimizer": {"betas": [0.9]}}, "optimizer.betas must be two numbers"),
    ({"epochs": 3}, "unknown key epochs"),
])
def test_bad_values_name_key_and_fix(patch, expected):
    data = apply_overrides(BASE, [], "t")
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(data, source="r.yaml")
    msg = str(err.value)
    assert msg.startswith("r.yaml: ")
    assert expected in msg
    assert "\n" not in msg


def test_yaml_file_and_overrides(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data: {source: sklearn, name: iris}\noptimizer: {lr: 0.1}\n")
    r = Recipe.from_yaml(p, ["optimizer.lr=0.01", "model.hidden=[8, 4]", "train.early_stopping.enabled=false"])
    assert r.optimizer.lr == 0.01
    assert r.model.hidden == [8, 4]
    assert r.train.early_stopping.enabled is False
    assert r.name == "r"
    again = Recipe.from_dict(r.to_dict())
    assert again == r


def test_yaml_errors_are_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: {source: sklearn\n  name: [\n")
    with pytest.raises(RecipeError, match="bad.yaml: line"):
        Recipe.from_yaml(p)
    with pytest.raises(RecipeError, match="recipe file not found"):
        Recipe.from_yaml(tmp_path / "missing.yaml")
    ok = tmp_path / "ok.yaml"
    ok.write_text("data: {source: sklearn, name: iris}\n")
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        Recipe.from_yaml(ok, ["optimizer.lr"])


def test_relative_data_path_resolves_beside_recipe(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    p = tmp_path / "r.yaml"
    p.write_text("data: {source: csv, path: d.csv}\n")
    r = Recipe.from_yaml(p)
    assert r.data.path == str((tmp_path / "d.csv").resolve())


def test_recipe_is_read_only():
    r = Recipe.from_dict(BASE)
    with pytest.raises(AttributeError):
        r.optimizer.lr = 3


def test_describe_lists_leaf_keys():
    keys = {row[0] for row in describe()}
    assert {"optimizer.lr", "train.batch_size", "data.split.test", "schedule.gamma", "seed"} <= keys


def test_with_overrides_keeps_python_values():
    r = Recipe.from_dict(BASE).with_overrides({"optimizer.lr": 1e-07, "model.hidden": [8]})
    assert r.optimizer.lr == 1e-07 and r.model.hidden == [8]
    r2 = r.with_overrides(["optimizer.lr=0.5"])
    assert r2.optimizer.lr == 0.5
