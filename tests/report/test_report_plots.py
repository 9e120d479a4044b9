"""The plot functions on plain data, including the awkward cases a run can log."""
import numpy as np
import pytest
from report_testkit import PNG_SIGNATURE, open_png

import danlu.report as report


def _png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return open_png(data)


def test_binary_and_multiclass_classification_plots(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    proba = np.stack([1 - p1, p1], axis=1)
    for name, fn in (("roc", report.plot_roc), ("pr", report.plot_pr)):
        assert fn(y, proba, ["no", "yes $"], tmp_path / f"{name}.png") == tmp_path / f"{name}.png"
        _png(tmp_path / f"{name}.png")
    _png(report.plot_confusion(y, proba.argmax(1), ["no", "yes"], tmp_path / "cm.png"))
    # many classes, one of them absent from y: no legend overflow, no crash
    y = rng.integers(0, 14, 300)
    proba = rng.dirichlet(np.ones(15), 300)
    classes = [f"c{i}" for i in range(15)]
    _png(report.plot_roc(y, proba, classes, tmp_path / "roc15.png"))
    _png(report.plot_confusion(y, proba, classes, tmp_path / "sub" / "cm15.png"))  # scores: arg-max taken


def test_regression_plots_single_and_multi_output(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.normal(size=(50, 2))
    _png(report.plot_residuals(y[:, 0], y[:, 0] + 0.1, tmp_path / "res.png"))
    _png(report.plot_predicted_vs_true(y, y * 0.9, tmp_path / "pvt.png"))
    with pytest.raises(Exception, match="one prediction per target"):
        report.plot_residuals(y, y[:, 0], tmp_path / "bad.png")


def test_training_plots_survive_a_blow_up(tmp_path):
    """NaN / inf losses and norms logged as strings ("inf", "nan") become gaps, not errors."""
    history = [{"epoch": 1, "step": 5, "train_loss_running_mean": 2.0, "lr": 0.1, "val_loss": 1.5},
               {"epoch": 2, "step": 10, "train_loss_running_mean": float("nan"), "lr": 0.01,
                "val_loss": float("inf")},
               {"epoch": 3, "step": 15, "train_loss_running_mean": 0.01, "lr": 0.01, "val_loss": 0.02}]
    _png(report.plot_training_curves(history, tmp_path / "curves.png", primary="accuracy"))
    _png(report.plot_lr(history, tmp_path / "lr.png", planned=([0, 5, 10, 15], [0.1, 0.1, 0.01, 0.01])))
    rows = [{"step": 0, "total": 1.0, "layers": {"a": 0.5, "b": 0.8}},
            {"step": 1, "total": "inf", "layers": {"a": "nan", "b": "inf"}},
            {"step": 2, "total": 0.0, "layers": {"a": 0.0, "b": 0.0}}]
    _png(report.plot_grad_norms(rows, tmp_path / "g.png"))
