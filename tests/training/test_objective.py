"""Models that bring their own objective (the protocol VAE, diffusion and autoencoder use)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

import danlu
from danlu.errors import UserError
from danlu.models import register_model, unregister_model
from danlu.training import _checkpoint as ck
from danlu.training._objective import objective_figures


class NoisyAutoencoder(nn.Module):
    """A denoising autoencoder: its loss draws noise, so exact resume needs the saved RNG."""

    def __init__(self, d: int):
        super().__init__()
        self.enc, self.dec = nn.Linear(d, 4), nn.Linear(4, d)

    def forward(self, x):
        return self.dec(torch.tanh(self.enc(x.flatten(1)))).view_as(x)

    def objective(self, xb, yb):
        return ((self(xb + 0.1 * torch.randn_like(xb)) - xb) ** 2).mean()


class WithFigures(NoisyAutoencoder):
    def figures(self, X, y):
        return {"loss": ((self(X) - X) ** 2).mean(), "rows": torch.tensor(len(X))}

    def write_plots(self, run_dir, splits, info):
        (run_dir / "plots").mkdir(exist_ok=True)
        (run_dir / "plots" / "drawn.txt").write_text(",".join(sorted(splits)))


@pytest.fixture(scope="module", autouse=True)
def kinds():
    build = (lambda cls: lambda cfg, info, out_dim: cls(int(torch.tensor(info.input_shape).prod())))
    register_model("noisy_ae", build(NoisyAutoencoder), {})
    register_model("figures_ae", build(WithFigures), {})
    yield
    unregister_model("noisy_ae")
    unregister_model("figures_ae")


def _recipe(kind: str, epochs: int = 4) -> dict:
    return {"name": kind, "seed": 3, "data": {"source": "sklearn", "name": "digits", "scale": "none"},
            "model": {"kind": kind}, "train": {"epochs": epochs, "batch_size": 128},
            "checkpoint": {"every_epochs": 1, "keep_last": 10}}


def test_objective_trains_and_summary_has_its_figures_and_no_baseline(tmp_path):
    run = danlu.train(_recipe("noisy_ae"), tmp_path / "r", progress="none")
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert set(run.summary) >= {"train", "validation", "test"} and "baseline" not in run.summary
    assert json.loads((run.path / "model.json").read_text())["objective"] is True
    # danlu eval gives the figure the run saved: the default figure is repeatable
    assert danlu.evaluate(run.path)["test"]["loss"] == pytest.approx(run.summary["test"]["loss"], rel=1e-6)
    with pytest.raises(UserError, match="danlu generate"):
        danlu.predict(run.path, tmp_path / "rows.csv")


def test_default_figures_leave_the_training_random_stream_alone():
    model = NoisyAutoencoder(64)
    X = torch.rand(50, 1, 8, 8)
    torch.manual_seed(0)
    first = objective_figures(model, X, X)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert objective_figures(model, X, X) == first
    assert torch.equal(torch.rand(1), after)


def test_model_figures_and_plots_are_used(tmp_path):
    run = danlu.train(_recipe("figures_ae", epochs=1), tmp_path / "r", progress="none")
    assert run.summary["test"]["rows"] == pytest.approx(len(danlu.training.prepare_run_data(
        danlu.training.read_run_recipe(run.path)).splits["test"][0]))
    assert (run.path / "plots" / "drawn.txt").read_text() == "test,train,validation"


def test_resume_from_a_middle_checkpoint_is_bit_identical(tmp_path):
    full = danlu.train(_recipe("noisy_ae"), tmp_path / "full", progress="none")
    cut = tmp_path / "cut"
    shutil.copytree(full.path, cut)
    for name in ("summary.json", "model.safetensors", "model.json"):
        (cut / name).unlink()
    for later in ck.list_checkpoints(cut / "checkpoints")[2:]:
        shutil.rmtree(later)
    metrics = (cut / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(metrics[:2]) + "\n")
    resumed = danlu.resume(cut, progress="none")
    a = ck.load_weights(full.path / "model.safetensors")
    b = ck.load_weights(resumed.path / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
