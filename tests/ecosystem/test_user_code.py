"""The user's own code, first class: a model, loss and metric from the user's own module, named under
a recipe's ``plugins:``, trained, killed, resumed, evaluated and predicted from the command line like
a built-in one; and the Python API trained on a torch Dataset, a DataFrame and NumPy arrays, on a
model object, with a loss and metrics given as callables.

The command-line tests run every danlu command in a fresh process (the plugin module is imported
there, never in this test process, so its registrations do not leak into other tests).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_iris
from sklearn.metrics import balanced_accuracy_score

import danlu
from danlu.training import _checkpoint as ck

# ---------------------------------------------------------------------------------------------
# a. The command line, with the user's module under plugins:
# ---------------------------------------------------------------------------------------------

PLUGIN = '''
import torch
from sklearn.metrics import balanced_accuracy_score

import danlu
from danlu.evaluation import register_metric
from danlu.recipe import Field
from danlu.training import register_loss


@danlu.register_model("tiny_mlp", params={"width": Field(int, 16, min=1)})
def tiny_mlp(cfg, info, out_dim):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(info.input_shape[0], cfg["width"]),
                               torch.nn.Tanh(), torch.nn.Linear(cfg["width"], out_dim))


@register_loss("smooth_ce", task="classification")
def smooth_ce(outputs, targets):
    return torch.nn.functional.cross_entropy(outputs, targets, label_smoothing=0.05)


register_metric("bacc", balanced_accuracy_score, task="classification")
'''

# 12 epochs of 7 batches: long enough that a kill right after the first checkpoint lands mid-run
# (early stopping kept out of the way so that the run does not end first)
RECIPE = """{plugins}seed: 5
data: {{source: sklearn, name: iris}}
model: {{kind: tiny_mlp, width: 8}}
{loss}optimizer: {{kind: adam, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 16, early_stopping: {{patience: 100}}}}
checkpoint: {{every_epochs: 1, keep_last: 2}}
output: {{progress: lines}}
"""

ROWS = ("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n"
        "5.1,3.5,1.4,0.2\n6.0,2.7,4.1,1.1\n6.7,3.0,5.2,2.3\n")


def _recipe(folder, name="r.yaml", plugins="plugins: [my_models]\n", loss="loss: {kind: smooth_ce}\n", epochs=12):
    path = folder / name
    path.write_text(RECIPE.format(plugins=plugins, loss=loss, epochs=epochs))
    return path


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("DANLU_KILL_AT", None)
    return env


def _danlu(cwd, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "danlu", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


def _one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert "Traceback" not in message and "\n" not in message, message
    return message


@pytest.fixture
def project(tmp_path):
    """A user's project folder: their own module, and rows to predict."""
    (tmp_path / "my_models.py").write_text(PLUGIN)
    (tmp_path / "rows.csv").write_text(ROWS)
    return tmp_path


