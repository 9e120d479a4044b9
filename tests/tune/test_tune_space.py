"""Search-space files: recipe keys, distributions, grids, and their one-line errors."""
import pytest

from danlu.errors import RecipeError
from danlu.recipe import Recipe
from danlu.tune import load_space
from danlu.tune._space import with_values

RECIPE = Recipe.from_dict({"name": "s", "data": {"source": "sklearn", "name": "iris"},
                           "model": {"kind": "mlp", "hidden": [8]}})


def _error(space) -> str:
    with pytest.raises(RecipeError) as info:
        load_space(space, RECIPE)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_valid_space_reads_in_file_order(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("optimizer.lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n"
                    "model.hidden: {type: categorical, choices: [[64], [128, 64]]}\n"
                    "train.batch_size: {type: int, low: 16, high: 128, step: 16}\n")
    space = load_space(path, RECIPE)
    assert [p.key for p in space.params] == ["optimizer.lr", "model.hidden", "train.batch_size"]
    dists = space.distributions()
    assert dists["optimizer.lr"].log and dists["train.batch_size"].step == 16
    # lists are stored as JSON text for Optuna and come back as lists
    assert dists["model.hidden"].choices == ("[64]", "[128, 64]")
    assert space.decode({"model.hidden": "[128, 64]", "train.batch_size": 32}) == \
        {"model.hidden": [128, 64], "train.batch_size": 32}


@pytest.mark.parametrize("key, hint", [("optimizer.lrr", "optimizer.lr"), ("optimiser.lr", "optimizer.lr"),
                                       ("train.batchsize", "train.batch_size"), ("model.hiden", "model.hidden")])
def test_unknown_keys_get_did_you_mean(key, hint):
    message = _error({key: {"type": "float", "low": 0.1, "high": 0.2}})
    assert f"unknown recipe key '{key}'" in message and f"did you mean '{hint}'" in message


def test_a_section_is_not_a_key():
    assert "is a section" in _error({"optimizer": {"type": "categorical", "choices": [1, 2]}})


def test_model_keys_of_a_tuned_model_kind_are_known():
    space = load_space({"model.kind": {"type": "categorical", "choices": ["mlp", "logistic"]},
                        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5}}, RECIPE)
    assert len(space.params) == 2


@pytest.mark.parametrize("spec, words", [
    ({"type": "gaussian", "low": 0, "high": 1}, "type must be one of"),
    ({"type": "float", "low": 0.1}, "low and high are required"),
    ({"type": "float", "low": 0.5, "high": 0.1}, "low must be below high"),
    ({"type": "float", "low": 0.0, "high": 0.1, "log": True}, "log: true needs low > 0"),
    ({"type": "float", "low": 0.1, "high": 0.9, "step": 0.1, "log": True}, "cannot be used together"),
    ({"type": "float", "low": 0.1, "high": 0.9, "lo": 1}, "unknown setting 'lo'"),
    ({"type": "float", "low": "a", "high": 0.9}, "low must be a finite number"),
    ({"type": "float", "low": 0.1, "high": 0.9, "points": 1}, "points must be an integer >= 2"),
    ({"type": "float", "low": 0.1, "high": 0.9, "grid": [0.5, 2.0]}, "outside"),
    ({"type": "int", "low": 1.5, "high": 4}, "must be an integer"),
    ({"type": "categorical", "choices": []}, "non-empty list"),
    ({"type": "categorical", "choices": [1, 1]}, "duplicates"),
    ("0.1", "must be a mapping"),
])
def test_bad_distributions_are_refused(spec, words):
    assert words in _error({"optimizer.momentum": spec})


def test_values_must_fit_the_recipe_schema():
    assert "optimizer.lr must be > 0" in _error({"optimizer.lr": {"type": "float", "low": 0.0, "high": 0.1}})
    assert "must be an integer" in _error({"train.epochs": {"type": "float", "low": 1, "high": 5}})
    assert "must be one of" in _error({"optimizer.kind": {"type": "categorical", "choices": ["adam", "adm"]}})


def test_grid_values():
    space = load_space({"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "points": 4},
                        "train.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
                        "model.activation": {"type": "categorical", "choices": ["relu", "tanh"]}}, RECIPE)
    grid = space.grid()
    assert grid["optimizer.lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid["train.batch_size"] == [16, 32, 48, 64]
    assert space.grid_size() == 4 * 4 * 2


def test_grid_of_a_float_range_needs_points_or_a_list():
    space = load_space({"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1}}, RECIPE)
    with pytest.raises(RecipeError, match="points: N"):
        space.grid()
    listed = load_space({"optimizer.lr": {"type": "float", "grid": [0.001, 0.01]}}, RECIPE)
    assert listed.grid() == {"optimizer.lr": [0.001, 0.01]}


def test_with_values_keeps_small_floats_as_numbers():
    # 1e-07 written as text would read back as a string in YAML
    assert with_values(RECIPE, {"optimizer.lr": 1e-7, "model.hidden": [4, 2]}).optimizer.lr == 1e-7


def test_command_reports_a_bad_space_in_one_line(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {source: sklearn, name: iris}\n")
    space = tmp_path / "space.yaml"
    space.write_text("optimizer.lrr: {type: float, low: 1.0e-4, high: 0.1}\n")
    done = run_cli("tune", recipe, "--space", space, "--trials", "2", "-o", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "did you mean 'optimizer.lr'" in done.stderr
    assert not (tmp_path / "out").exists()
