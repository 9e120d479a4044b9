"""ONNX export: ONNX Runtime agrees with danlu to 1e-5, on preprocessed and on raw input."""
import json

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from danlu.training import load_model  # noqa: E402
from danlu.serve import export_onnx, rows_to_features  # noqa: E402
from danlu.training import model_outputs, scores_to_proba  # noqa: E402

TOL = 1e-5


def _run_onnx(path, X: np.ndarray) -> dict:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X.astype(np.float32)})))


def _danlu_outputs(run_dir, X_ready: torch.Tensor):
    model, pipeline, meta, _ = load_model(run_dir)
    with torch.no_grad():
        out = model_outputs(model, X_ready)
        return out.numpy(), scores_to_proba(out, meta["loss_kind"], pipeline.info).numpy(), pipeline


def _raw_and_ready(run_dir, rows):
    """Raw rows as numbers (what the ONNX graph takes) and danlu's own preprocessing of them."""
    _, pipeline, _, _ = load_model(run_dir)
    ready = rows_to_features(pipeline, rows)
    raw = np.asarray(rows, dtype=np.float32).reshape(len(rows), *pipeline.info.input_shape)
    return raw, ready


def test_mlp_logits_and_probabilities_agree(iris_run, tmp_path):
    from sklearn.datasets import load_iris

    path = export_onnx(iris_run, tmp_path / "iris.onnx")
    rows = load_iris().data[::10].tolist()     # 15 rows: also checks the batch axis is dynamic
    raw, ready = _raw_and_ready(iris_run, rows)
    logits, proba, _ = _danlu_outputs(iris_run, ready)
    got = _run_onnx(path, raw)                   # raw input: standardisation runs inside the graph
    np.testing.assert_allclose(got["logits"], logits, atol=TOL)
    np.testing.assert_allclose(got["probabilities"], proba, atol=TOL)
    side = json.loads((tmp_path / "iris.onnx.pipeline.json").read_text())
    assert side["outputs"] == ["logits", "probabilities"] and side["classes"] == ["setosa", "versicolor", "virginica"]
    assert side["folded"]["scale"] == "standardize"


def test_cnn_on_digits_agrees_end_to_end(digits_cnn_run, tmp_path):
    from sklearn.datasets import load_digits

    path = export_onnx(digits_cnn_run, tmp_path / "cnn.onnx")
    rows = load_digits().data[:33].tolist()
    raw, ready = _raw_and_ready(digits_cnn_run, rows)   # raw pixels 0..16: the divisor is folded in too
    logits, proba, _ = _danlu_outputs(digits_cnn_run, ready)
    got = _run_onnx(path, raw)
    np.testing.assert_allclose(got["logits"], logits, atol=TOL)
    np.testing.assert_allclose(got["probabilities"], proba, atol=TOL)
    assert got["probabilities"].argmax(1).tolist() == proba.argmax(1).tolist()


def test_lstm_agrees(rnn_run, tmp_path):
    path = export_onnx(rnn_run, tmp_path / "rnn.onnx")
    rng = np.random.default_rng(1)
    rows = rng.normal(0, 1, (7, 8)).cumsum(axis=1).tolist()
    raw, ready = _raw_and_ready(rnn_run, rows)
    logits, proba, _ = _danlu_outputs(rnn_run, ready)
    got = _run_onnx(path, raw)
    np.testing.assert_allclose(got["logits"], logits, atol=TOL)
    np.testing.assert_allclose(got["probabilities"], proba, atol=TOL)


def test_regression_predictions_agree(diabetes_run, tmp_path):
    from sklearn.datasets import load_diabetes

    path = export_onnx(diabetes_run, tmp_path / "reg.onnx")
    rows = load_diabetes().data[:9].tolist()
    raw, ready = _raw_and_ready(diabetes_run, rows)
    _, values, _ = _danlu_outputs(diabetes_run, ready)
    got = _run_onnx(path, raw)
    assert list(got) == ["predictions"] and got["predictions"].shape == (9,)
    np.testing.assert_allclose(got["predictions"], values, rtol=TOL, atol=TOL * np.abs(values).max())


def test_categorical_codes_and_missing_values_fold(churn_run, tmp_path):
    path = export_onnx(churn_run, tmp_path / "churn.onnx")
    side = json.loads((tmp_path / "churn.onnx.pipeline.json").read_text())
    codes = side["categorical"]
    assert codes["plan"]["codes"] == {"basic": 0, "plus": 1, "pro": 2} and codes["plan"]["unknown_code"] == 3
    rows = [[30, "basic", "north", 12.5], [None, "pro", None, 3.0], [41, "new-plan", "east", None]]
    _, pipeline, _, _ = load_model(churn_run)
    ready = rows_to_features(pipeline, rows)
    columns = side["input"]["columns"]

    def encode(row):   # what an ONNX user does with the JSON beside the model
        out = []
        for name, v in zip(columns, row):
            if name in codes:
                out.append(np.nan if v is None else codes[name]["codes"].get(v, codes[name]["unknown_code"]))
            else:
                out.append(np.nan if v is None else v)
        return out

    raw = np.array([encode(r) for r in rows], dtype=np.float32)
    logits, proba, _ = _danlu_outputs(churn_run, ready)
    got = _run_onnx(path, raw)                    # NaN cells are imputed inside the graph
    np.testing.assert_allclose(got["logits"], logits, atol=TOL)
    np.testing.assert_allclose(got["probabilities"], proba, atol=TOL)


def test_export_cli(iris_run, tmp_path, run_cli, capsys):
    from danlu.cli import main

    out = tmp_path / "cli.onnx"
    r = run_cli("export", iris_run, "--format", "onnx", "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and (tmp_path / "cli.onnx.pipeline.json").is_file()
    # user errors: one line, exit 2 (in-process: a second interpreter costs seconds on a busy machine)
    assert main(["export", str(iris_run), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "no_run"), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "not a danlu run directory" in capsys.readouterr().err
