"""train.precision (autocast, the fp16 gradient scaler) and train.compile (torch.compile, eager fallback):
against hand-written torch.autocast, float32 runs unchanged, exact resume, the same saved keys."""
import copy
import functools
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import danlu
from danlu.errors import RecipeError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck
from danlu.training._loop import batch_slice, epoch_permutation
from danlu.training._precision import CompiledForward, FullPrecision, MixedPrecision

CUDA = torch.cuda.is_available()


def _digits(tmp, **train):
    return {"name": "digits", "seed": 0, "data": {"source": "sklearn", "name": "digits"},
            "model": {"kind": "mlp", "hidden": [64]},
            "train": {"epochs": 2, "batch_size": 32, **train},
            "output": {"progress": "none", "runs_dir": str(tmp)}}


def _iris(tmp, device="cpu", **train):
    return {"name": "iris", "seed": 5, "device": device, "data": {"source": "sklearn", "name": "iris"},
            "model": {"kind": "mlp", "hidden": [16], "batch_norm": True, "dropout": 0.2},
            "optimizer": {"kind": "adam", "lr": 0.02},
            "train": {"epochs": 3, "batch_size": 16, "accumulate": 2, "grad_clip": 1.0,
                      "early_stopping": {"restore_best": False}, **train},
            "checkpoint": {"every_epochs": 1, "every_steps": 5, "keep_last": 3},
            "output": {"progress": "none", "runs_dir": str(tmp)}}


class FirstBatch:
    """The model as it was before the first step, and the first batch's recorded loss."""

    def on_fit_start(self, state):
        self.model = copy.deepcopy(state.model)
        self.X, self.y = state.splits["train"]
        n, bs = len(self.X), state.recipe.train.batch_size
        self.idx = epoch_permutation(state.recipe.seed, 0, n, self.X.device)[
            batch_slice(0, state.batches_per_epoch, bs, n)]

    def on_batch_end(self, state):
        if not hasattr(self, "loss"):
            self.loss = state.batch_loss.detach().clone()


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("precision")
    out = {}
    for label, train in (("fp32", {}), ("bf16", {"precision": "bf16-mixed"})):
        first = FirstBatch()
        run = danlu.train(_digits(tmp, **train), tmp / label, callbacks=[first])
        out[label] = (Path(run.path), first)
    return out


def _summary(run):
    return json.loads((Path(run) / "summary.json").read_text())


def test_bf16_on_cpu_learns_as_well_as_float32(digits_runs):
    fp32, bf16 = _summary(digits_runs["fp32"][0]), _summary(digits_runs["bf16"][0])
    # measured: 0.893 for both (digits, 2 epochs); bfloat16 rounding may move a few test rows
    assert bf16["test"]["accuracy"] > 0.8
    assert abs(bf16["test"]["accuracy"] - fp32["test"]["accuracy"]) <= 0.03
    # the weights are trained and saved in float32
    assert {t.dtype for t in load_file(str(digits_runs["bf16"][0] / "model.safetensors")).values()} == {torch.float32}


def test_the_loss_of_a_batch_is_torch_autocast_of_the_same_model(digits_runs):
    _, first = digits_runs["bf16"]
    X, y, idx = first.X, first.y, first.idx
    model = first.model.train()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        # danlu's cross entropy is the mean of the per-row losses
        expected = F.cross_entropy(model(X[idx]), y[idx], reduction="none").mean()
    assert expected.dtype == torch.float32   # autocast computes cross entropy in float32
    assert torch.equal(first.loss, expected)
    plain = F.cross_entropy(model(X[idx]), y[idx], reduction="none").mean()
    assert not torch.equal(first.loss, plain), "the batch should have run in bfloat16"


