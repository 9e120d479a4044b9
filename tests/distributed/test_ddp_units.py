"""The pieces of danlu.distributed that need no process group: sharding, weights, the launcher."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from danlu.distributed import check_batch_size, torchrun_command
from danlu.distributed._ddp import Distributed
from danlu.errors import RecipeError
from danlu.recipe import Recipe

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("n_rows, world", [(64, 2), (41, 2), (10, 3), (7, 4)])
def test_shards_partition_the_batch_and_weights_recover_its_mean(n_rows, world):
    idx = torch.randperm(100)[:n_rows]
    values = torch.randn(100, dtype=torch.float64)
    parts, weighted = [], 0.0
    for rank in range(world):
        part, share = Distributed(rank, world, rank, torch.device("cpu")).shard(idx)
        parts.append(part)
        weighted += float(values[part].mean()) * share   # what each rank feeds DDP
    assert torch.equal(torch.cat(parts), idx)            # disjoint, in order, nothing left out
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # DDP averages over the ranks: the result is the whole batch's mean, as in one process
    assert weighted / world == pytest.approx(float(values[idx].mean()), abs=1e-12)


def test_even_batch_has_weight_exactly_one():
    _part, share = Distributed(1, 4, 1, torch.device("cpu")).shard(torch.arange(64))
    assert share == 1.0


def test_global_batch_must_divide_by_processes():
    recipe = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp"},
                               "train": {"batch_size": 64}})
    check_batch_size(recipe, 2)
    check_batch_size(recipe, 1)
    with pytest.raises(RecipeError, match=r"train.batch_size 64 .* divisible by the 3 processes; use 63 or 66"):
        check_batch_size(recipe, 3)


def test_torchrun_command_runs_danlu_as_a_module():
    cmd = torchrun_command(4, ["train", "r.yaml", "--set", "seed=1"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4", "-m", "danlu",
                       "train", "r.yaml", "--set", "seed=1"]


def test_nproc_with_indivisible_batch_is_one_line_before_any_launch(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {source: sklearn, name: iris}\nmodel: {kind: mlp}\ntrain: {batch_size: 10}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    got = subprocess.run([sys.executable, "-m", "danlu", "train", str(recipe), "--nproc", "3",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=120)
    assert got.returncode == 2
    assert got.stderr.strip().count("\n") == 0
    assert "divisible by the 3 processes" in got.stderr
    assert not (tmp_path / "run").exists()
