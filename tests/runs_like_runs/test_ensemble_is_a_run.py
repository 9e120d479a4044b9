"""An ensemble folder is a run: predict, serve, export and eval work on it; members may differ in
data.shape when it only reshapes the same numbers (a digits MLP on [64], a digits CNN on [1, 8, 8])."""
import csv

import numpy as np
import pytest
import torch

import danlu
from danlu import training as runs
from danlu.combine import combine, ensemble, load_members
from danlu.combine._ensemble import _labels
from danlu.errors import UserError
from danlu.recipe import Recipe

QUIET = {"divergence": {"enabled": False}, "gradients": {"enabled": False}, "fit": {"enabled": False},
         "convergence": {"enabled": False}}


def _recipe(model, shape=None, data="digits", **extra):
    section = {"source": "sklearn", "name": data, **({"shape": shape} if shape else {})}
    return Recipe.from_dict({"seed": 0, "data": section, "model": model, "checkpoint": {"every_epochs": 0},
                             "monitors": QUIET, "output": {"progress": "none"},
                             "train": {"epochs": 2, "batch_size": 64}, **extra})


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    mlp = danlu.train(_recipe({"kind": "mlp", "hidden": [32]}, [64]), root / "mlp").path
    cnn = danlu.train(_recipe({"kind": "cnn", "channels": [4], "hidden": [16]}), root / "cnn").path
    return mlp, cnn


def _expected(members, method):
    """What `danlu ensemble` computed on the test rows (members loaded on their own data)."""
    loaded, prepared = load_members(list(members), ("validation", "test"), progress=False, reshape=True)
    info = prepared.info
    y_val = _labels(prepared.splits["validation"][1], info)
    combined, _, _ = combine(method, [m.outputs for m in loaded], y_val, info)
    return combined["test"], prepared


def _raw_test_rows(members):
    """Raw test rows (pixel values 0..16): the first member's test features, unscaled."""
    _, pipeline, _, _ = runs.load_model(members[0])
    prepared = runs.prepare_run_data(runs.read_run_recipe(members[0]), members[0])
    X = prepared.splits["test"][0]
    raw = X * pipeline.scaler.div + pipeline.scaler.shift   # per column for the [64] MLP
    raw = torch.round(raw * float(pipeline.reader.get("divisor", 1.0))).numpy()   # pixels are integers
    return raw, pipeline.reader["columns"]


def _write_csv(path, columns, raw):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(raw.astype(int).tolist())
    return path


@pytest.mark.parametrize("method", ["stack", "vote"])   # soft-vote: see the serving test
def test_predict_on_an_ensemble_equals_its_own_evaluation(members, tmp_path, method):
    result = ensemble(list(members), method, tmp_path / "ens", progress=False)
    expected, prepared = _expected(members, method)
    raw, columns = _raw_test_rows(members)
    rows = danlu.predict(tmp_path / "ens", _write_csv(tmp_path / "rows.csv", columns, raw))
    classes = prepared.info.classes
    got = np.array([[r[f"proba_{c}"] for c in classes] for r in rows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    accuracy = np.mean([r["prediction"] == classes[int(t)] for r, t in zip(rows, prepared.splits["test"][1])])
    assert accuracy == pytest.approx(result["ensemble"]["test"]["accuracy"])
    # `danlu eval` on the folder gives the figures ensemble.json holds
    assert runs.evaluate(tmp_path / "ens", "test")["test"]["accuracy"] == pytest.approx(accuracy)


def test_serve_answers_for_an_ensemble(members, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from danlu.serve import Predictor, create_app

    ensemble(list(members), "soft-vote", tmp_path / "ens", progress=False)
    raw, columns = _raw_test_rows(members)
    expected = danlu.predict(tmp_path / "ens", _write_csv(tmp_path / "rows.csv", columns, raw[:5]))
    client = TestClient(create_app(Predictor(tmp_path / "ens", device="cpu")))
    answer = client.post("/predict", json={"rows": raw[:5].tolist()})
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    assert [s["prediction"] for s in served] == [e["prediction"] for e in expected]
    for s, e in zip(served, expected):
        for label, p in s["probabilities"].items():
            assert p == pytest.approx(e[f"proba_{label}"], abs=1e-6)
    assert client.get("/health").status_code == 200
    assert client.get("/info").json()["classes"] == list(range(10))


@pytest.mark.parametrize("method", ["weighted", "stack"])
def test_onnx_export_of_an_ensemble_agrees_with_onnx_runtime(members, tmp_path, method):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from danlu.serve import export_onnx

    ensemble(list(members), method, tmp_path / "ens", progress=False)
    path = export_onnx(tmp_path / "ens", tmp_path / "ens.onnx")
    raw, columns = _raw_test_rows(members)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"input": raw.astype(np.float32)})))
    rows = danlu.predict(tmp_path / "ens", _write_csv(tmp_path / "rows.csv", columns, raw))
    want = np.array([[r[f"proba_{c}"] for c in range(10)] for r in rows])
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-5)


