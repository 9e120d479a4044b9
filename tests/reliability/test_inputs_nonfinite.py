"""Values that are not finite, overflow float32, or become non-finite once scaled are refused with
the file, the row and the column: recipe keys, training data (CSV, .npy, .npz), predict inputs
(CSV, .npy) and the server's JSON bodies (4xx naming row and column)."""
import csv
import json
import math

import numpy as np
import pytest
from inputs_kit import tiny_iris_run

from danlu.training import predict
from danlu.data import prepare
from danlu.errors import DataError, RecipeError, UserError
from danlu.recipe import Field, Recipe

IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
BAD_CELLS = ["inf", "-inf", "Infinity", "1e308", "-1e39", "3.5e38", "1" + "0" * 400]


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    return tiny_iris_run(tmp_path_factory)


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, UserError)
    return message


# --- recipe keys -----------------------------------------------------------------------------------

FLOAT_KEYS = ["optimizer.lr", "optimizer.weight_decay", "optimizer.momentum", "loss.delta", "schedule.gamma",
              "model.dropout", "data.split.validation", "data.augment.noise", "monitors.divergence.spike_factor",
              "train.grad_clip", "base.lr", "rl.gamma"]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "1e999", ".NaN", "+.inf"])
def test_float_keys_refuse_nan_and_inf(tmp_path, key, text):
    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\n", encoding="utf-8")
    with pytest.raises(RecipeError) as err:
        Recipe.from_yaml(path, [f"{key}={text}"])
    message = _one_line(err)
    assert f"{key} must be a finite number, got {text}" in message and str(path) in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
def test_python_values_are_checked_the_same_way(value):
    with pytest.raises(RecipeError, match="optimizer.lr must be"):
        Recipe.from_dict({"data": {"name": "iris"}, "optimizer": {"lr": value}})


def test_list_items_refuse_nan(tmp_path):
    for overrides in (["optimizer.betas=[0.9, .nan]"], ["schedule.kind=multistep", "schedule.milestones=[5, .inf]"]):
        with pytest.raises(RecipeError, match=r"\[1\] must be a finite number"):
            Recipe.from_dict({"data": {"name": "iris"}}).with_overrides(overrides)


def test_a_key_may_allow_inf_but_never_nan():
    from danlu.models import register_model, unregister_model

    register_model("h3_inf_ok", lambda cfg, info, out: None,
                   params={"limit": Field((int, float), 1.0, min=0, allow_inf=True)})
    try:
        base = {"data": {"name": "iris"}, "model": {"kind": "h3_inf_ok"}}
        assert Recipe.from_dict(base).with_overrides(["model.limit=.inf"]).model.limit == math.inf
        with pytest.raises(RecipeError, match="model.limit must be a finite number, got .nan"):
            Recipe.from_dict(base).with_overrides(["model.limit=.nan"])
        with pytest.raises(RecipeError, match="model.limit must be >= 0"):
            Recipe.from_dict(base).with_overrides(["model.limit=-.inf"])
    finally:
        unregister_model("h3_inf_ok")


def test_a_nan_learning_rate_is_one_line_from_the_command_line(tmp_path, capsys):
    from danlu.cli import main

    path = tmp_path / "r.yaml"
    path.write_text("data: {source: sklearn, name: iris}\noptimizer: {lr: .nan}\n", encoding="utf-8")
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    assert "optimizer.lr must be a finite number, got .nan" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- training data ---------------------------------------------------------------------------------

def _write_csv(path, rows, header=("a", "b", "label")):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _rows(n=30):
    return [[f"{i * 0.1:.2f}", f"{(i % 7) * 1.5:.2f}", "yes" if i % 2 else "no"] for i in range(n)]


@pytest.mark.parametrize("cell", BAD_CELLS)
def test_csv_training_cells_name_file_line_and_column(tmp_path, cell):
    rows = _rows()
    rows[6][1] = cell
    path = _write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(DataError) as err:
        prepare({"source": "csv", "path": path}, seed=0)
    message = _one_line(err)
    assert "train.csv" in message and "column 'b'" in message and "line 8" in message


