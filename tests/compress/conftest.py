"""Shared fixtures of the compression tests: small runs trained once per session."""
import pytest
from compress_testkit import digits_mlp


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory):
    """A finished float MLP run (64 -> 32 (batch norm) -> 10) on the digits."""
    import danlu

    path = tmp_path_factory.mktemp("compress") / "mlp"
    return danlu.train(digits_mlp(model={"batch_norm": True}), path).path


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory):
    """A finished tiny CNN run (one conv block, a dense head) on the digits."""
    import danlu

    path = tmp_path_factory.mktemp("compress") / "cnn"
    recipe = digits_mlp(epochs=2, data={"shape": [1, 8, 8]},
                        model={"kind": "cnn", "channels": [8], "hidden": [16], "dropout": 0.0})
    return danlu.train(recipe, path).path
