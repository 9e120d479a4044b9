"""Exact resume: a run killed at any point and resumed ends bit-identical to a run never stopped."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import danlu
from danlu.errors import CheckpointError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck

ROOT = Path(__file__).resolve().parents[2]

# Dropout, augmentation, batch norm and a non-trivial schedule: every source of randomness and
# every piece of state that a resume must restore is in play. 1274 training rows / 64 = 20 batches.
RECIPE = """
seed: 3
data: {source: sklearn, name: digits, augment: {shift: 1, noise: 0.05}}
model: {kind: cnn, channels: [8, 16], hidden: [32], dropout: 0.3}
optimizer: {kind: adamw, lr: 0.003, weight_decay: 0.01}
schedule: {kind: cosine, warmup_steps: 10}
train: {epochs: 3, batch_size: 64, accumulate: 2, early_stopping: {patience: 1, monitor: val_accuracy}}
checkpoint: {every_epochs: 1, every_steps: 7, keep_last: 3}
output: {progress: lines}
"""


def _write_recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def _train_cli(recipe, run_dir, env=None):
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "danlu", "train", str(recipe), "--run-dir", str(run_dir)],
                          capture_output=True, text=True, env=full, cwd=ROOT, timeout=300)


def _resume_cli(run_dir, *extra):
    return subprocess.run([sys.executable, "-m", "danlu", "resume", str(run_dir), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def _assert_same_run(a: Path, b: Path):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"weights differ at {k}"
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert sa["test"] == sb["test"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    recipe = _write_recipe(tmp)
    proc = _train_cli(recipe, tmp / "run")
    assert proc.returncode == 0, proc.stderr
    return recipe, tmp / "run"


def test_kill_during_checkpoint_write_then_resume_is_bit_identical_and_a_tampered_one_is_refused(
        reference, tmp_path):
    import shutil

    recipe, ref = reference
    run = tmp_path / "killed"
    # die in the 4th checkpoint write, after its files are written but before the rename: the
    # newest finished checkpoint is then the mid-epoch one at step 14 (epoch 2, batch 8)
    proc = _train_cli(recipe, run, env={"DANLU_KILL_AT": "before_rename:4"})
    assert proc.returncode == -signal.SIGKILL
    names = [p.name for p in ck.list_checkpoints(run / "checkpoints")]
    assert names[-1] == "step-00000014"
    _, state = ck.read_checkpoint(run / "checkpoints" / names[-1])
    assert state["position"]["batch"] > 0, "the newest checkpoint should be mid-epoch"
    assert list((run / "checkpoints").glob(".tmp-*")), "the interrupted write leaves only a temporary folder"
    assert not (run / "summary.json").exists()
    tampered = tmp_path / "tampered"   # the same killed run, its newest checkpoint's weights altered
    shutil.copytree(run, tampered)
    res = _resume_cli(run)
    assert res.returncode == 0, res.stderr
    _assert_same_run(ref, run)

    newest = ck.list_checkpoints(tampered / "checkpoints")[-1]
    blob = bytearray((newest / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (newest / "model.safetensors").write_bytes(bytes(blob))
    res = _resume_cli(tampered)
    assert res.returncode == 2
    assert "does not match its checksum" in res.stderr and "--checkpoint" in res.stderr
    assert "Traceback" not in res.stderr
    older = ck.list_checkpoints(tampered / "checkpoints")[-2].name
    res = _resume_cli(tampered, "--checkpoint", older)
    assert res.returncode == 0, res.stderr
    _assert_same_run(ref, tampered)


def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(reference, tmp_path):
    recipe, ref = reference
    run = tmp_path / "sigkill"
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "train", str(recipe), "--run-dir", str(run)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(ck.list_checkpoints(run / "checkpoints")) >= 2:
            break
        time.sleep(0.02)
    time.sleep(0.15)  # somewhere in the middle of an epoch, between checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    res = _resume_cli(run)
    assert res.returncode == 0, res.stderr
    _assert_same_run(ref, run)


def test_in_process_resume_matches_and_finished_run_is_left_alone(tmp_path):
    recipe = Recipe.from_yaml(_write_recipe(tmp_path), ["train.epochs=2", "checkpoint.every_steps=0"])
    a = danlu.train(recipe, tmp_path / "a", progress="none")
    before = (a.path / "model.safetensors").read_bytes()
    again = danlu.resume(a.path, progress="none")
    assert again.summary == a.summary
    assert (a.path / "model.safetensors").read_bytes() == before
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        danlu.resume(a.path, "step-99999999", progress="none")