def test_members_must_hold_the_same_numbers_per_row(members, tmp_path):
    from danlu.combine import check_reshape
    from danlu.data import DataInfo

    def info(shape):
        return DataInfo(task="classification", kind="image", input_shape=tuple(shape), n_classes=10,
                        classes=list(range(10)), feature_names=[])

    check_reshape(info([1, 8, 8]), info([64]), "mlp", "cnn")        # the same 64 numbers
    check_reshape(info([1, 8, 8]), info([2, 32]), "mlp", "cnn")
    with pytest.raises(UserError, match=r"its inputs have shape \[32\] but cnn's have \[1, 8, 8\]"):
        check_reshape(info([1, 8, 8]), info([32]), "mlp", "cnn")


def test_export_refuses_an_ensemble_with_a_scikit_learn_member(members, tmp_path):
    pytest.importorskip("onnx")
    from danlu.serve import export_onnx

    forest = danlu.train(_recipe({"kind": "random_forest", "n_estimators": 5}, [64]), tmp_path / "forest").path
    ensemble([members[0], forest], "soft-vote", tmp_path / "ens", progress=False)
    raw, columns = _raw_test_rows(members)
    assert len(danlu.predict(tmp_path / "ens", _write_csv(tmp_path / "rows.csv", columns, raw[:3]))) == 3
    with pytest.raises(UserError, match="scikit-learn model"):
        export_onnx(tmp_path / "ens", tmp_path / "ens.onnx")


def test_bayes_is_compared_with_soft_voting_and_says_where_its_weights_came_from(members, tmp_path):
    result = ensemble(list(members), "bayes", tmp_path / "ens", progress=False)
    details = result["details"]
    assert details["weights_from"] == "validation"
    assert details["validation_used_for_early_stopping_by"] == ["mlp", "cnn"]   # early stopping is on by default
    soft = ensemble(list(members), "soft-vote", tmp_path / "soft", progress=False)
    assert result["compared_with"]["soft-vote"]["test"] == pytest.approx(soft["ensemble"]["test"])
    from danlu.combine import table_rows

    assert "for comparison: soft-vote" in table_rows(result, "test")


def test_an_ensemble_refuses_a_member_trained_again(tmp_path):
    first = danlu.train(_recipe({"kind": "mlp", "hidden": [8]}, [64], train={"epochs": 1}), tmp_path / "a").path
    second = danlu.train(_recipe({"kind": "logistic"}, [64], train={"epochs": 1}), tmp_path / "b").path
    ensemble([first, second], "weighted", tmp_path / "ens", progress=False)
    assert runs.load_model(tmp_path / "ens")[2]["ensemble"]
    danlu.train(_recipe({"kind": "logistic"}, [64], train={"epochs": 2}), second, overwrite=True)
    with pytest.raises(UserError, match="other weights than when the ensemble was made"):
        runs.load_model(tmp_path / "ens")
