"""Every registered run kind follows one protocol (danlu.training.check_run_kind): train, SIGKILL in a
checkpoint write, resume bit-identical (or refuse in one line), evaluate, predict (or refuse in one
line) — all from the command line. A kind without an example here fails the coverage test, so a new
kind cannot join without passing the same checks."""
from __future__ import annotations

import csv
import sys
import textwrap

import numpy as np
import pytest

from danlu.training import run_kinds
from danlu.checks import ConformanceError, check_run_kind

IRIS = ("seed: 0\ndata: {source: sklearn, name: iris}\noptimizer: {lr: 0.01}\n"
        "train: {epochs: 4, batch_size: 32}\ncheckpoint: {every_epochs: 1}\noutput: {progress: none}\n")


def _iris_rows(path):
    from sklearn.datasets import load_iris

    data = load_iris()
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(data.feature_names)
        w.writerows(data.data[::10])
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("kinds")
    (work / "neural.yaml").write_text(IRIS + "model: {kind: mlp, hidden: [8]}\n")
    (work / "classical.yaml").write_text(IRIS + "model: {kind: decision_tree, max_depth: 3}\n")
    (work / "agent.yaml").write_text(textwrap.dedent("""\
        seed: 0
        env: {name: CartPole-v1, num_envs: 4, eval_episodes: 2}
        model: {kind: mlp, hidden: [16], activation: tanh}
        rl: {steps: 512, rollout: 32, epochs: 2, minibatches: 2, checkpoint_every: 1}
        checkpoint: {keep_last: 10}
        output: {progress: none}
        """))
    _iris_rows(work / "rows.csv")
    from sklearn.datasets import load_iris

    np.save(work / "rows.npy", load_iris().data[::10].astype("float32"))
    (work / "python_data.py").write_text(textwrap.dedent("""\
        import sys
        import danlu
        from sklearn.datasets import load_iris

        X, y = load_iris(return_X_y=True)
        recipe = {"seed": 0, "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"lr": 0.01},
                  "train": {"epochs": 4, "batch_size": 32}, "output": {"progress": "none"}}
        danlu.train(recipe, sys.argv[1], data=(X.astype("float32"), y))
        """))
    return work


def _base(work):
    """A finished neural run, the base of the fine-tuning example and a member of the ensemble's."""
    from danlu.checks import _main

    for name in ("base-a", "base-b"):
        if not (work / name / "summary.json").is_file():
            width = 16 if name == "base-b" else 8   # members share the seed and data: same splits
            (work / f"{name}.yaml").write_text(IRIS + f"model: {{kind: mlp, hidden: [{width}]}}\n")
            res = _main(["train", work / f"{name}.yaml", "--run-dir", work / name], work)
            assert res.returncode == 0, res.stderr
    return work / "base-a", work / "base-b"


def _example(kind, work):
    """(train_args, train_command, predict_input) of the example of each kind."""
    if kind == "neural":
        return ["neural.yaml"], None, work / "rows.csv"
    if kind == "classical":
        return ["classical.yaml"], None, work / "rows.csv"
    if kind == "agent":
        return ["agent.yaml"], None, None
    if kind == "python":
        return [], [sys.executable, work / "python_data.py"], work / "rows.npy"
    if kind == "finetune":
        base, _ = _base(work)
        (work / "finetune.yaml").write_text(IRIS + f"base: {{run: {base}, mode: full}}\n")
        return ["finetune.yaml"], None, work / "rows.csv"
    if kind == "ensemble":
        a, b = _base(work)
        return [], [sys.executable, "-m", "danlu", "ensemble", a, b, "--method", "soft-vote", "-o"], work / "rows.csv"
    raise AssertionError(f"no example of run kind {kind}")


EXAMPLES = ("neural", "classical", "agent", "python", "finetune", "ensemble")


def test_every_registered_kind_has_an_example():
    assert set(run_kinds()) <= set(EXAMPLES), "add an example of the new run kind to this file"


@pytest.mark.parametrize("kind", EXAMPLES)
def test_run_kind_conformance(kind, work):
    if kind == "agent":
        pytest.importorskip("gymnasium")
    if kind == "classical":
        pytest.importorskip("skops")
    train_args, command, predict_input = _example(kind, work)
    checked = check_run_kind(kind, train_args, work, predict_input=predict_input, train_command=command,
                             writes_checkpoints=kind == "finetune")
    assert checked["trained"] and "eval" in checked
    kinds = run_kinds()
    impl = kinds[kind].kind()
    if impl.resumable:
        assert checked["resume"] == "bit-identical"
    if impl.predicts_rows:
        assert checked["predict_rows"] > 0
    else:
        assert checked["predict"] == "refused in one line"


def test_the_check_catches_a_kind_that_breaks_the_protocol(tmp_path):
    """A kind whose predict fails is reported, naming the kind (the check can fail)."""
    (tmp_path / "neural.yaml").write_text(IRIS + "model: {kind: mlp, hidden: [8]}\n")
    with pytest.raises(ConformanceError, match="neural: danlu predict failed"):
        check_run_kind("neural", ["neural.yaml"], tmp_path, predict_input=tmp_path / "missing.csv")
