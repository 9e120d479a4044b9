"""Quantization-aware training: fake quantization with a straight-through estimator."""
import json

import pytest
import torch
from compress_testkit import digits_mlp
from torch import nn

import danlu
from danlu import training as runs
from danlu.compress import (FakeQuant, QATSchedule, QuantSpec, export_qat, prepare_qat, quantizable_layers,
                            quantize_model, quantize_run, strip_qat)
from danlu.errors import RecipeError
from danlu.recipe import Recipe
from danlu.training import model_outputs

SPEC = {"bits": 4, "scheme": "sym", "granularity": "tensor", "method": "log"}


def _accuracy_all_rows(model, recipe, run_dir):
    splits = runs.prepare_run_data(recipe, run_dir).splits
    X = torch.cat([splits[k][0] for k in splits])
    y = torch.cat([splits[k][1] for k in splits])
    return float((model_outputs(model, X).argmax(1) == y).float().mean())


def test_fake_quant_forward_is_quantized_and_gradient_is_straight_through():
    w = torch.randn(6, 10, requires_grad=True)
    fq = FakeQuant(QuantSpec(2, "sym", "channel"))
    out = fq(w)
    assert len(torch.unique(out.detach()[0])) <= 3                 # ternary levels per channel
    upstream = torch.randn(6, 10)
    (out * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)                           # d out / d w = identity


def test_prepare_qat_is_deterministic_and_keeps_the_tree():
    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Conv1d(1, 2, 3), nn.Linear(4, 2))

    a = prepare_qat(build(), {"bits": 4, "granularity": "group", "group_size": 4}, None)
    b = prepare_qat(build(), {"bits": 4, "granularity": "group", "group_size": 4}, None)
    assert list(a.state_dict()) == list(b.state_dict())
    assert "0.parametrizations.weight.original" in a.state_dict()
    assert isinstance(a[0], nn.Linear)                             # same modules, only the weight is wrapped
    b.load_state_dict(a.state_dict())
    strip_qat(a)
    assert "0.weight" in a.state_dict() and not any(isinstance(m, FakeQuant) for m in a.modules())


def test_qat_loses_less_accuracy_than_post_training_quantization(tmp_path):
    recipe = Recipe.from_dict(digits_mlp(epochs=10))
    float_run = danlu.train(recipe, tmp_path / "float").path
    qat_recipe = Recipe.from_dict(digits_mlp(epochs=10, quant={"enabled": True, **SPEC}))
    qat_run = danlu.train(qat_recipe, tmp_path / "qat").path

    float_model = runs.load_model(float_run)[0]
    float_acc = _accuracy_all_rows(float_model, recipe, float_run)
    spec = QuantSpec(**SPEC)
    ptq = quantize_model(float_model, {name: spec for name in quantizable_layers(float_model)})
    ptq_loss = float_acc - _accuracy_all_rows(ptq, recipe, float_run)

    exported = quantize_run(qat_run, out=tmp_path / "qat-q", progress=False, latency_rounds=1)
    from danlu.compress import load_quantized

    qat_loss = float_acc - _accuracy_all_rows(load_quantized(exported.path), qat_recipe, qat_run)
    assert ptq_loss > 0.003                      # 4-bit per-tensor log levels do hurt the float model ...
    assert qat_loss < ptq_loss - 0.003           # ... and training through them recovers most of it


def test_qat_run_loads_and_exports_what_it_validated(tmp_path):
    recipe = Recipe.from_dict(digits_mlp(epochs=2, quant={"enabled": True, "bits": 4, "granularity": "group",
                                                          "group_size": 16, "scheme": "asym"}))
    run = danlu.train(recipe, tmp_path / "qat")
    model = runs.load_model(run.path)[0]
    assert any(isinstance(m, FakeQuant) for m in model.modules())
    result = export_qat(run.path, progress=False, latency_rounds=1)
    assert result.path == run.path / "quantized-qat"
    assert result.report["qat"] is True
    assert result.plan[0]["bits"] == 4
    # the run's own test accuracy was measured with fake quantization: the real thing agrees
    assert result.report["quantized"]["metric"] == pytest.approx(run.summary["test"]["accuracy"])
    again = export_qat(run.path, progress=False, latency_rounds=1)            # replaces the earlier export
    assert again.path == result.path


def test_export_qat_skips_float_runs(mlp_run):
    assert export_qat(mlp_run, progress=False) is None


class _Watch:
    def __init__(self):
        self.seen = {}

    def on_batch_end(self, state):
        self.seen[state.epoch] = [m.enabled for m in state.model.modules() if isinstance(m, FakeQuant)]


def test_start_epoch_trains_float_first(tmp_path):
    recipe = Recipe.from_dict(digits_mlp(epochs=3, quant={"enabled": True, "bits": 4, "start_epoch": 2}))
    watch = _Watch()
    run = danlu.train(recipe, tmp_path / "late", callbacks=[QATSchedule(2), watch])
    assert watch.seen[0] == [False, False] and watch.seen[1] == [False, False] and watch.seen[2] == [True, True]
    lines = (run.path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    kinds = [json.loads(line)["kind"] for line in lines if line.strip()]
    assert "qat_start" in kinds


def test_quant_section_is_validated():
    assert Recipe.from_dict({"data": {"name": "iris"}}).quant.enabled is False
    with pytest.raises(RecipeError, match="quant.bits must be one of 8, 4, 2"):
        Recipe.from_dict({"data": {"name": "iris"}, "quant": {"bits": 3}})
    with pytest.raises(RecipeError, match="did you mean 'granularity'"):
        Recipe.from_dict({"data": {"name": "iris"}, "quant": {"granularty": "group"}})
