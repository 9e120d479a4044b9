"""Fixtures for the diagnose tests (helpers live in diagnose_testkit, a uniquely named module)."""
import pytest
import torch

from diagnose_testkit import POISONED, build_poisoned


@pytest.fixture(scope="session", autouse=True)
def poisoned_kind():
    """Register the poisonable model kind for the session (any keys, unchecked)."""
    from danlu.models import register_model, unregister_model

    register_model(POISONED, build_poisoned, params=None, replace=True)
    yield POISONED
    unregister_model(POISONED)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models here are tiny: a second intra-op thread only adds contention (5x slower on a
    busy 2-core machine). Per module, so that module-scoped runs use it too (a resume is only
    bit-identical under the same thread count); restored afterwards for the other folders."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
