"""The autoencoder kind: its objective is the mean squared reconstruction error, training on the
digits lowers it below the mean image's, its figures are repeatable, and it draws its codes and
reconstructions."""
import json
import types

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import danlu
from danlu import training as runs
from danlu.errors import RecipeError
from danlu.models import build_model

RECIPE = {"seed": 0, "data": {"source": "sklearn", "name": "digits", "scale": "none"},
          "model": {"kind": "autoencoder", "code_dim": 4, "hidden": [32]},
          "optimizer": {"kind": "adam", "lr": 0.01}, "train": {"epochs": 4, "batch_size": 64},
          "output": {"progress": "none"}}


def image_info(shape=(1, 8, 8), categorical=()):
    return types.SimpleNamespace(task="classification", kind="image", input_shape=shape, n_classes=10,
                                 classes=list(range(10)), categorical=list(categorical))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = danlu.train(RECIPE, tmp_path_factory.mktemp("autoencoder") / "run")
    splits = runs.prepare_run_data(runs.read_run_recipe(run.path)).splits
    return run, splits


def test_training_lowers_the_reconstruction_error_below_the_mean_image(trained):
    run, splits = trained
    val = [json.loads(line)["val_reconstruction_mse"] for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert len(val) == 4 and val[-1] < 0.75 * val[0]
    X = splits["test"][0]
    mean_image_mse = float(((X - splits["train"][0].mean(dim=0)) ** 2).mean())
    test = run.summary["test"]
    assert test["loss"] == test["reconstruction_mse"] < 0.7 * mean_image_mse
    assert "baseline" not in run.summary
    assert json.loads((run.path / "model.json").read_text())["objective"] is True
    assert runs.evaluate(run.path, "test")["test"] == test      # repeatable figures, from the saved model


def test_saved_model_encodes_decodes_and_reconstructs(trained):
    run, splits = trained
    model = runs.load_model(run.path)[0].eval()
    X = splits["test"][0][:5]
    with torch.no_grad():
        codes = model.encode(X)
        assert model.latent_dim == 4 and codes.shape == (5, 4)
        images = model.decode(codes)
        assert images.shape == X.shape and 0 <= float(images.min()) and float(images.max()) <= 1
        torch.testing.assert_close(model(X), images)
        torch.testing.assert_close(model.figures(X, None)["reconstruction_mse"], float(F.mse_loss(images, X)))


def test_codes_and_reconstructions_are_drawn(trained):
    run, _splits = trained
    with Image.open(run.path / "plots" / "codes.png") as picture:
        assert picture.format == "PNG" and min(picture.size) >= 300
    with Image.open(run.path / "plots" / "reconstructions.png") as picture:
        width, height = picture.size
    # 16 inputs over their 16 reconstructions, each 8x8 pixels drawn 8 times larger with a 1-pixel gap
    assert (width, height) == (8 * (16 * 9 + 1), 8 * (2 * 9 + 1))


def test_objective_is_the_mean_squared_error_and_uses_no_randomness():
    torch.manual_seed(0)
    model = build_model({"kind": "autoencoder", "hidden": [8]}, image_info(), out_dim=1)
    x = torch.rand(6, 1, 8, 8)
    torch.manual_seed(1)
    loss = model.objective(x, None)
    torch.testing.assert_close(loss, ((model(x) - x) ** 2).mean())
    torch.manual_seed(2)
    assert torch.equal(model.objective(x, None), loss)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_sigmoid_output_refuses_standardised_inputs_linear_output_takes_them():
    x = torch.randn(4, 1, 8, 8)
    sigmoid = build_model({"kind": "autoencoder"}, image_info(), out_dim=1)
    with pytest.raises(RecipeError, match=r"data\.scale: none .* model\.output: linear"):
        sigmoid.objective(x, None)
    linear = build_model({"kind": "autoencoder", "output": "linear"}, image_info(), out_dim=1)
    assert torch.isfinite(linear.objective(x, None))


def test_categorical_columns_are_refused():
    with pytest.raises(RecipeError, match="categorical"):
        build_model({"kind": "autoencoder"}, image_info(shape=(5,), categorical=[(1, 3)]), out_dim=1)
