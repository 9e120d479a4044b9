"""Fixtures for the diagnose tests (helpers live in diagnose_testkit, a uniquely named module)."""
import pytest

from diagnose_testkit import POISONED, build_poisoned


@pytest.fixture(scope="session", autouse=True)
def poisoned_kind():
    """Register the poisonable model kind for the session (any keys, unchecked)."""
    from danlu.models import register_model, unregister_model

    register_model(POISONED, build_poisoned, params=None, replace=True)
    yield POISONED
    unregister_model(POISONED)