def test_plugin_model_trains_killed_resumes_evaluates_and_predicts_from_the_cli(project):
    recipe = _recipe(project)
    reference = _danlu(project, "train", recipe.name, "--run-dir", "ref")
    assert reference.returncode == 0, reference.stderr

    run = project / "run"
    proc = subprocess.Popen([sys.executable, "-m", "danlu", "train", recipe.name, "--run-dir", "run"], cwd=project,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not ck.list_checkpoints(run / "checkpoints"):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill: make it longer"
    assert ck.list_checkpoints(run / "checkpoints"), "killed before its first checkpoint"
    assert not (run / "summary.json").exists(), "the run finished before the kill: make it longer"

    resumed = _danlu(project, "resume", "run")   # a new process: the plugin is imported again from plugins:
    assert resumed.returncode == 0, resumed.stderr
    assert (run / "model.safetensors").read_bytes() == (project / "ref" / "model.safetensors").read_bytes()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"] == json.loads((project / "ref" / "summary.json").read_text())["test"]
    assert "bacc" in summary["test"]   # the plugin's metric is one of the run's figures
    # and its loss is the run's: label smoothing puts it apart from the plain log loss
    assert "kind: smooth_ce" in (run / "recipe.yaml").read_text()
    assert abs(summary["test"]["loss"] - summary["test"]["log_loss"]) > 1e-3

    evaluated = _danlu(project, "eval", "run", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    figures = json.loads(evaluated.stdout)["test"]
    assert figures["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert figures["bacc"] == pytest.approx(summary["test"]["bacc"])
    assert figures["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-6)

    predicted = _danlu(project, "predict", "run", "rows.csv", "-o", "out.csv")
    assert predicted.returncode == 0, predicted.stderr
    out = pd.read_csv(project / "out.csv")
    assert len(out) == 3 and set(out["prediction"]) <= {"setosa", "versicolor", "virginica"}
    probas = out[["proba_setosa", "proba_versicolor", "proba_virginica"]].to_numpy()
    assert np.allclose(probas.sum(axis=1), 1, atol=1e-5)


def test_without_plugins_the_kind_is_unknown_in_one_line_that_hints_at_plugins(project):
    recipe = _recipe(project, plugins="", loss="")
    message = _one_line_error(_danlu(project, "train", recipe.name, "--run-dir", "run"))
    assert "model.kind" in message and "'tiny_mlp'" in message
    assert "plugins:" in message and "register_model" in message
    assert not (project / "run").exists()


def test_a_plugin_that_cannot_be_imported_is_one_line(project):
    recipe = _recipe(project, plugins="plugins: [no_such_models]\n")
    message = _one_line_error(_danlu(project, "train", recipe.name, "--run-dir", "run"))
    assert "plugins[0]" in message and "no_such_models" in message
    assert not (project / "run").exists()


# ---------------------------------------------------------------------------------------------
# b. The Python API on the user's own objects
# ---------------------------------------------------------------------------------------------

def _base(**sections):
    recipe = {"seed": 3, "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"kind": "adam", "lr": 0.02},
              "train": {"epochs": 4, "batch_size": 16}, "output": {"progress": "none"}}
    recipe.update(sections)
    return recipe


@pytest.fixture(scope="module")
def iris():
    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["species"] = data.target_names[data.target]
    X = data.data.to_numpy(dtype=np.float32, copy=True)
    return frame, X, data.target.to_numpy(copy=True)


class IrisDataset(torch.utils.data.Dataset):
    """A map-style Dataset of (x, y) pairs, as a user writes one."""

    def __init__(self, X, y):
        self.X, self.y = torch.as_tensor(X), torch.as_tensor(y)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden, self.out = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.hidden(x)))


@pytest.mark.parametrize("given", ["dataset", "frame", "arrays"])
def test_python_data_runs_evaluate_to_their_summary(given, iris, tmp_path):
    frame, X, y = iris
    data = {"dataset": IrisDataset(X, y), "frame": frame, "arrays": (X, y)}[given]
    recipe = _base(data={"label": "species"} if given == "frame" else {})
    run = danlu.train(recipe, tmp_path / "run", data=data)
    assert (run.path / "data.safetensors").is_file()   # the rows are kept: evaluate needs only the folder
    assert run.summary["test"]["accuracy"] > 0.5
    assert danlu.evaluate(run.path)["test"]["accuracy"] == run.summary["test"]["accuracy"]


def test_a_dataframe_and_the_same_rows_as_csv_make_the_same_run(iris, tmp_path, monkeypatch):
    from danlu.cli import main

    frame, _, _ = iris
    from_frame = danlu.train(_base(data={"label": "species"}), tmp_path / "frame", data=frame)
    frame.to_csv(tmp_path / "iris.csv", index=False)
    from_csv = danlu.train(_base(data={"source": "csv", "path": str(tmp_path / "iris.csv"), "label": "species"}),
                           tmp_path / "csv")
    for split in ("train", "validation", "test"):
        assert from_frame.summary[split] == from_csv.summary[split], split

    rows = frame.drop(columns="species").iloc[::10]
    answered = danlu.predict(from_frame, rows)   # the Run itself stands for its folder
    assert isinstance(answered, pd.DataFrame) and len(answered) == len(rows)
    assert answered.index.tolist() == rows.index.tolist()   # answers join back to the rows asked about
    rows.to_csv(tmp_path / "rows.csv", index=False)
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "frame", "rows.csv", "-o", "out.csv"]) in (0, None)   # `danlu predict`
    by_cli = pd.read_csv(tmp_path / "out.csv")
    assert answered["prediction"].tolist() == by_cli["prediction"].tolist()
    for name in ("setosa", "versicolor", "virginica"):
        assert np.allclose(answered[f"proba_{name}"], by_cli[f"proba_{name}"], atol=1e-6)
    assert (answered["prediction"] == frame["species"].iloc[::10].to_numpy()).mean() > 0.5

    before = (from_frame.path / "model.safetensors").read_bytes()
    again = danlu.resume(from_frame.path)   # a finished run is returned as it is
    assert again.summary == from_frame.summary
    assert (from_frame.path / "model.safetensors").read_bytes() == before


