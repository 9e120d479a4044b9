import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Tiny models on 2 cores train several times faster on one thread than on two, and the tests'
# subprocesses (danlu commands, torchrun workers) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than
    two spin-waiting for a busy core, and a resume is only bit-identical under the same count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def run_cli():
    """Run `python -m danlu ...` in a fresh process; returns CompletedProcess."""
    import subprocess

    def run(*args, env=None, cwd=None, timeout=300):
        full_env = dict(os.environ)
        full_env.pop("DANLU_KILL_AT", None)
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-m", "danlu", *map(str, args)], capture_output=True, text=True,
                              env=full_env, cwd=cwd or ROOT, timeout=timeout)

    return run


@pytest.fixture
def cli(run_cli):
    """`python -m danlu ...` in a fresh process with one OpenMP thread, whatever the caller's setting."""
    return lambda *args: run_cli(*args, env={"OMP_NUM_THREADS": "1"})


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where CUDA is absent (DANLU_TEST_DEVICE=cpu runs their logic
    on a CPU, to check them where no GPU is lent)."""
    if os.environ.get("DANLU_TEST_DEVICE") == "cpu":
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
