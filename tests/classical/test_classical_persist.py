"""Classical models on disk: skops with an explicit trust list, never pickle; tampered and untrusted
files are refused before anything in them is built; eval and predict through the command line."""
import csv
import json
import os
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

import danlu
from danlu import training as runs
from danlu.classical import TRUSTED_TYPES, load_estimator, make_estimator, save_estimator, schema_types
from danlu._integrity import sha256_file
from danlu.errors import CheckpointError


def _info(task="classification", n_classes=3):
    from danlu.data import DataInfo

    return DataInfo(task=task, kind="tabular", input_shape=(4,), n_classes=n_classes if task == "classification"
                    else None, classes=list(range(n_classes)) if task == "classification" else [],
                    feature_names=[f"f{i}" for i in range(4)])


CONFIGS = [
    {"kind": "decision_tree", "max_depth": 3},
    {"kind": "random_forest", "n_estimators": 4},
    {"kind": "svm", "calibration_folds": 3},
    {"kind": "svm", "calibration": "isotonic", "calibration_folds": 3},
    {"kind": "gradient_boosting", "n_estimators": 5},
    {"kind": "kmeans", "n_init": 2},
]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c['kind']}-{c.get('calibration', '')}")
def test_every_kind_round_trips_with_identical_predictions(cfg, task, tmp_path):
    from danlu.models import complete_model_cfg

    if task == "regression" and cfg["kind"] == "kmeans":
        pytest.skip("k-means ignores the target")
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    target = y if task == "classification" else X[:, 0] * 2.0 + y
    est = make_estimator(complete_model_cfg(cfg), _info(task), seed=0).fit(X, target)
    digest = save_estimator(est, tmp_path / "m.skops")
    assert schema_types(tmp_path / "m.skops") <= set(TRUSTED_TYPES)
    back = load_estimator(tmp_path / "m.skops", sha256=digest,
                          expected=f"{type(est).__module__}.{type(est).__qualname__}")
    assert type(back) is type(est)
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    if hasattr(est, "predict_proba"):
        np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))


def _rewrite_schema(path, edit):
    """Rewrite schema.json inside a skops zip (what someone tampering with the file would do)."""
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    schema = json.loads(entries["schema.json"])
    edit(schema)
    entries["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


@pytest.fixture
def forest_file(tmp_path):
    X, y = load_iris(return_X_y=True)
    est = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)
    path = tmp_path / "m.skops"
    return path, save_estimator(est, path), est


def test_a_changed_file_is_refused_by_its_checksum(forest_file):
    path, digest, _ = forest_file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_estimator(path, sha256=digest)


def test_an_untrusted_type_is_refused_before_anything_is_built(forest_file, monkeypatch):
    path, _, _ = forest_file

    def to_os_system(schema):
        schema["__module__"], schema["__class__"] = "os", "system"

    _rewrite_schema(path, to_os_system)
    # skops must never be asked to build this file: our own scan of the schema refuses it first
    monkeypatch.setattr(sio, "load", lambda *a, **k: pytest.fail("skops.io.load was called on an untrusted file"))
    with pytest.raises(CheckpointError, match=r"does not trust \(os\.system\)"):
        load_estimator(path, sha256=sha256_file(path))   # even with a checksum that matches


def test_skops_itself_refuses_what_is_not_on_the_list(tmp_path):
    """The second line of defence: skops, given only danlu's list, refuses a function reference."""
    est = FunctionTransformer(func=os.getcwd)
    sio.dump(est, tmp_path / "f.skops")
    with pytest.raises(CheckpointError, match="does not trust"):
        load_estimator(tmp_path / "f.skops")
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(tmp_path / "f.skops", trusted=list(TRUSTED_TYPES))


def test_a_trusted_but_unexpected_estimator_is_refused(forest_file, tmp_path):
    path, _, _ = forest_file
    X, y = load_iris(return_X_y=True)
    save_estimator(DecisionTreeClassifier(random_state=0).fit(X, y), path)     # swapped in place
    with pytest.raises(CheckpointError, match="model.json says"):
        load_estimator(path, expected="sklearn.ensemble._forest.RandomForestClassifier")


def test_garbage_is_a_damaged_file_not_a_crash(tmp_path):
    (tmp_path / "m.skops").write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="damaged"):
        load_estimator(tmp_path / "m.skops")


def _iris_csv(path):
    data = load_iris()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(data.feature_names)
        for x in data.data[::10]:
            w.writerow(x)
    return data.data[::10].astype(np.float32), data.target[::10]


def test_cli_predict_and_a_tampered_run_refused(cli, tmp_path):
    from danlu.recipe import Recipe

    recipe = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"},
                               "model": {"kind": "random_forest", "n_estimators": 10}, "output": {"progress": "none"}})
    run = danlu.train(recipe, tmp_path / "run").path
    X, truth = _iris_csv(tmp_path / "rows.csv")
    res = cli("predict", run, tmp_path / "rows.csv", "-o", tmp_path / "pred.csv")
    assert res.returncode == 0, res.stderr
    got = list(csv.DictReader(open(tmp_path / "pred.csv")))
    probs = [k for k in got[0] if k.startswith("proba_")]
    assert len(got) == 15 and len(probs) == 3
    model, pipeline, _meta, _recipe = runs.load_model(run)
    expected = model.estimator.predict_proba(pipeline.load_input(tmp_path / "rows.csv")[0].numpy())
    np.testing.assert_allclose([[float(r[k]) for k in probs] for r in got], expected, atol=1e-9)
    names = load_iris().target_names
    assert sum(r["prediction"] == str(names[t]) for r, t in zip(got, truth)) >= 13

    blob = bytearray((run / "model.skops").read_bytes())
    blob[-100] ^= 0xFF
    (run / "model.skops").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum"):      # a user error: one line, exit code 2
        runs.evaluate(run, "test")


def test_kmeans_predicts_cluster_ids(tmp_path):
    from danlu.recipe import Recipe

    recipe = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "kmeans"},
                               "output": {"progress": "none"}})
    run = danlu.train(recipe, tmp_path / "run")
    _iris_csv(tmp_path / "rows.csv")
    rows = danlu.predict(run.path, tmp_path / "rows.csv", tmp_path / "out.csv")
    model, pipeline, _meta, _recipe = runs.load_model(run.path)
    X = pipeline.load_input(tmp_path / "rows.csv")[0].numpy()
    assert [r["prediction"] for r in rows] == model.estimator.predict(X).tolist()
    assert set(rows[0]) == {"row", "prediction"}
