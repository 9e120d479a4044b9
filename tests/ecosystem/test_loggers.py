"""output.loggers: TensorBoard event files and an MLflow run, read back with each tool's own reader
and compared with metrics.jsonl, grad_norms.jsonl and events.jsonl."""
import json

import pytest

import danlu
from danlu.errors import RecipeError

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("loggers")
    run = danlu.train({"seed": 0, "data": {"source": "sklearn", "name": "breast_cancer"},
                       "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 3, "batch_size": 64},
                       "monitors": {"gradients": {"every": 2}},
                       "output": {"runs_dir": str(root), "progress": "none", "loggers": ["tensorboard", "mlflow"]}})
    return run.path


def test_tensorboard_scalars_and_diagnoses_match_the_run_files(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(logged_run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    rows = _jsonl(logged_run / "metrics.jsonl")
    assert len(rows) == 3
    for key in ("train_loss_running_mean", "val_loss", "val_accuracy", "val_roc_auc", "lr"):
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert [s for s, _ in got] == [r["step"] for r in rows]
        assert [v for _, v in got] == pytest.approx([r[key] for r in rows], rel=1e-6)   # float32 on disk
    grads = _jsonl(logged_run / "grad_norms.jsonl")
    assert len(grads) >= 3
    got = [(e.step, e.value) for e in acc.Scalars("grad_norm/total")]
    assert got == [(g["step"], pytest.approx(g["total"], rel=1e-6)) for g in grads]
    layer = next(iter(grads[0]["layers"]))
    assert [e.value for e in acc.Scalars(f"grad_norm/{layer}")] == pytest.approx(
        [g["layers"][layer] for g in grads], rel=1e-6)

    events = _jsonl(logged_run / "events.jsonl")
    assert events, "the run should have a diagnosis to log"
    texts = [tensor_util.make_ndarray(e.tensor_proto).item().decode()
             for e in acc.Tensors("diagnoses/text_summary")]
    assert [t.split("]")[0].lstrip("[") for t in texts] == [e["kind"] for e in events]


def test_mlflow_run_holds_params_metrics_and_diagnoses(logged_run, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{logged_run / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("danlu")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == logged_run.name
    assert run.data.params["optimizer.lr"] == "0.001"
    assert run.data.params["model.hidden"] == "[8]"
    rows = _jsonl(logged_run / "metrics.jsonl")
    for key in ("train_loss_running_mean", "val_loss", "val_f1", "lr"):
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in history] == [(r["step"], r[key]) for r in rows]
    grads = _jsonl(logged_run / "grad_norms.jsonl")
    history = sorted(client.get_metric_history(run.info.run_id, "grad_norm/total"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(g["step"], g["total"]) for g in grads]
    text = open(client.download_artifacts(run.info.run_id, "diagnoses.txt", str(tmp_path))).read()
    kinds = [e["kind"] for e in _jsonl(logged_run / "events.jsonl")]
    assert [line.split("]")[0].lstrip("[") for line in text.splitlines()] == kinds
    # the artifacts stay inside the run directory
    assert run.info.artifact_uri.startswith((logged_run / "mlflow").resolve().as_uri())


def test_an_unknown_logger_is_refused_with_one_line():
    with pytest.raises(RecipeError, match=r"output.loggers\[1\] must be one of tensorboard, mlflow; "
                                          r"got 'mlfow' \(did you mean 'mlflow'\?\)"):
        danlu.Recipe.from_dict({"data": {"name": "iris"}, "output": {"loggers": ["tensorboard", "mlfow"]}})


def test_a_resumed_run_continues_the_same_tensorboard_curves_and_mlflow_run(logged_run):
    """Runs last in this file: it resumes the shared run from its older checkpoint (epoch 2 again)."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    older = sorted(p.name for p in (logged_run / "checkpoints").iterdir())[0]
    danlu.resume(logged_run, checkpoint=older, progress="none")
    rows = _jsonl(logged_run / "metrics.jsonl")
    acc = EventAccumulator(str(logged_run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    # TensorBoard drops what the first process wrote past the checkpoint: one point per epoch
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars("val_loss")] == \
        [(r["step"], r["val_loss"]) for r in rows]
    client = MlflowClient(tracking_uri=f"sqlite:///{logged_run / 'mlflow' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("danlu").experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    # MLflow keeps every logged point: the epochs after the checkpoint appear twice, with equal values
    assert sorted({(m.step, m.value) for m in history}) == [(r["step"], r["val_loss"]) for r in rows]
