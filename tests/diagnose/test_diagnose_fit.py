"""Fit and convergence: overfitting, underfitting, convergence, false convergence and a learning
rate off target, each provoked on purpose (and a healthy run that raises no alarm)."""
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import r2_score

from danlu import training as runs
from danlu.diagnose import ConvergenceMonitor, FitMonitor
from diagnose_testkit import events, metrics, run, write_npz


@pytest.fixture(scope="module")
def xor_npz(tmp_path_factory):
    """y = x1 * x2 on a centred square: a straight line explains none of it."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (600, 2))
    return write_npz(tmp_path_factory.mktemp("xor") / "xor.npz", X, X[:, 0] * X[:, 1])


@pytest.fixture(scope="module")
def linear_npz(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (600, 3))
    return write_npz(tmp_path_factory.mktemp("lin") / "lin.npz", X, X @ [1.0, -2.0, 0.5] + 0.1 * rng.standard_normal(600))


def _regression(path, **spec):
    return {"data": {"source": "npy", "path": str(path), "task": "regression"}, "model": {"kind": "linear"},
            "train": {"epochs": 15, "batch_size": 32}, **spec}


def test_large_model_on_a_handful_of_rows_overfits(tmp_path):
    # issue 14: overfitting is told by the generalisation gap, before the validation loss rises
    r = run(tmp_path, data={"split": {"validation": 0.8, "test": 0.1}}, model={"kind": "mlp", "hidden": [256, 256]},
            train={"epochs": 12, "batch_size": 32, "early_stopping": {"enabled": False}})
    found = events(r.path, "overfitting")
    assert len(found) == 1
    e, rows = found[0], metrics(r.path)
    assert e["variant"] == "gap" and e["metric"] == "accuracy"
    now = rows[e["epoch"]]
    assert e["val_value"] == pytest.approx(now["val_accuracy"]) and e["val_loss"] == pytest.approx(now["val_loss"])
    assert e["gap"] == pytest.approx(e["train_value"] - e["val_value"]) and e["gap"] >= 0.05
    assert e["val_loss"] >= 10 * e["train_loss"]
    assert e["epoch"] + 2 - e["began_epoch"] == e["epochs"] >= 3           # monitors.fit.patience epochs in a row
    assert not events(r.path, "underfitting")


def test_linear_model_on_a_nonlinear_target_underfits(tmp_path, xor_npz):
    r = run(tmp_path, **_regression(xor_npz, optimizer={"lr": 0.01}, train={"epochs": 6, "batch_size": 32}))
    found = events(r.path, "underfitting")
    assert len(found) == 1 and found[0]["metric"] == "r2"
    # the r2 it reports is the training split's, as scikit-learn computes it
    model, _, _, recipe = runs.load_model(r.path)
    X, y = runs.prepare_run_data(recipe).splits["train"]
    from danlu.training import model_outputs

    pred = model_outputs(model, X).reshape(-1).numpy()
    assert found[0]["value"] == pytest.approx(r2_score(y.numpy(), pred), abs=1e-5)
    assert found[0]["value"] <= 0.05


def test_a_run_that_converges_says_so_and_nothing_else(tmp_path, linear_npz):
    r = run(tmp_path, **_regression(linear_npz, optimizer={"lr": 0.05}))
    kinds = [e["kind"] for e in events(r.path)]
    assert kinds == ["converged"]
    e = events(r.path, "converged")[0]
    rows = metrics(r.path)
    best_before = min(row["train_loss_running_mean"] for row in rows[:e["epoch"] - 2])
    best_after = min(row["train_loss_running_mean"] for row in rows[e["epoch"] - 2:e["epoch"] + 1])
    assert (best_before - best_after) / best_before < 0.01                      # monitors.convergence.tol
    assert r.summary["test"]["r2"] > 0.95


def test_a_healthy_classifier_raises_no_alarm(tmp_path):
    # issue 14: a run cut off while still improving is told so; this one trains to the end
    r = run(tmp_path, model={"kind": "mlp", "hidden": [64]}, optimizer={"lr": 0.003}, train={"epochs": 12})
    assert [e["kind"] for e in events(r.path) if e["kind"] != "verdict"] == []
    assert r.summary["test"]["accuracy"] > 0.9


def test_a_learning_rate_far_too_low_is_reported(tmp_path):
    r = run(tmp_path, optimizer={"kind": "sgd", "lr": 0.003}, train={"epochs": 8})
    found = events(r.path, "lr_too_low")
    assert len(found) == 1 and 0 < found[0]["per_epoch"] <= 0.02
    losses = [row["train_loss_running_mean"] for row in metrics(r.path)]
    assert all(b < a for a, b in zip(losses, losses[1:]))         # steady ...
    assert losses[-1] > 0.8 * losses[0]                            # ... and slow


# -- the epoch-level checks on made-up loss curves ------------------------------------------------

def _feed(monitor, train, val=None):
    """Run ``on_validation_end`` over per-epoch losses as the loop would; return the kinds recorded."""
    recorded = []
    state = SimpleNamespace(history=[], metrics={}, epoch=0, batch=0, step=0)
    state.record_event = lambda kind, **facts: recorded.append((kind, {"epoch": state.epoch, **facts}))
    for i, loss in enumerate(train):
        state.epoch = i
        state.metrics = {"train_loss_running_mean": loss, "val_loss": None if val is None else val[i]}
        monitor.on_validation_end(state)
        state.history.append(dict(state.metrics))
    return recorded


def test_plateau_that_breaks_is_false_convergence():
    curve = [2.0, 1.9, 1.85, 1.85, 1.849, 1.851, 1.85, 1.2, 0.8, 0.5]
    recorded = _feed(ConvergenceMonitor(tol=0.01, window=3), curve)
    assert [k for k, _ in recorded] == ["plateau", "false_convergence"]
    plateau, broke = recorded[0][1], recorded[1][1]
    assert plateau["level"] > 0.7
    assert broke["plateau_epoch"] == 6 and broke["loss_before"] == pytest.approx(1.849)
    # issue 14 (hysteresis): a break counts once two epochs in a row stay clearly below the plateau
    assert broke["loss_after"] == pytest.approx(0.8) and broke["epoch"] == 8


def test_bouncing_loss_means_the_learning_rate_is_too_high():
    curve = [2.0, 1.0, 1.4, 0.9, 1.5, 1.0, 1.45, 0.95, 1.5]
    recorded = _feed(ConvergenceMonitor(tol=0.01, window=3), curve)
    kinds = [k for k, _ in recorded]
    assert kinds.count("lr_too_high") == 1 and "converged" not in kinds
    assert recorded[kinds.index("lr_too_high")][1]["swing"] > 0.1


def test_noise_at_the_floor_is_not_a_too_high_learning_rate():
    rng = np.random.default_rng(0)
    curve = list(1.0 + 0.03 * rng.standard_normal(12))   # small data: 3 % epoch-to-epoch noise
    assert "lr_too_high" not in [k for k, _ in _feed(ConvergenceMonitor(), [3.0, 1.5] + curve)]


def test_overfitting_needs_the_training_loss_to_keep_falling():
    val = [1.0, 0.6, 0.5, 0.55, 0.6, 0.7]
    assert [k for k, _ in _feed(FitMonitor(patience=3), [1.0, 0.6, 0.4, 0.3, 0.2, 0.1], val)] == ["overfitting"]
    # the same validation curve while the training loss bounces: unstable, not overfit
    assert _feed(FitMonitor(patience=3), [1.0, 0.6, 0.4, 0.6, 0.3, 0.5], val) == []