def test_nan_in_training_csv_is_a_missing_value_named_by_line(tmp_path):
    rows = _rows()
    rows[11][0] = "NaN"
    path = _write_csv(tmp_path / "train.csv", rows)
    with pytest.raises(DataError) as err:
        prepare({"source": "csv", "path": path}, seed=0)
    message = _one_line(err)
    assert "train.csv" in message and "'a' (1)" in message and "line 13" in message and "data.impute" in message
    # and imputing it is a choice the user can make
    assert prepare({"source": "csv", "path": path, "impute": "mean"}, seed=0).splits["train"][0].isfinite().all()


@pytest.mark.parametrize("cell", ["inf", "1e308", "-1e39"])
def test_regression_labels_beyond_float32_are_refused(tmp_path, cell):
    rows = [[f"{i * 0.1:.2f}", f"{i % 5}", f"{i * 0.3:.2f}"] for i in range(30)]
    rows[4][2] = cell
    path = _write_csv(tmp_path / "reg.csv", rows, header=("a", "b", "y"))
    with pytest.raises(DataError) as err:
        prepare({"source": "csv", "path": path, "task": "regression"}, seed=0)
    message = _one_line(err)
    assert "reg.csv" in message and "label 'y'" in message and "line 6" in message


def test_values_that_overflow_once_scaled_are_refused(tmp_path):
    rows = [[f"{(-1) ** i * 3.3e38:g}", f"{i % 3}", "yes" if i % 2 else "no"] for i in range(30)]
    path = _write_csv(tmp_path / "wide.csv", rows)
    with pytest.raises(DataError) as err:
        prepare({"source": "csv", "path": path, "scale": "normalize"}, seed=0)
    message = _one_line(err)
    assert "wide.csv" in message and "column 'a'" in message and "once scaled" in message and "line " in message


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1e308, -1e39])
def test_npy_and_npz_training_arrays(tmp_path, value):
    X = np.random.default_rng(0).normal(size=(40, 3))
    X[9, 2] = value
    y = np.arange(40) % 2
    np.save(tmp_path / "t.npy", np.column_stack([X, y]))
    with pytest.raises(DataError) as err:
        prepare({"source": "npy", "path": str(tmp_path / "t.npy"), "label": -1}, seed=0)
    message = _one_line(err)
    assert "t.npy" in message and "column 'col2'" in message and "row 9" in message
    np.savez(tmp_path / "t.npz", X=X, y=y)
    with pytest.raises(DataError) as err:
        prepare({"source": "npy", "path": str(tmp_path / "t.npz")}, seed=0)
    message = _one_line(err)
    assert "t.npz" in message and "column 'x2'" in message and "row 9" in message


def test_float32_arrays_with_inf(tmp_path):
    X = np.ones((30, 2), dtype=np.float32)
    X[3, 0] = np.float32("inf")
    np.savez(tmp_path / "f.npz", X=X, y=np.arange(30) % 3)
    with pytest.raises(DataError, match=r"f\.npz: column 'x0' has 1 infinite value\(s\) \(first on row 3\)"):
        prepare({"source": "npy", "path": str(tmp_path / "f.npz")}, seed=0)


def test_a_run_with_bad_cells_never_starts(tmp_path, capsys):
    from danlu.cli import main

    rows = _rows()
    rows[2][0] = "1e308"
    data = _write_csv(tmp_path / "train.csv", rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{source: csv, path: {data}}}\ntrain: {{epochs: 1}}\n", encoding="utf-8")
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run")]) == 2
    assert "column 'a'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- predict inputs --------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", BAD_CELLS + ["3e38"])
def test_predict_csv_names_line_and_column(iris_run, tmp_path, cell):
    path = tmp_path / "new.csv"
    _write_csv(path, [["5.1", "3.5", "1.4", "0.2"], ["6.0", cell, "4.0", "1.0"]], header=IRIS_COLUMNS)
    with pytest.raises(DataError) as err:
        predict(iris_run, path)
    message = _one_line(err)
    assert "new.csv" in message and "'sepal width (cm)'" in message and "line 3" in message


