"""A classical model file crafted to crash scikit-learn's native code (tree children out of range,
cycles, features out of range, inconsistent support vectors or centres), with every checksum
rewritten so that it passes them, is refused with one line and exit 2 — never a SIGSEGV or a hang.

The control test shows the crafted tree really does kill a process that hands it to scikit-learn."""
import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import skops.io as sio

import danlu
from danlu import _integrity as integrity
from danlu import training as runs
from danlu.classical import TRUSTED_TYPES
from danlu.errors import CheckpointError
from danlu.recipe import Recipe

KINDS = {"decision_tree": {"max_depth": 3}, "random_forest": {"n_estimators": 3, "max_depth": 3},
         "gradient_boosting": {"n_estimators": 3}, "svm": {"calibration_folds": 2}, "kmeans": {"n_init": 1},
         "pca": {"n_components": 2}}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    base = tmp_path_factory.mktemp("crafted")
    return {kind: danlu.train(Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"},
                                                "model": {"kind": kind, **cfg}, "output": {"progress": "none"}}),
                              base / kind).path
            for kind, cfg in KINDS.items()}


def _craft(src, dst, edit):
    """Copy the run, change its fitted estimator with ``edit`` and write it back with every
    checksum (model.json's and the manifest's) rewritten to match."""
    run = shutil.copytree(src, dst)
    estimator = sio.load(run / "model.skops", trusted=list(TRUSTED_TYPES))
    edit(estimator)
    sio.dump(estimator, run / "model.skops")
    meta = json.loads((run / "model.json").read_text())
    meta["sha256"] = integrity.file_digest(run / "model.skops")[0]
    (run / "model.json").write_text(json.dumps(meta))
    integrity.record(run / "model.skops")
    integrity.record(run / "model.json")
    return run


def _tree_state(tree, change):
    """Edit a fitted sklearn Tree through its pickled state (what a crafted file holds)."""
    state = tree.__getstate__()
    state["nodes"] = state["nodes"].copy()
    change(state)
    tree.__setstate__(state)


def _root_left(value):
    return lambda s: s["nodes"]["left_child"].__setitem__(0, value)


CASES = {
    "tree child far outside": ("decision_tree", lambda e: _tree_state(e.tree_, _root_left(2 ** 40))),
    "tree child just past the end": ("decision_tree", lambda e: _tree_state(e.tree_, _root_left(e.tree_.node_count))),
    "tree cycle": ("decision_tree", lambda e: _tree_state(e.tree_, lambda s: s["nodes"]["right_child"].__setitem__(
        int(np.flatnonzero(s["nodes"]["left_child"] != -1)[-1]), 0))),
    "tree feature out of range": ("decision_tree", lambda e: _tree_state(e.tree_, lambda s: s["nodes"]["feature"]
                                                                         .__setitem__(0, 10 ** 6))),
    "tree threshold nan": ("decision_tree", lambda e: _tree_state(e.tree_, lambda s: s["nodes"]["threshold"]
                                                                  .__setitem__(0, np.nan))),
    "forest member child": ("random_forest", lambda e: _tree_state(e.estimators_[1].tree_, _root_left(-7))),
    "boosting predictor child": ("gradient_boosting", lambda e: e._predictors[0][0].nodes["left"].__setitem__(
        0, 10 ** 6)),
    "svm support counts": ("svm", lambda e: setattr(e.calibrated_classifiers_[0].estimator, "_n_support",
                                                    np.array([500, 1, 1], dtype=np.int32))),
    "svm support vector width": ("svm", lambda e: setattr(e.calibrated_classifiers_[0].estimator, "support_vectors_",
                                                          e.calibrated_classifiers_[0].estimator.support_vectors_[:, :2]
                                                          .copy())),
    "kmeans centre width": ("kmeans", lambda e: setattr(e, "cluster_centers_", e.cluster_centers_[:, :1].copy())),
    "pca components width": ("pca", lambda e: setattr(e, "components_", np.zeros((2, 9)))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_crafted_structure_is_refused_at_load(fitted, tmp_path, case):
    kind, edit = CASES[case]
    run = _craft(fitted[kind], tmp_path / "run", edit)
    with pytest.raises(CheckpointError, match=r"model\.skops: refused"):
        runs.load_model(run)


def test_the_untouched_runs_still_load_and_answer(fitted):
    for kind, run in fitted.items():
        assert "test" in danlu.evaluate(run, "test"), kind


def _iris_csv(path):
    from sklearn.datasets import load_iris

    data = load_iris()
    lines = [",".join(data.feature_names)] + [",".join(map(str, row)) for row in data.data[::15]]
    path.write_text("\n".join(lines) + "\n")
    return path


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["tree child far outside", "boosting predictor child", "svm support counts"])
def test_eval_predict_and_serve_answer_one_line_exit_2(fitted, tmp_path, capsys, monkeypatch, case):
    import uvicorn

    from danlu.cli import main

    monkeypatch.setattr(uvicorn.Server, "run", lambda *a, **k: pytest.fail("the server started on a crafted model"))
    kind, edit = CASES[case]
    run = _craft(fitted[kind], tmp_path / "run", edit)
    rows = _iris_csv(tmp_path / "rows.csv")
    for argv in (["eval", run], ["predict", run, rows], ["serve", run, "--port", _free_port()]):
        code = main([str(a) for a in argv])
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv[0], err)
        assert len(err.splitlines()) == 1 and "model.skops: refused" in err, err


def test_in_a_real_process_eval_is_exit_2_not_sigsegv(fitted, tmp_path, run_cli):
    run = _craft(fitted["decision_tree"], tmp_path / "run", CASES["tree child far outside"][1])
    res = run_cli("eval", run, timeout=120)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(res.stderr.strip().splitlines()) == 1 and "model.skops: refused" in res.stderr


def test_control_the_crafted_tree_does_crash_scikit_learn(fitted, tmp_path):
    """Without danlu's checks the same file kills the process: the refusal above is what saves it."""
    run = _craft(fitted["decision_tree"], tmp_path / "run", CASES["tree child far outside"][1])
    code = ("import numpy as np, skops.io as sio; from danlu.classical import TRUSTED_TYPES; "
            f"e = sio.load({str(run / 'model.skops')!r}, trusted=list(TRUSTED_TYPES)); "
            "e.predict(np.full((3, 4), -1e3, dtype=np.float32)); print('survived')")   # all go left at the root
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode < 0 and "survived" not in res.stdout, (res.returncode, res.stderr[-500:])
