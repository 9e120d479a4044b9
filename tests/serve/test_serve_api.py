"""The HTTP API through FastAPI's TestClient: answers equal danlu.predict; bad requests get 4xx."""
import json

import numpy as np
import pytest
from serve_testkit import assert_same, predict_rows

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from danlu.serve import Predictor, create_app  # noqa: E402

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.9, 3.0, 5.1, 1.8]]


@pytest.fixture(scope="module")
def iris(iris_run):
    predictor = Predictor(iris_run, device="cpu")
    return predictor, TestClient(create_app(predictor, max_batch=8, max_body=20_000))


@pytest.fixture(scope="module")
def churn(churn_run):
    predictor = Predictor(churn_run, device="cpu")
    return predictor, TestClient(create_app(predictor))


def test_one_row_and_batch_equal_danlu_predict(iris, iris_run, tmp_path):
    predictor, client = iris
    columns = predictor.describe()["features"]
    expected = predict_rows(iris_run, tmp_path, columns, IRIS_ROWS)
    one = client.post("/predict", json={"row": IRIS_ROWS[1]})
    assert one.status_code == 200, one.text
    assert_same(one.json()["predictions"], expected[1:2], predictor.pipeline.info.classes)
    batch = client.post("/predict", json={"rows": IRIS_ROWS})
    assert batch.status_code == 200
    assert_same(batch.json()["predictions"], expected, predictor.pipeline.info.classes)
    # a {column: value} object is the same row
    named = client.post("/predict", json={"row": dict(zip(columns, IRIS_ROWS[2]))})
    assert_same(named.json()["predictions"], expected[2:3], predictor.pipeline.info.classes)
    probs = batch.json()["predictions"][0]["probabilities"]
    assert abs(sum(probs.values()) - 1) < 1e-5


def test_categorical_and_missing_cells_equal_danlu_predict(churn, churn_run, tmp_path):
    predictor, client = churn
    columns = ["age", "plan", "region", "spend"]
    rows = [[30, "basic", "north", 12.5], [None, "pro", None, 3.0], [41, "never-seen", "east", None],
            [55, "plus", "west", 30]]
    expected = predict_rows(churn_run, tmp_path, columns, rows)
    got = client.post("/predict", json={"rows": [dict(zip(columns, r)) for r in rows]})
    assert got.status_code == 200, got.text
    assert_same(got.json()["predictions"], expected, predictor.pipeline.info.classes)
    info = client.get("/info").json()
    assert info["categorical"]["plan"] == ["basic", "plus", "pro"]


def test_regression_values_equal_danlu_predict(diabetes_run, tmp_path):
    predictor = Predictor(diabetes_run, device="cpu")
    client = TestClient(create_app(predictor))
    rng = np.random.default_rng(0)
    rows = rng.normal(0, 0.05, (5, 10)).round(4).tolist()
    expected = predict_rows(diabetes_run, tmp_path, predictor.describe()["features"], rows)
    got = client.post("/predict", json={"rows": rows})
    assert got.status_code == 200
    assert_same(got.json()["predictions"], expected, tol=1e-5)
    assert "probabilities" not in got.json()["predictions"][0]


def test_image_rows_flat_or_shaped(digits_cnn_run, tmp_path):
    from sklearn.datasets import load_digits

    predictor = Predictor(digits_cnn_run, device="cpu")
    client = TestClient(create_app(predictor))
    X = load_digits().data[:6]
    expected = predict_rows(digits_cnn_run, tmp_path, predictor.describe()["features"], X.tolist())
    flat = client.post("/predict", json={"rows": X.tolist()})
    shaped = client.post("/predict", json={"rows": X.reshape(6, 1, 8, 8).tolist()})
    assert flat.status_code == shaped.status_code == 200
    assert_same(flat.json()["predictions"], expected, predictor.pipeline.info.classes)
    assert flat.json() == shaped.json()


def test_info_health_and_openapi(iris):
    predictor, client = iris
    info = client.get("/info").json()
    assert info["task"] == "classification" and info["classes"] == ["setosa", "versicolor", "virginica"]
    assert info["input_shape"] == [4] and len(info["features"]) == 4
    assert info["parameters"] == sum(p.numel() for p in predictor.model.parameters())
    assert "accuracy" in info["metrics"]["test"]
    assert client.get("/health").json() == {"status": "ok", "run": predictor.run_dir.name}
    schema = client.get("/openapi.json").json()
    assert "post" in schema["paths"]["/predict"]
    assert "PredictRequest" in schema["components"]["schemas"]
    assert "probabilities" in schema["components"]["schemas"]["Prediction"]["properties"]


