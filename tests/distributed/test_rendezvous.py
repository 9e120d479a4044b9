"""The README's several-machines command: torchrun's c10d rendezvous, two "nodes" on loopback.

Two torchrun agents are started as two machines would start them (``--nnodes 2 --nproc-per-node 1
--rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID``, HOST being 127.0.0.1 here), each
with its own run folder as a machine's local path. They must meet, train as one job of two
processes, and leave one run directory, the one named by the node whose worker is rank 0. A
single-process run of the same recipe is the oracle: the same global batch, so the same weights
up to the order of floating-point sums (DDP averages the two halves' gradients, one process sums
the whole batch at once), hence a tolerance and not equality.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import danlu
from danlu.recipe import Recipe

ROOT = Path(__file__).resolve().parents[2]

# 1257 training rows / 64: 20 batches, the last of 41 rows split 21 / 20 between the two ranks.
# No dropout, no batch norm: the runs can differ only by the order of sums.
RECIPE = """
seed: 5
data: {source: sklearn, name: digits, split: {validation: 0.2, test: 0.1}}
model: {kind: mlp, hidden: [16]}
optimizer: {kind: sgd, lr: 0.05, momentum: 0.9}
train: {epochs: 2, batch_size: 64, early_stopping: {enabled: false}}
checkpoint: {every_epochs: 1}
output: {progress: lines}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DANLU_KILL_AT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return env


def _node(endpoint: str, recipe: Path, run_dir: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "job1",
           "-m", "danlu", "train", str(recipe), "--run-dir", str(run_dir)]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_nodes_meet_at_the_rendezvous_and_match_one_process(tmp_path):
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with gloo, so no torchrun to test")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    endpoint = f"127.0.0.1:{_free_port()}"
    runs = [tmp_path / "node-a" / "run", tmp_path / "node-b" / "run"]
    nodes = [_node(endpoint, recipe, run) for run in runs]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, text in zip(nodes, outputs):
        assert node.returncode == 0, text

    # rank 0's node printed the summary and wrote its folder; the other node wrote nothing
    written = [run for run in runs if run.exists()]
    assert len(written) == 1, written
    printed = [i for i, text in enumerate(outputs) if "run directory:" in text]
    assert len(printed) == 1 and runs[printed[0]] == written[0]
    assert not runs[1 - printed[0]].parent.exists()
    run = written[0]

    one = tmp_path / "one"
    danlu.train(Recipe.from_yaml(recipe), one, progress="none")
    mine, oracle = load_file(str(run / "model.safetensors")), load_file(str(one / "model.safetensors"))
    assert mine.keys() == oracle.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], oracle[key], atol=1e-5, rtol=0, msg=f"weights differ at {key}")
    summary = json.loads((run / "summary.json").read_text())
    expected = json.loads((one / "summary.json").read_text())
    assert summary["run"]["steps"] == expected["run"]["steps"] == 2 * 20
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    oracle_history = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [h["epoch"] for h in oracle_history] == [1, 2]
    for got, want in zip(history, oracle_history):
        assert got["val_loss"] == pytest.approx(want["val_loss"], abs=1e-5)
        assert got["val_accuracy"] == pytest.approx(want["val_accuracy"], abs=1e-9)
