import pytest


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than
    two threads spin-waiting for a busy core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cli(run_cli):
    """`python -m danlu ...` in a fresh process with one OpenMP thread (see above)."""
    return lambda *args: run_cli(*args, env={"OMP_NUM_THREADS": "1"})
