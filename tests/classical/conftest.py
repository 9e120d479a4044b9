import pytest

import danlu.classical  # noqa: F401  (registers the classical kinds until danlu.models does it itself)
from danlu.recipe import Recipe


@pytest.fixture
def classical_recipe():
    """A recipe dict -> Recipe for a classical kind on a scikit-learn data set, quiet."""

    def make(kind: str, data: str = "iris", **model):
        return Recipe.from_dict({"seed": 0, "data": {"source": "sklearn", "name": data},
                                 "model": {"kind": kind, **model}, "output": {"progress": "none"}})

    return make


@pytest.fixture(autouse=True)
def one_thread():
    """Oracle estimators fitted in the tests use one thread too: OpenMP threads spin-waiting for a
    busy core make gradient boosting many times slower on a loaded machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield
