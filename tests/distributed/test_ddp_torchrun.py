"""Multi-process training under torchrun (2 processes, gloo on loopback, CPU).

One single-process run is the oracle. A 2-process run with the same global batch is killed
(SIGKILL on the whole torchrun process group) once a mid-epoch checkpoint exists; its copy is
resumed in one process, and the original is resumed under torchrun again. Both must end with the
oracle's weights (to float tolerance: the gradient is summed in another order) and its metrics.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import danlu
from danlu.recipe import Recipe

ROOT = Path(__file__).resolve().parents[2]

# 1257 training rows / 64 = 20 batches, the last of 41 rows: the two processes get 21 and 20 rows of
# it, so the share weighting of the loss is exercised. No dropout, no batch norm: the two runs can
# only differ by the order of floating-point sums.
RECIPE = """
seed: 11
data: {source: sklearn, name: digits, split: {validation: 0.2, test: 0.1}}
model: {kind: mlp, hidden: [24]}
optimizer: {kind: sgd, lr: 0.05, momentum: 0.9}
schedule: {kind: cosine, warmup_steps: 5}
train: {epochs: 6, batch_size: 64, early_stopping: {enabled: false}}
checkpoint: {every_epochs: 1, every_steps: 7, keep_last: 2}
output: {progress: lines}
"""


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo")
    env.pop("DANLU_KILL_AT", None)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(*danlu_args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "danlu", *map(str, danlu_args)]


def _checkpoints(run_dir: Path):
    root = run_dir / "checkpoints"
    return sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []


def _assert_close_weights(a: Path, b: Path):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert not any(k.startswith("module.") for k in wa), "the unwrapped model's weights are saved"
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0, msg=f"weights differ at {k}")


def _assert_same_history(a: Path, b: Path):
    ha = [json.loads(line) for line in (a / "metrics.jsonl").read_text().splitlines()]
    hb = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in ha] == [h["epoch"] for h in hb] == list(range(1, 7))
    assert [h["step"] for h in ha] == [h["step"] for h in hb]
    for x, y in zip(ha, hb):
        assert x["val_accuracy"] == pytest.approx(y["val_accuracy"], abs=1e-9)
        assert x["train_loss_running_mean"] == pytest.approx(y["train_loss_running_mean"], abs=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=1e-5)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    recipe_path = tmp / "r.yaml"
    recipe_path.write_text(RECIPE)
    one = tmp / "one"
    danlu.train(Recipe.from_yaml(recipe_path), one, progress="none")

    # Two processes, killed as soon as a checkpoint exists. start_new_session puts torchrun and
    # its workers in one process group, so one SIGKILL takes them all. The run is short, so on a
    # busy machine it could end before this process looks again: DANLU_KILL_AT makes rank 0 (the
    # only writer) SIGKILL itself in the middle of writing its 4th checkpoint if it gets there.
    killed = tmp / "killed"
    proc = subprocess.Popen(_torchrun("train", recipe_path, "--run-dir", killed), cwd=ROOT,
                            env={**_env(), "DANLU_KILL_AT": "before_rename:4"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 240
    while not _checkpoints(killed) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    out = proc.communicate()[0].decode(errors="replace")
    assert _checkpoints(killed), out
    assert not (killed / "summary.json").exists(), "the run finished before it could be killed"

    copy = tmp / "killed_copy"
    shutil.copytree(killed, copy)
    resumed = subprocess.run([sys.executable, "-m", "danlu", "resume", killed, "--nproc", "2"], cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=300)
    return {"one": one, "killed": killed, "copy": copy, "resumed": resumed, "tmp": tmp}


def test_killed_two_process_run_resumed_under_torchrun_matches_one_process(runs):
    res = runs["resumed"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("run directory:") == 1, "only rank 0 prints the summary"
    _assert_close_weights(runs["one"], runs["killed"])
    _assert_same_history(runs["one"], runs["killed"])
    summary = json.loads((runs["killed"] / "summary.json").read_text())
    oracle = json.loads((runs["one"] / "summary.json").read_text())
    assert summary["run"]["steps"] == oracle["run"]["steps"] == 6 * 20
    assert summary["test"]["accuracy"] == pytest.approx(oracle["test"]["accuracy"], abs=1e-9)


def test_two_process_checkpoint_resumes_in_one_process(runs):
    copy = runs["copy"]
    saved = json.loads((_checkpoints(copy)[-1] / "state.json").read_text())
    assert "position" in json.dumps(saved)
    run = danlu.resume(copy, progress="none")
    _assert_close_weights(runs["one"], copy)
    _assert_same_history(runs["one"], copy)
    assert run.summary["run"]["steps"] == 6 * 20
