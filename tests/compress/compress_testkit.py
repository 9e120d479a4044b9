"""Helpers of the compression tests (imported by conftest.py and the test files)."""


def digits_mlp(hidden=(32,), epochs=4, **extra) -> dict:
    recipe = {"name": "mlp", "seed": 0, "data": {"source": "sklearn", "name": "digits", "shape": [64]},
              "model": {"kind": "mlp", "hidden": list(hidden)}, "optimizer": {"kind": "adam", "lr": 0.01},
              "schedule": {"kind": "cosine"},
              "train": {"epochs": epochs, "batch_size": 64, "early_stopping": {"enabled": False}},
              "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"},
              "monitors": {"gradients": {"enabled": False}}}
    for key, value in extra.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe
