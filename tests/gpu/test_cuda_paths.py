"""The CUDA paths of issue 15, run whenever a GPU is present (``pytest -m gpu``; skipped otherwise).

``benchmarks/gpu_check.sh`` runs every test marked ``gpu`` (these and the precision, metric, model,
quantization and rescue ones elsewhere) and writes what passed; the README records where it ran.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import danlu
from danlu.data._batches import read_batches
from danlu.data._prepare import prepare

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
#: "cuda"; DANLU_TEST_DEVICE=cpu runs these tests' logic on a CPU (with -m gpu -p no:... and the
#: conftest's skip lifted by the same variable) to check them where no GPU is lent
DEVICE = os.environ.get("DANLU_TEST_DEVICE", "cuda")


def _digits(tmp, data=None, model=None, **train):
    return {"seed": 1, "device": "auto",
            "data": data or {"source": "sklearn", "name": "digits"},
            "model": model or {"kind": "mlp", "hidden": [64]},
            "train": {"epochs": 2, "batch_size": 64, **train},
            "output": {"progress": "none", "runs_dir": str(tmp)}}


def _summary(run) -> dict:
    return json.loads((Path(run.path) / "summary.json").read_text())


def _weights(run) -> dict:
    return load_file(str(Path(run.path) / "model.safetensors"))


def test_device_auto_trains_on_the_gpu(tmp_path):
    data = {"source": "sklearn", "name": "digits", "shape": [1, 8, 8]}
    run = danlu.train(_digits(tmp_path, data, {"kind": "cnn"}), tmp_path / "auto")
    summary = _summary(run)
    assert summary["run"]["device"].startswith(DEVICE)
    assert summary["test"]["accuracy"] > 0.85


def test_compile_on_cuda_trains_as_eager(tmp_path):
    eager = danlu.train(_digits(tmp_path), tmp_path / "eager")
    compiled = danlu.train(_digits(tmp_path, compile=True), tmp_path / "compiled")
    assert compiled.summary["test"]["accuracy"] == pytest.approx(eager.summary["test"]["accuracy"], abs=0.03)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_on_cuda_learns(tmp_path, precision):
    if DEVICE == "cpu" and precision == "16-mixed":
        pytest.skip("16-mixed is CUDA's")
    full = danlu.train(_digits(tmp_path), tmp_path / "32")
    run = danlu.train(_digits(tmp_path, precision=precision), tmp_path / precision)
    assert run.summary["test"]["accuracy"] == pytest.approx(full.summary["test"]["accuracy"], abs=0.05)
    assert {t.dtype for t in _weights(run).values() if t.is_floating_point()} == {torch.float32}


@pytest.fixture
def npy(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 32)).astype(np.float32)
    y = (X[:, :4].sum(axis=1) > 0).astype(np.float32)
    path = tmp_path / "big.npy"
    np.save(path, np.column_stack([X, y]))
    return path


def test_streamed_batches_read_by_workers_arrive_on_the_gpu(npy):
    X, y = prepare({"source": "npy", "path": str(npy), "label": 32, "stream": True}, 0).splits["train"]
    X, y = X.to(DEVICE), y.to(DEVICE)
    batches = [torch.arange(i, i + 100) for i in range(0, 1000, 100)]
    ahead = list(read_batches(X, y, batches, workers=2))
    for (xa, ya), idx in zip(ahead, batches):
        assert xa.device.type == ya.device.type == DEVICE
        assert torch.equal(xa, X[idx]) and torch.equal(ya, y[idx])


def test_streamed_run_with_workers_on_cuda_equals_in_process_reads(npy, tmp_path):
    data = {"source": "npy", "path": str(npy), "label": 32, "stream": True}
    a = danlu.train(_digits(tmp_path, data | {"workers": 0}), tmp_path / "w0")
    b = danlu.train(_digits(tmp_path, data | {"workers": 2}), tmp_path / "w2")
    wa, wb = _weights(a), _weights(b)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0)


def test_ddp_on_one_gpu_under_torchrun(tmp_path):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_digits(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT")}
    one = subprocess.run([sys.executable, "-m", "danlu", "train", str(recipe), "--run-dir", str(tmp_path / "one")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                          "-m", "danlu", "train", str(recipe), "--run-dir", str(tmp_path / "ddp")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr
    wa = load_file(str(tmp_path / "one" / "model.safetensors"))
    wb = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=0)
