"""Small finished runs shared by the serving tests, each trained once per session."""
import csv

import pytest


def recipe(data, model, epochs=2, **extra) -> dict:
    r = {"name": "serve", "seed": 0, "data": data, "model": model, "optimizer": {"kind": "adam", "lr": 0.01},
         "train": {"epochs": epochs, "batch_size": 64, "early_stopping": {"enabled": False}},
         "checkpoint": {"every_epochs": 0}, "output": {"progress": "none"},
         "monitors": {"gradients": {"enabled": False}}}
    r.update(extra)
    return r


def _train(tmp_path_factory, name, r):
    import danlu

    return danlu.train(r, tmp_path_factory.mktemp("serve") / name).path


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory):
    return _train(tmp_path_factory, "iris", recipe({"source": "sklearn", "name": "iris"},
                                                   {"kind": "mlp", "hidden": [16]}, epochs=5))


@pytest.fixture(scope="session")
def diabetes_run(tmp_path_factory):
    return _train(tmp_path_factory, "diabetes", recipe({"source": "sklearn", "name": "diabetes"},
                                                       {"kind": "mlp", "hidden": [8]}))


@pytest.fixture(scope="session")
def digits_cnn_run(tmp_path_factory):
    data = {"source": "sklearn", "name": "digits"}
    model = {"kind": "cnn", "channels": [4], "hidden": [16], "dropout": 0.0, "batch_norm": True}
    return _train(tmp_path_factory, "cnn", recipe(data, model, epochs=1))


@pytest.fixture(scope="session")
def rnn_run(tmp_path_factory):
    data = {"source": "sequence", "name": "trend", "length": 8, "samples": 150}
    return _train(tmp_path_factory, "rnn", recipe(data, {"kind": "rnn", "cell": "lstm", "hidden_size": 8}, epochs=1))


CHURN_HEADER = ["age", "plan", "region", "spend", "churn"]


def churn_rows(n=160):
    """A small table: two text columns (one with gaps) and two numeric ones (one with gaps)."""
    plans, regions = ["basic", "plus", "pro"], ["north", "south", "east", "west"]
    rows = []
    for i in range(n):
        age = "" if i % 17 == 3 else str(20 + (i * 7) % 50)
        plan = plans[i % 3]
        region = "" if i % 13 == 5 else regions[(i * 3) % 4]
        spend = f"{(i * 37) % 100 / 3:.2f}"
        churn = "yes" if (i % 3 == 0) != (i % 5 == 0) else "no"
        rows.append([age, plan, region, spend, churn])
    return rows


@pytest.fixture(scope="session")
def churn_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve_data") / "churn.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CHURN_HEADER)
        w.writerows(churn_rows())
    return path


@pytest.fixture(scope="session")
def churn_run(tmp_path_factory, churn_csv):
    data = {"source": "csv", "path": str(churn_csv), "label": "churn", "categorical": "auto", "impute": "mean"}
    return _train(tmp_path_factory, "churn", recipe(data, {"kind": "mlp", "hidden": [8], "embedding_dim": 3}))