@pytest.mark.parametrize("value", [np.inf, np.nan, 1e308, -1e39])
def test_predict_npy(iris_run, tmp_path, value):
    X = np.array([[5.1, 3.5, 1.4, 0.2], [6.0, 3.0, 4.0, 1.0]])
    X[1, 3] = value
    np.save(tmp_path / "new.npy", X)
    with pytest.raises(DataError) as err:
        predict(iris_run, tmp_path / "new.npy")
    message = _one_line(err)
    assert "new.npy" in message and "'petal width (cm)'" in message and "row 1" in message


def test_predict_cli_exits_2_without_writing(iris_run, tmp_path, capsys):
    from danlu.cli import main

    path = tmp_path / "new.csv"
    _write_csv(path, [["1e308", "3.5", "1.4", "0.2"]], header=IRIS_COLUMNS)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(iris_run), str(path), "-o", str(out)]) == 2
    assert "line 2" in capsys.readouterr().err and not out.exists()


def test_model_outputs_that_overflow_are_refused_by_row():
    from danlu.data._table import check_outputs

    check_outputs(np.array([[0.2, 0.8], [0.5, 0.5]]), "x.csv", [0, 1])
    with pytest.raises(DataError, match="x.csv: row 7: the model's output is not finite"):
        check_outputs(np.array([[0.2, 0.8], [np.nan, np.nan]]), "x.csv", [3, 7])


# --- server JSON bodies ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(iris_run):
    from fastapi.testclient import TestClient

    from danlu.serve import Predictor, create_app

    return TestClient(create_app(Predictor(iris_run)))


GOOD = [5.1, 3.5, 1.4, 0.2]


@pytest.mark.parametrize("cell", ["1e308", "-1e39", "1e999", "-1e999", "NaN", "Infinity", "-Infinity", "3.5e38",
                                  "1" + "0" * 400])
@pytest.mark.parametrize("shape", ["list", "object"])
def test_server_refuses_bad_numbers_with_row_and_column(client, cell, shape):
    rows = [GOOD, [5.1, "CELL", 1.4, 0.2]]
    if shape == "object":
        rows = [dict(zip(IRIS_COLUMNS, r)) for r in rows]
    body = json.dumps({"rows": rows}).replace('"CELL"', cell)
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert "\n" not in error and "row 1" in error and "sepal width (cm)" in error


def test_server_refuses_values_that_overflow_once_scaled(client):
    response = client.post("/predict", json={"rows": [GOOD, [5.1, 3.0e38, 1.4, 0.2]]})
    assert response.status_code == 422
    error = response.json()["error"]
    assert "row 1" in error and "sepal width (cm)" in error


def test_server_still_answers_good_rows(client):
    response = client.post("/predict", json={"rows": [GOOD, [6.0, 3.0, 4.0, 1.0]]})
    assert response.status_code == 200
    for answer in response.json()["predictions"]:
        assert all(math.isfinite(p) for p in answer["probabilities"].values())


def test_numeric_rows_of_array_models_refuse_overflow():
    from danlu.serve._rows import _numeric_row

    assert list(_numeric_row(0, [[[1.0, 2.0], [3.0, 4.0]]], (1, 2, 2), 4)) == [1.0, 2.0, 3.0, 4.0]
    for bad in (1e308, -1e39, math.inf, math.nan):
        with pytest.raises(DataError, match="row 3, value 2: .* is not allowed"):
            _numeric_row(3, [[[1.0, 2.0], [bad, 4.0]]], (1, 2, 2), 4)


def test_server_caps_rows_and_body_size(iris_run):
    from fastapi.testclient import TestClient

    from danlu.serve import Predictor, create_app

    small = TestClient(create_app(Predictor(iris_run), max_batch=4, max_body=2_000))
    response = small.post("/predict", json={"rows": [GOOD] * 5})
    assert response.status_code == 413 and "at most 4" in response.json()["error"]
    response = small.post("/predict", json={"rows": [GOOD] * 4, "pad": "x" * 3_000})
    assert response.status_code == 413 and "\n" not in response.json()["error"]
    assert small.post("/predict", json={"rows": [GOOD] * 4}).status_code == 200
