"""/predict takes the request forms of KServe v1 (`instances`) and MLflow's scoring server (`inputs`,
`dataframe_split`, `dataframe_records`) and answers them in their shape: {"predictions": [value, ...]}
— the same values as danlu's own `rows` form and as danlu.predict."""
import csv

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import danlu  # noqa: E402
from danlu.serve import Predictor, create_app  # noqa: E402

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.9, 3.0, 5.1, 1.8]]


def _train(root, name, data):
    return danlu.train({"seed": 0, "data": data, "model": {"kind": "mlp", "hidden": [8]},
                        "train": {"epochs": 3, "batch_size": 32}, "checkpoint": {"every_epochs": 0},
                        "monitors": {"gradients": {"enabled": False}}, "output": {"progress": "none"}},
                       root / name).path


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    root = tmp_path_factory.mktemp("instances")
    run = _train(root, "iris", {"source": "sklearn", "name": "iris"})
    predictor = Predictor(run, device="cpu")
    columns = predictor.describe()["features"]
    path = root / "rows.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([columns, *ROWS])
    expected = [r["prediction"] for r in danlu.predict(run, path)]   # the oracle: danlu predict on a CSV
    return TestClient(create_app(predictor, max_batch=8)), columns, expected


def _forms(columns):
    records = [dict(zip(columns, r)) for r in ROWS]
    return {
        "instances (lists)": {"instances": ROWS},
        "instances (objects)": {"instances": records},
        "inputs (lists)": {"inputs": ROWS},
        "inputs (columns)": {"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(columns)}},
        "dataframe_split": {"dataframe_split": {"columns": columns, "data": ROWS, "index": [0, 1, 2, 3]}},
        "dataframe_split without columns": {"dataframe_split": {"data": ROWS}},
        "dataframe_records": {"dataframe_records": records},
    }


def test_every_form_answers_plain_predictions_equal_to_danlu_predict(iris):
    client, columns, expected = iris
    for name, body in _forms(columns).items():
        got = client.post("/predict", json=body)
        assert got.status_code == 200, (name, got.text)
        assert got.json() == {"predictions": expected}, name
    own = client.post("/predict", json={"rows": ROWS}).json()["predictions"]   # danlu's form keeps its shape
    assert [p["prediction"] for p in own] == expected and "probabilities" in own[0]


def test_regression_instances_are_the_rows_form_values(tmp_path):
    run = _train(tmp_path, "diabetes", {"source": "sklearn", "name": "diabetes"})
    client = TestClient(create_app(Predictor(run, device="cpu")))
    rows = [[0.01 * i] * 10 for i in range(3)]
    plain = client.post("/predict", json={"instances": rows}).json()["predictions"]
    own = client.post("/predict", json={"rows": rows}).json()["predictions"]
    assert plain == [p["prediction"] for p in own] and all(isinstance(v, float) for v in plain)


@pytest.mark.parametrize("body, status, says", [
    ({"instances": ROWS, "rows": ROWS}, 422, "send exactly one of"),
    ({"instances": []}, 422, "'instances' holds no rows"),
    ({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2, 3]]}}, 422, "dataframe_split.data[0] has 3 values"),
    ({"inputs": {"a": [1, 2], "b": [1]}}, 422, "every column must hold the same number"),
    ({"instances": ROWS * 3}, 413, "12 rows in one request; at most 8"),
    ({"instance": ROWS}, 422, "unknown field 'instance'"),
])
def test_bad_forms_get_one_line(iris, body, status, says):
    client, _, _ = iris
    got = client.post("/predict", json=body)
    assert got.status_code == status, got.text
    message = got.json()["error"]
    assert says in message and "\n" not in message
