"""DANLU_MAX_EPOCHS: the smoke-test cap on train.epochs that the README test runs under."""
import pytest

from danlu.errors import RecipeError, UserError
from danlu.recipe import Recipe

DIGITS = {"data": {"source": "sklearn", "name": "digits"}, "model": {"kind": "mlp"}}


def test_unset_leaves_epochs_alone(monkeypatch):
    monkeypatch.delenv("DANLU_MAX_EPOCHS", raising=False)
    assert Recipe.from_dict(DIGITS | {"train": {"epochs": 7}}).train.epochs == 7


@pytest.mark.parametrize("given, cap, expected", [(20, "2", 2), (1, "3", 1), (5, "5", 5), (20, " 1 ", 1)])
def test_caps_epochs_never_raises_them(monkeypatch, given, cap, expected):
    monkeypatch.setenv("DANLU_MAX_EPOCHS", cap)
    recipe = Recipe.from_dict(DIGITS | {"train": {"epochs": given}})
    assert recipe.train.epochs == expected
    # the resolved recipe (what the run folder keeps) says what actually ran
    assert "epochs: %d" % expected in recipe.to_yaml()


def test_caps_yaml_recipes_and_overrides(monkeypatch, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\nmodel: {kind: mlp}\ntrain: {epochs: 30}\n")
    monkeypatch.setenv("DANLU_MAX_EPOCHS", "1")
    assert Recipe.from_yaml(path).train.epochs == 1
    assert Recipe.from_yaml(path, ["train.epochs=10"]).train.epochs == 1


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_values_are_a_user_error_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("DANLU_MAX_EPOCHS", bad)
    with pytest.raises(RecipeError, match="DANLU_MAX_EPOCHS must be a whole number") as err:
        Recipe.from_dict(DIGITS)
    assert isinstance(err.value, UserError)
    assert "\n" not in str(err.value)
