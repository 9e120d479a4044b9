"""One tiny finished run shared by the test_inputs_* files (trained once per session)."""
_RUNS: dict = {}


def tiny_iris_run(tmp_path_factory):
    """An MLP trained one epoch on scikit-learn's iris, with a checkpoint folder."""
    if "iris" not in _RUNS:
        import danlu

        recipe = {"name": "iris", "seed": 0, "data": {"source": "sklearn", "name": "iris"},
                  "model": {"kind": "mlp", "hidden": [4]}, "train": {"epochs": 1, "batch_size": 64},
                  "output": {"progress": "none"}, "monitors": {"gradients": {"enabled": False}}}
        _RUNS["iris"] = danlu.train(recipe, tmp_path_factory.mktemp("inputs") / "iris").path
    return _RUNS["iris"]
