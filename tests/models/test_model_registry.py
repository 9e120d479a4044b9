"""The model registry: registration rules, user models, and the recipe wiring."""
import sys
import types

import pytest
import torch
from torch import nn

from danlu.errors import RecipeError
from danlu.models import (
    MODELS,
    build_model,
    check_model_builder,
    register_model,
    registered_params,
    unregister_model,
)
from danlu.recipe import Field, Recipe


def tabular_info(n_features=6, n_classes=3, categorical=()):
    return types.SimpleNamespace(task="classification", kind="tabular", input_shape=(n_features,),
                                 n_classes=n_classes, classes=list(range(n_classes)),
                                 feature_names=[f"f{i}" for i in range(n_features)],
                                 categorical=list(categorical), n_targets=1)


@pytest.fixture
def scratch_names():
    """Names registered by a test are removed afterwards, so tests do not leak into each other."""
    names = []
    yield names
    for name in names:
        if name in MODELS:
            unregister_model(name)


class TinyNet(nn.Module):
    """A user model written as a plain nn.Module whose constructor is the builder."""

    def __init__(self, cfg, info, out_dim):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(info.input_shape[0], cfg["width"]), nn.Tanh(),
                                  nn.Linear(cfg["width"], out_dim))

    def forward(self, x):
        return self.body(x)


def test_builtin_kinds_are_registered():
    assert {"linear", "logistic", "perceptron", "mlp", "cnn", "rnn"} <= set(MODELS)


def test_registered_params_are_fields_and_a_copy():
    params = registered_params()
    assert params["mlp"]["hidden"].default == [128, 64]
    assert params["cnn"]["kernel_size"].default == 3
    assert all(isinstance(f, Field) for f in params["rnn"].values())
    params["mlp"].pop("hidden")  # mutating the copy must not reach the registry
    assert "hidden" in registered_params()["mlp"]


def test_user_module_plugs_in_through_recipe(scratch_names):
    register_model("tiny_net", TinyNet, {"width": Field(int, 8, min=1)})
    scratch_names.append("tiny_net")

    recipe = Recipe.from_dict({"data": {"name": "iris"}, "model": {"kind": "tiny_net", "width": 5}})
    model = build_model(recipe.model, tabular_info(4), 3)
    assert isinstance(model, TinyNet)
    assert model.body[1].out_features == 5
    assert model(torch.randn(7, 4)).shape == (7, 3)
    check_model_builder("tiny_net", tabular_info(4), 3)

    with pytest.raises(RecipeError, match="model.width must be >= 1"):
        Recipe.from_dict({"data": {"name": "iris"}, "model": {"kind": "tiny_net", "width": 0}})
    with pytest.raises(RecipeError, match="unknown key model.depth"):
        Recipe.from_dict({"data": {"name": "iris"}, "model": {"kind": "tiny_net", "depth": 2}})


def test_defaults_filled_for_plain_dicts(scratch_names):
    seen = {}

    @register_model("spy_net", params={"width": Field(int, 8, min=1)})
    def spy(cfg, info, out_dim):
        seen.update(cfg)
        return nn.Linear(info.input_shape[0], out_dim)

    scratch_names.append("spy_net")
    build_model({"kind": "spy_net"}, tabular_info(), 2)
    assert seen == {"kind": "spy_net", "width": 8}


def test_free_form_params_pass_through(scratch_names):
    seen = {}

    def anything(cfg, info, out_dim):
        seen.update(cfg)
        return nn.Linear(info.input_shape[0], out_dim)

    register_model("free_net", anything)
    scratch_names.append("free_net")
    assert registered_params()["free_net"] is None
    recipe = Recipe.from_dict({"data": {"name": "iris"}, "model": {"kind": "free_net", "whatever": [1, 2]}})
    build_model(recipe.model, tabular_info(), 2)
    assert seen["whatever"] == [1, 2]


def test_duplicate_names_need_replace(scratch_names):
    register_model("dup_net", TinyNet, {"width": Field(int, 4)})
    scratch_names.append("dup_net")
    with pytest.raises(ValueError, match="already registered"):
        register_model("dup_net", TinyNet)
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp", TinyNet)

    def other(cfg, info, out_dim):
        return nn.Linear(info.input_shape[0], out_dim)

    register_model("dup_net", other, replace=True)
    assert isinstance(build_model({"kind": "dup_net"}, tabular_info(), 2), nn.Linear)


@pytest.mark.parametrize("name, params, error", [
    ("bad name", None, ValueError),
    ("ok_name", {"kind": Field(str)}, ValueError),
    ("ok_name", {"width": 3}, TypeError),
])
def test_bad_registrations_are_refused(name, params, error):
    with pytest.raises(error):
        register_model(name, TinyNet, params)
    assert name not in MODELS


def test_builder_must_return_a_module(scratch_names):
    register_model("not_a_net", lambda cfg, info, out_dim: 42)
    scratch_names.append("not_a_net")
    with pytest.raises(TypeError, match="expected a torch.nn.Module"):
        build_model({"kind": "not_a_net"}, tabular_info(), 2)


def test_conformance_check_catches_a_dead_parameter(scratch_names):
    class Unused(nn.Module):
        def __init__(self, cfg, info, out_dim):
            super().__init__()
            self.used = nn.Linear(info.input_shape[0], out_dim)
            self.forgotten = nn.Linear(3, 3)

        def forward(self, x):
            return self.used(x)

    register_model("unused_net", Unused)
    scratch_names.append("unused_net")
    with pytest.raises(AssertionError, match="forgotten.weight gets no gradient"):
        check_model_builder("unused_net", tabular_info(), 2)


def test_conformance_check_catches_a_wrong_output_shape(scratch_names):
    register_model("wrong_out", lambda cfg, info, out_dim: nn.Linear(info.input_shape[0], out_dim + 1))
    scratch_names.append("wrong_out")
    with pytest.raises(AssertionError, match="output shape"):
        check_model_builder("wrong_out", tabular_info(), 2)


def test_conformance_check_leaves_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_model_builder("mlp", tabular_info(), 2, {"dropout": 0.5})
    assert torch.equal(torch.rand(3), expected)


def test_unknown_kind_in_recipe_suggests_a_name():
    with pytest.raises(RecipeError, match="did you mean 'mlp'"):
        Recipe.from_dict({"data": {"name": "iris"}, "model": {"kind": "mpl"}})


def test_validating_a_recipe_does_not_need_torch():
    # Run in a fresh interpreter: this one has imported torch already.
    import subprocess

    code = ("import sys; from danlu.recipe import Recipe; "
            "Recipe.from_dict({'data': {'name': 'digits'}, 'model': {'kind': 'cnn'}}); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