def test_precision_32_is_the_run_without_the_key(digits_runs, tmp_path):
    run = danlu.train(_digits(tmp_path, precision=32), tmp_path / "p32")
    ref = digits_runs["fp32"][0]
    assert (Path(run.path) / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert (Path(run.path) / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()


def test_evaluate_uses_the_runs_autocast(digits_runs):
    run = digits_runs["bf16"][0]
    assert danlu.evaluate(run, "test")["test"] == _summary(run)["test"]


def test_kill_in_a_checkpoint_write_then_resume_under_bf16_is_bit_identical(run_cli, tmp_path):
    ref = Path(danlu.train(_iris(tmp_path, precision="bf16-mixed"), tmp_path / "ref").path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_iris(tmp_path, precision="bf16-mixed")))
    run = tmp_path / "killed"
    # checkpoints at step 4 (end of epoch 1), 5 (mid-epoch 2), ...: die in the 3rd write
    proc = run_cli("train", recipe, "--run-dir", run, env={"DANLU_KILL_AT": "before_rename:3"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    names = [p.name for p in ck.list_checkpoints(run / "checkpoints")]
    _, state = ck.read_checkpoint(run / "checkpoints" / names[-1])
    assert state["position"]["batch"] > 0, "the newest checkpoint should be mid-epoch"
    assert "precision" not in state   # bfloat16 has no scaler: nothing to save
    danlu.resume(run, progress="none")
    assert (run / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
def test_fp16_without_cuda_is_refused_in_one_line(tmp_path):
    with pytest.raises(RecipeError, match=r"16-mixed needs CUDA .*use bf16-mixed on CPU") as err:
        danlu.train(_iris(tmp_path, precision="16-mixed"), tmp_path / "fp16")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", ["fp16", 16, "bf16", 32.5, None])
def test_bad_precision_is_one_line(value):
    spec = _iris(".", precision=value)
    with pytest.raises(RecipeError, match=r"train\.precision must be") as err:
        Recipe.from_dict(spec)
    assert "\n" not in str(err.value)


def test_precision_from_yaml_and_the_command_line(run_cli, tmp_path):
    assert Recipe.from_dict(_iris(".", precision="32")).train.precision == 32
    proc = run_cli("train", "recipes/digits_mlp.yaml", "--set", "train.precision=fp8", "--run-dir", tmp_path / "x")
    assert proc.returncode == 2 and "train.precision must be 32 or bf16-mixed or 16-mixed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_default_precision_adds_no_context():
    import contextlib

    assert isinstance(FullPrecision().autocast(), contextlib.nullcontext)
    assert FullPrecision().state_dict() == {}


# --- train.compile -------------------------------------------------------------------------------

def test_compile_trains_and_saves_the_same_keys(tmp_path, monkeypatch):
    # the default backend (inductor) builds C++ for about a minute on a small CPU; dynamo's eager
    # backend goes through the same OptimizedModule wrapper in seconds
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    plain = Path(danlu.train(_iris(tmp_path, epochs=1), tmp_path / "plain").path)
    seen = []
    compiled = Path(danlu.train(_iris(tmp_path, epochs=1, compile=True), tmp_path / "compiled",
                                callbacks=[danlu.training.on("fit_start", lambda s: seen.append(s.net))]).path)
    assert isinstance(seen[0], CompiledForward) and seen[0].compiled is not None
    keys = load_file(str(plain / "model.safetensors")).keys()
    assert load_file(str(compiled / "model.safetensors")).keys() == keys
    weights, _ = ck.read_checkpoint(ck.list_checkpoints(compiled / "checkpoints")[-1])
    assert weights.keys() == keys   # no "_orig_mod." prefix anywhere
    assert _summary(compiled)["test"]["accuracy"] > 0.5


@pytest.mark.parametrize("where", ["compile", "first_call"])
def test_compile_failure_falls_back_to_eager_with_one_warning(tmp_path, monkeypatch, capfd, where):
    def broken_compile(model, **kw):
        if where == "compile":
            raise RuntimeError("no C++ compiler found\nmore detail")

        def call(*a, **k):
            raise RuntimeError("backend compiler failed")
        return call

    plain = Path(danlu.train(_iris(tmp_path, epochs=1), tmp_path / "plain").path)
    capfd.readouterr()
    monkeypatch.setattr(torch, "compile", broken_compile)
    run = Path(danlu.train(_iris(tmp_path, epochs=1, compile=True), tmp_path / "fallback").path)
    lines = [ln for ln in capfd.readouterr().err.splitlines() if "train.compile" in ln]
    assert len(lines) == 1 and lines[0].startswith("danlu: warning: train.compile: ")
    assert lines[0].endswith("falling back to eager")
    # eager from the first batch on: the very run without compile
    assert (run / "model.safetensors").read_bytes() == (plain / "model.safetensors").read_bytes()


def test_eager_errors_are_not_hidden_by_the_fallback():
    model = torch.nn.Linear(3, 2)

    with pytest.raises(RuntimeError):
        CompiledForward(model)(torch.zeros(4, 5))   # a real shape error surfaces after the fallback


@pytest.mark.skipif(not os.environ.get("DANLU_SLOW_TESTS"),
                    reason="inductor compiles C++ for ~70 s on a 2-core CPU; set DANLU_SLOW_TESTS=1")
@pytest.mark.slow
def test_compile_with_inductor(tmp_path):
    run = Path(danlu.train(_iris(tmp_path, epochs=1, compile=True), tmp_path / "inductor").path)
    assert _summary(run)["test"]["accuracy"] > 0.5


# --- CUDA ----------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_fp16_on_cuda_saves_the_scaler_and_resumes_exactly(run_cli, tmp_path):
    ref = Path(danlu.train(_iris(tmp_path, "cuda", precision="16-mixed"), tmp_path / "ref").path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_iris(tmp_path, "cuda", precision="16-mixed")))
    run = tmp_path / "killed"
    proc = run_cli("train", recipe, "--run-dir", run, env={"DANLU_KILL_AT": "before_rename:3"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    _, state = ck.read_checkpoint(ck.list_checkpoints(run / "checkpoints")[-1])
    scaler = state["precision"]["scaler"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    danlu.resume(run, progress="none")
    assert (run / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert (run / "metrics.jsonl").read_text() == (ref / "metrics.jsonl").read_text()
    weights = load_file(str(run / "model.safetensors"))
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_bf16_on_cuda_matches_torch_autocast(tmp_path):
    first = FirstBatch()
    run = Path(danlu.train(_digits(tmp_path, precision="bf16-mixed") | {"device": "cuda"}, tmp_path / "cuda",
                           callbacks=[first]).path)
    X, y, idx = first.X, first.y, first.idx
    assert X.is_cuda
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        expected = F.cross_entropy(first.model.train()(X[idx]), y[idx], reduction="none").mean()
    assert torch.equal(first.loss, expected)
    assert _summary(run)["test"]["accuracy"] > 0.8


class CpuScaler:
    """Puts a gradient scaler into a bf16-mixed run on the CPU (16-mixed's machinery, testable without
    CUDA): with a power-of-two scale, scaling and unscaling are exact, so the run must equal the run
    without it — which holds only if gradients are unscaled before clipping and the step."""

    def __init__(self, skip_at=None):
        self.skip_at, self.scales = skip_at, []

    def on_fit_start(self, state):
        state.precision = MixedPrecision("16-mixed", "cpu", torch.bfloat16,
                                         torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3))

    def on_backward_end(self, state):
        self.scales.append(state.precision.scaler.get_scale())
        if state.step + 1 == self.skip_at:
            state.skip_step = True


def test_the_scaler_path_of_the_loop_is_exact_and_saved(tmp_path):
    plain = Path(danlu.train(_iris(tmp_path, precision="bf16-mixed"), tmp_path / "plain").path)
    scaler = CpuScaler()
    scaled = Path(danlu.train(_iris(tmp_path, precision="bf16-mixed"), tmp_path / "scaled", callbacks=[scaler]).path)
    assert (scaled / "model.safetensors").read_bytes() == (plain / "model.safetensors").read_bytes()
    assert scaler.scales[0] == 2.0 ** 10 and scaler.scales[-1] > 2.0 ** 10   # it grew every 3 finite steps
    _, state = ck.read_checkpoint(ck.list_checkpoints(scaled / "checkpoints")[-1])
    assert state["precision"]["scaler"]["scale"] == scaler.scales[-1] * 2 ** (len(scaler.scales) % 3 == 0)
    # a step a hook skips leaves the scaler consistent for the next one
    skipper = CpuScaler(skip_at=4)
    danlu.train(_iris(tmp_path, precision="bf16-mixed"), tmp_path / "skipped", callbacks=[skipper])
    assert len(skipper.scales) == len(scaler.scales)
