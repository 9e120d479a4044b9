"""Hypernetwork: the main network's weights come from the generator, and it learns conflicting tasks."""
from pathlib import Path

import pytest
import torch

import danlu.transfer  # noqa: F401  (registers the hypernetwork kind)
from danlu.data import DataInfo
from danlu.errors import RecipeError
from danlu.models import build_model, check_model_builder
from danlu.recipe import Recipe
from danlu.transfer import HyperNetwork

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "hypernetwork_multitask.yaml"


def _info():
    # columns x1, task (3 tasks + unknown code), x2, colour (2 + unknown)
    return DataInfo(task="classification", kind="table", input_shape=(4,), n_classes=2, classes=["no", "yes"],
                    feature_names=["x1", "task", "x2", "colour"], categorical=[(1, 4), (3, 3)])


def _batch(n=6):
    x = torch.randn(n, 4)
    x[:, 1] = torch.arange(n) % 3
    x[:, 3] = torch.arange(n) % 2
    return x


def test_main_network_has_no_parameters_and_gradients_reach_the_generator():
    torch.manual_seed(0)
    model = build_model({"kind": "hypernetwork", "hidden": [8]}, _info(), 2)
    assert isinstance(model, HyperNetwork)
    assert list(model.main.parameters()) == []
    model(_batch()).sum().backward()
    assert model.generator[0].weight.grad.abs().sum() > 0
    assert model.generator[2].weight.grad.abs().sum() > 0
    assert model.task_embedding.weight.grad[:3].abs().sum(1).gt(0).all()   # every task used got a gradient
    check_model_builder("hypernetwork", _info(), 2, {"hidden": [8]})


def test_generated_weights_depend_on_the_task_embedding():
    torch.manual_seed(0)
    model = build_model({"kind": "hypernetwork", "hidden": [8]}, _info(), 2)
    with torch.no_grad():
        table = model.task_weights()
        assert table.shape == (model.n_tasks + 1, model.main.n_params) == (5, 58)
        assert not torch.allclose(table[0], table[1])
        before = model.task_weights(torch.tensor([2])).clone()
        model.task_embedding.weight[2] += 1.0
        after = model.task_weights(torch.tensor([2]))
    assert not torch.allclose(before, after)
    # Rows of one task use exactly the weights generated for it: the same features and task give
    # the same output whatever the other rows are.
    x = _batch()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:1], model(x[:1]))


def test_default_task_column_is_the_first_categorical_one():
    generic = DataInfo(task="classification", kind="table", input_shape=(7,), n_classes=3, classes=[0, 1, 2],
                       feature_names=[], categorical=[(5, 9), (1, 4)])
    model = check_model_builder("hypernetwork", generic, 3)
    assert model.task_index == 1 and model.n_tasks == 4


def test_bad_task_column_is_a_recipe_error():
    plain = DataInfo(task="regression", kind="table", input_shape=(3,), n_classes=None, classes=[],
                     feature_names=["a", "b", "c"])
    with pytest.raises(RecipeError, match="needs a categorical task column"):
        build_model({"kind": "hypernetwork"}, plain, 1)
    with pytest.raises(RecipeError, match="task_column 'group'"):
        build_model({"kind": "hypernetwork", "task_column": "group"}, _info(), 2)
    with pytest.raises(RecipeError, match="must be categorical"):
        build_model({"kind": "hypernetwork", "task_column": "x1"}, _info(), 2)


def _test_rows(run_dir):
    """(model, test X, test y) of a finished run."""
    from danlu.training import prepare_run_data as _prepare_data, load_model

    model, _pipeline, _meta, recipe = load_model(run_dir)
    X, y = _prepare_data(recipe).splits["test"]
    return model, X, y


def _accuracy_by_task(model, X, y, names, codes):
    with torch.no_grad():
        pred = model(X).argmax(1)
    return {name: (pred[codes == k] == y[codes == k]).float().mean().item() for k, name in enumerate(names)}


def test_learns_conflicting_tasks_where_a_shared_net_cannot(tmp_path):
    from danlu.training import train
    from danlu.data import Pipeline

    fast = ["train.epochs=4", "train.batch_size=64", "optimizer.lr=0.02", "output.progress=none", "device=cpu"]
    hyper = train(Recipe.from_yaml(RECIPE, fast), tmp_path / "hyper")
    model, X, y = _test_rows(hyper.path)
    j = model.task_index
    names = Pipeline.load(hyper.path).encoder.categories[j]
    codes = X[:, j].round().long()
    acc = _accuracy_by_task(model, X, y, names, codes)
    assert names == ["a", "b", "c"]
    assert min(acc.values()) > 0.8, acc

    # The same rows (same split, same seed) for a plain MLP that does not see the task id.
    plain = Recipe.from_yaml(RECIPE, fast).to_dict()
    plain["data"].update(features=["x1", "x2", "x3", "x4"], categorical=[])
    plain["model"] = {"kind": "mlp", "hidden": [32]}
    shared = train(Recipe.from_dict(plain, source=str(RECIPE)), tmp_path / "shared")
    shared_model, X_plain, y_plain = _test_rows(shared.path)
    assert torch.equal(y_plain, y)
    shared_acc = _accuracy_by_task(shared_model, X_plain, y_plain, names, codes)
    # Tasks a and b want opposite answers: without the task id the pair averages near chance.
    assert (shared_acc["a"] + shared_acc["b"]) / 2 < 0.7, shared_acc
    assert (acc["a"] + acc["b"]) / 2 > (shared_acc["a"] + shared_acc["b"]) / 2 + 0.2