def test_a_model_object_run_needs_the_model_again(tmp_path):
    torch.manual_seed(0)
    run = danlu.train(_base(data={"source": "sklearn", "name": "iris"}), tmp_path / "run", model=Net())
    with pytest.raises(danlu.UserError) as refused:
        danlu.evaluate(run.path)
    assert "\n" not in str(refused.value) and "model=" in str(refused.value)
    figures = danlu.evaluate(run.path, model=Net())["test"]   # fresh weights: the run's are loaded into it
    assert figures.keys() == run.summary["test"].keys()
    for name, value in run.summary["test"].items():
        assert figures[name] == pytest.approx(value, abs=1e-6), name
    rows = load_iris().data[::25].astype(np.float32)
    with pytest.raises(danlu.UserError) as refused:
        danlu.predict(run.path, rows)
    assert "\n" not in str(refused.value)
    predicted = danlu.predict(run.path, rows, model=Net())
    assert len(predicted) == len(rows) and set(predicted) <= {"setosa", "versicolor", "virginica"}


def test_loss_and_metrics_given_as_callables_are_the_runs(tmp_path):
    from danlu.training import load_model, prepare_run_data

    def my_loss(outputs, targets):
        return torch.nn.functional.cross_entropy(outputs, targets, label_smoothing=0.1)

    run = danlu.train(_base(data={"source": "sklearn", "name": "iris"}), tmp_path / "run", loss=my_loss,
                      metrics={"bacc": balanced_accuracy_score})
    net, _pipeline, _meta, recipe = load_model(run.path)
    X_test, y_test = prepare_run_data(recipe, run.path).splits["test"]
    with torch.no_grad():
        outputs = net.eval()(X_test)
    test = run.summary["test"]
    assert test["loss"] == pytest.approx(my_loss(outputs, y_test).item(), abs=1e-5)
    assert test["bacc"] == pytest.approx(balanced_accuracy_score(y_test.numpy(), outputs.argmax(1).numpy()))
    assert "bacc" in run.summary["validation"]


# ---------------------------------------------------------------------------------------------
# c. Bad inputs
# ---------------------------------------------------------------------------------------------

def test_arrays_of_different_lengths_are_one_line(iris, tmp_path):
    _, X, y = iris
    with pytest.raises(danlu.UserError) as refused:
        danlu.train(_base(), tmp_path / "run", data=(X, y[:-1]))
    assert "\n" not in str(refused.value) and "150" in str(refused.value) and "149" in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_a_model_that_is_not_a_module_is_refused(tmp_path):
    with pytest.raises(danlu.UserError, match="torch.nn.Module") as refused:
        danlu.train(_base(data={"source": "sklearn", "name": "iris"}), tmp_path / "run", model="not a module")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_predict_reads_a_read_only_array_and_leaves_it_alone(iris, tmp_path):
    _, X, y = iris
    run = danlu.train(_base(), tmp_path / "run", data=(X, y))
    rows = X[:5].copy()
    rows.flags.writeable = False
    predictions = danlu.predict(run.path, rows)
    assert predictions.shape == (5,)