MALFORMED = [
    ("not json", "{row: [1, 2"),
    ("empty body", ""),
    ("json array", "[1, 2, 3]"),
    ("json string", '"hello"'),
    ("json null", "null"),
    ("no row or rows", "{}"),
    ("both row and rows", '{"row": [1, 2, 3, 4], "rows": [[1, 2, 3, 4]]}'),
    ("unknown field", '{"rows": [[1, 2, 3, 4]], "extra": 1}'),
    ("too few values", '{"row": [1, 2, 3]}'),
    ("too many values", '{"row": [1, 2, 3, 4, 5]}'),
    ("string in numeric column", '{"row": [1, "two", 3, 4]}'),
    ("numeric string", '{"row": ["1.5", 2, 3, 4]}'),
    ("boolean", '{"row": [true, 2, 3, 4]}'),
    ("NaN", '{"row": [NaN, 2, 3, 4]}'),
    ("infinity", '{"row": [1, Infinity, 3, 4]}'),
    ("huge number", '{"row": [1e400, 2, 3, 4]}'),
    ("null without imputation", '{"row": [null, 2, 3, 4]}'),
    ("nested garbage", '{"row": [[1, [2]], {"a": 3}, 3, 4]}'),
    ("row is a number", '{"row": 5}'),
    ("row is a string", '{"row": "1,2,3,4"}'),
    ("rows is an object", '{"rows": {"a": [1, 2, 3, 4]}}'),
    ("rows empty", '{"rows": []}'),
    ("rows hold numbers", '{"rows": [1, 2, 3, 4]}'),
    ("mixed row kinds", '{"rows": [[1, 2, 3, 4], {"sepal length (cm)": 1}]}'),
    ("unknown column", '{"row": {"sepal lenght (cm)": 1}}'),
    ("missing column", '{"row": {"sepal length (cm)": 1, "sepal width (cm)": 2, "petal length (cm)": 3}}'),
    ("deep nesting", '{"row": ' + "[" * 5_000 + "]" * 5_000 + "}"),
    ("deep nesting, huge", "[" * 50_000 + "]" * 50_000),
    ("too many rows", json.dumps({"rows": [[1, 2, 3, 4]] * 9})),
    ("body too large", json.dumps({"rows": [[1.0, 2.0, 3.0, 4.0]] * 2000})),
    ("binary", b"\xff\xfe\x00garbage"),
]


@pytest.mark.parametrize("name,body", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_4xx_with_a_message(iris, name, body):
    _, client = iris
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    message = r.json()["error"]
    assert isinstance(message, str) and len(message) > 10
    assert "\n" not in message
    # the server keeps answering, and correctly
    ok = client.post("/predict", json={"row": IRIS_ROWS[0]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["prediction"] in ("setosa", "versicolor", "virginica")


def test_messages_name_the_problem(iris):
    _, client = iris
    cases = {'{"row": [1, "two", 3, 4]}': "'two' is not a number",
             '{"row": [1, 2, 3]}': "has 3 values",
             '{"row": [NaN, 2, 3, 4]}': "finite",
             '{"rows": [[1, 2, 3, 4]], "rows2": 1}': "unknown field 'rows2'",
             '{"row": {"sepal lenght (cm)": 1}}': "did you mean 'sepal length (cm)'",
             json.dumps({"rows": [[1, 2, 3, 4]] * 9}): "at most 8"}
    for body, words in cases.items():
        r = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert words in r.json()["error"], (body, r.json())
    assert client.post("/predict", content=json.dumps({"rows": [[1.0] * 4] * 2000})).status_code == 413
    assert client.get("/nowhere").status_code == 404 and "error" in client.get("/nowhere").json()
    assert client.get("/predict").status_code == 405
    r = client.post("/predict", content='{"row": [1, 2, 3, 4]}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    r = client.post("/predict", content='{"row": 5}', headers={"content-type": "application/json"})
    assert r.json()["error"] == "row must be a list of values or a {column: value} object"


def test_chunked_body_over_the_limit_is_refused(iris):
    _, client = iris

    def chunks():
        yield b'{"rows": ['
        for _ in range(3000):
            yield b"[1.0, 2.0, 3.0, 4.0],"
        yield b"[1, 2, 3, 4]]}"

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["error"]
