"""Binary metrics name their positive class, and a recipe chooses it (data.positive_class); the
figures equal scikit-learn's with pos_label."""
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

import danlu
from danlu.errors import UserError
from danlu.evaluation import compute_metrics, format_table, positive_class_id


@pytest.mark.parametrize("positive", [0, 1])
def test_binary_figures_equal_sklearn_with_pos_label(positive):
    rng = np.random.default_rng(positive)
    for _ in range(20):
        y = rng.integers(0, 2, 50)
        p1 = rng.random(50)
        got = compute_metrics("classification", y, np.stack([1 - p1, p1], axis=1), positive=positive)
        pred = (p1 > 0.5).astype(int)
        assert got["precision"] == pytest.approx(precision_score(y, pred, pos_label=positive, zero_division=0))
        assert got["recall"] == pytest.approx(recall_score(y, pred, pos_label=positive, zero_division=0))
        assert got["f1"] == pytest.approx(f1_score(y, pred, pos_label=positive, zero_division=0))
        score = p1 if positive == 1 else 1 - p1
        assert got["roc_auc"] == pytest.approx(roc_auc_score(y == positive, score))


def test_default_is_the_second_label_in_sorted_order_and_a_choice_is_checked():
    assert positive_class_id([0, 1]) == 1
    assert positive_class_id(["malignant", "benign"]) == 0      # sorted: benign, malignant
    assert positive_class_id([10, 2]) == 0                      # numbers in numeric order
    assert positive_class_id(["malignant", "benign"], "benign") == 1
    assert positive_class_id([0, 1], "0") == 0                  # YAML may give the label as text
    with pytest.raises(UserError, match=r"must be one of the classes malignant, benign; got 'bening' "
                                        r"\(did you mean 'benign'\?\)"):
        positive_class_id(["malignant", "benign"], "bening")
    with pytest.raises(UserError, match="applies to binary classification; the data has 3 classes"):
        positive_class_id(["a", "b", "c"], "a")


def _run(tmp_path, name, **data):
    return danlu.train({"seed": 0, "data": {"source": "sklearn", "name": "breast_cancer", **data},
                        "model": {"kind": "logistic"}, "train": {"epochs": 2, "batch_size": 64},
                        "checkpoint": {"every_epochs": 0}, "monitors": {"gradients": {"enabled": False}},
                        "output": {"progress": "none"}}, tmp_path / name).path


def _test_split_oracle(run_dir, pos_label):
    from danlu.training import scoring
    from danlu.training import model_outputs, scores_to_proba

    sc = scoring(run_dir)
    X, y = sc.split("test", run_dir)
    proba = scores_to_proba(model_outputs(sc.model, X), sc.meta["loss_kind"], sc.prepared.info).numpy()
    y, pred = y.numpy(), proba.argmax(axis=1)
    return {"precision": precision_score(y, pred, pos_label=pos_label, zero_division=0),
            "recall": recall_score(y, pred, pos_label=pos_label, zero_division=0),
            "f1": f1_score(y, pred, pos_label=pos_label, zero_division=0),
            "roc_auc": roc_auc_score(y == pos_label, proba[:, pos_label])}


def test_a_run_names_and_uses_its_positive_class(tmp_path):
    default = _run(tmp_path, "default")
    chosen = _run(tmp_path, "benign", positive_class="benign")
    for run_dir, name, class_id in ((default, "malignant", 0), (chosen, "benign", 1)):
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["positive_class"] == name
        for key, want in _test_split_oracle(run_dir, class_id).items():
            assert summary["test"][key] == pytest.approx(want, abs=1e-6), (name, key)
        # danlu eval recomputes the same figures from the finished run
        assert danlu.evaluate(run_dir)["test"]["f1"] == pytest.approx(summary["test"]["f1"], abs=1e-6)
    assert "f1: positive class benign" in format_table({"test": {"f1": 0.5}}, positive_class="benign")


def test_positive_class_on_multiclass_data_is_refused_before_a_run_exists(tmp_path, capsys):
    from danlu import cli

    runs = tmp_path / "runs"
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "iris_perceptron.yaml"
    code = cli.main(["train", str(recipe), "--set", "data.positive_class=setosa",
                     "--set", f"output.runs_dir={runs}"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "data.positive_class applies to binary classification; the data has 3 classes" in err
    assert not runs.exists() or not any(runs.iterdir())
