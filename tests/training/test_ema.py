"""train.ema: the moving average of the weights, checked against torch's AveragedModel; validation,
the final figures and model.safetensors use it; training goes on with the raw weights; exact resume."""
import copy
import json
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import danlu
from danlu.errors import RecipeError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck
from danlu.training import load_model
from danlu.training._ema import EMA

DECAY = 0.9


def _spec(tmp_path, ema="absent", **train):
    spec = {"name": "ema", "seed": 5,
            "data": {"source": "sklearn", "name": "iris"},
            "model": {"kind": "mlp", "hidden": [16], "batch_norm": True, "dropout": 0.2},
            "optimizer": {"kind": "adam", "lr": 0.02},
            "train": {"epochs": 3, "batch_size": 16, "accumulate": 2,
                      "early_stopping": {"restore_best": False}, **train},
            "checkpoint": {"every_epochs": 1, "every_steps": 5, "keep_last": 3},
            "output": {"progress": "none", "runs_dir": str(tmp_path)},
            "monitors": {"gradients": {"enabled": False}}}
    if ema != "absent":
        spec["train"]["ema"] = ema
    return spec


class Trajectory:
    """The model's parameters and its saved buffers after every optimizer step."""

    def __init__(self):
        self.params, self.buffers = [], []

    def on_batch_end(self, state):
        if state.stepped and not state.skip_step:
            self.params.append({k: p.detach().clone() for k, p in state.model.named_parameters()})
            params = dict(state.model.named_parameters())
            self.buffers.append({k: b.detach().clone() for k, b in state.model.state_dict().items() if k not in params})


def _weights(run):
    return load_file(str(Path(run) / "model.safetensors"))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run with train.ema and one without, each with the raw weights after every step recorded."""
    tmp = tmp_path_factory.mktemp("ema")
    out = {}
    for label, ema in (("ema", DECAY), ("plain", "absent")):
        trajectory = Trajectory()
        run = danlu.train(_spec(tmp, ema), tmp / label, callbacks=[trajectory])
        out[label] = (Path(run.path), trajectory)
    return out


def test_saved_weights_are_the_average_torch_computes(runs):
    run, trajectory = runs["ema"]
    model = load_model(run)[0]        # the run's network; its weights are overwritten step by step
    averaged = AveragedModel(copy.deepcopy(model), multi_avg_fn=get_ema_multi_avg_fn(DECAY))
    for params in trajectory.params:
        model.load_state_dict(params, strict=False)
        averaged.update_parameters(model)
    saved = _weights(run)
    assert len(trajectory.params) == 12   # 3 epochs of 7 batches (105 rows), a step every 2 and at the end
    for name, p in averaged.module.named_parameters():
        assert torch.allclose(saved[name], p.detach(), rtol=0, atol=1e-6), name
        assert not torch.allclose(saved[name], trajectory.params[-1][name], rtol=0, atol=1e-4), \
            f"{name} is the last step's raw weight, not an average"
    for name, b in trajectory.buffers[-1].items():   # buffers: the live model's (batch norm statistics)
        assert torch.equal(saved[name], b), name


def test_training_goes_on_with_the_raw_weights(runs):
    """The average is only swapped in for validation: every step's raw weights are those of the
    run without it (the swap back is exact), and the run without ema saves its last raw weights."""
    (_, with_ema), (plain, without) = runs["ema"], runs["plain"]
    assert len(with_ema.params) == len(without.params)
    for a, b in zip(with_ema.params, without.params):
        assert _same(a, b)
    assert _same(_weights(plain), {**without.params[-1], **without.buffers[-1]})


def test_validation_and_final_figures_are_the_averages(runs):
    run, _ = runs["ema"]
    summary = json.loads((run / "summary.json").read_text())
    evaluated = danlu.evaluate(run, split="all")
    for split in ("train", "validation", "test"):
        assert evaluated[split] == pytest.approx(summary[split], rel=1e-9, abs=1e-12), split
    # the last epoch's validation figures were measured on the same (averaged) weights
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_loss"] == pytest.approx(summary["validation"]["loss"], rel=1e-9)
    plain = json.loads((runs["plain"][0] / "summary.json").read_text())
    assert summary["validation"]["loss"] != plain["validation"]["loss"]


def test_decay_zero_is_the_run_without_it(runs, tmp_path):
    """decay 0: the average is the latest weights, so every figure and weight is the plain run's."""
    zero = Path(danlu.train(_spec(tmp_path, 0), tmp_path / "zero").path)
    plain = runs["plain"][0]
    assert _same(_weights(zero), _weights(plain))
    assert (zero / "metrics.jsonl").read_text() == (plain / "metrics.jsonl").read_text()


def test_early_stopping_keeps_its_best_average(tmp_path):
    """restore_best puts back the weights of the best epoch, which were the average then: the run
    ends with them, not with the last average."""
    spec = _spec(tmp_path, 0.5, epochs=4, early_stopping={"restore_best": True, "patience": 10})
    spec["optimizer"]["lr"] = 0.3
    run = Path(danlu.train(spec, tmp_path / "best").path)
    summary = json.loads((run / "summary.json").read_text())
    val_loss = [json.loads(line)["val_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert summary["run"]["restored_best_epoch"] == 3 and val_loss[3] != val_loss[2]
    assert summary["validation"]["loss"] == pytest.approx(val_loss[2], rel=1e-9)


def test_default_runs_have_no_average():
    assert not any(isinstance(cb, EMA) for cb in danlu.training.recipe_callbacks(Recipe.from_dict(_spec("."))))
    spec = _spec(".", None)
    assert Recipe.from_dict(spec).train.ema is None
    assert not any(isinstance(cb, EMA) for cb in danlu.training.recipe_callbacks(Recipe.from_dict(spec)))


def test_kill_in_a_checkpoint_write_then_resume_is_bit_identical(runs, run_cli, tmp_path):
    ref, _ = runs["ema"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_spec(tmp_path, DECAY)))
    run = tmp_path / "killed"
    # checkpoints at step 4 (end of epoch 1), 5 (mid-epoch 2), 8 (end of epoch 2), ...: die in the
    # 3rd write, so that the newest finished one is mid-epoch, written from a batch_end hook
    proc = run_cli("train", recipe, "--run-dir", run, env={"DANLU_KILL_AT": "before_rename:3"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    names = [p.name for p in ck.list_checkpoints(run / "checkpoints")]
    assert names[-1] == "step-00000005"
    _, state = ck.read_checkpoint(run / "checkpoints" / names[-1])
    assert state["position"]["batch"] > 0, "the newest checkpoint should be mid-epoch"
    assert state["callbacks"]["ema"]["updates"] == 5    # the average holds the step of the batch it was written in
    danlu.resume(run, progress="none")
    assert (run / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()


def test_the_callback_keeps_the_callback_contract(tmp_path):
    facts = danlu.training.check_callback(EMA(0.5), workdir=tmp_path)
    assert facts["stateful"] and {"on_validation_start", "on_fit_end"} <= set(facts["hooks"])


@pytest.mark.parametrize("value, message", [(1, "train.ema must be < 1, got 1"),
                                            (-0.1, "train.ema must be >= 0, got -0.1"),
                                            ("fast", "train.ema must be")])
def test_bad_decay_is_one_line(value, message):
    with pytest.raises(RecipeError) as err:
        Recipe.from_dict(_spec(".", value))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_decay_from_the_command_line(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_spec(tmp_path)))
    proc = run_cli("train", recipe, "--set", "train.ema=1")
    assert proc.returncode == 2
    assert "train.ema must be < 1, got 1" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
