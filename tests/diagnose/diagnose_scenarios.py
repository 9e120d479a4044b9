"""Provoked causes: small runs that each go wrong in one known way (and one healthy run).

Shared by tests/diagnose/test_scenarios.py (one seed, asserting each verdict) and
benchmarks/bench_diagnosis.py (three seeds, a confusion table). Every scenario is a recipe
(``spec(seed, root)``) and the cause danlu must name. Causes that are one family in the verdict
(the kinds of a blow-up) are told apart only by ``family``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diagnose_testkit import poisoned_model, write_npz

# The verdict causes of one blow-up family (what the monitors saw first decides which is named).
BLOW_UP = ("collapse", "divergence", "rescue", "rescue_exhausted")
# Directions of cure that each cause rules out: a proposal in one of these contradicts the cause.
CONTRADICTS = {
    "blow_up": {"lr_up"}, "lr_too_high": {"lr_up"}, "exploding_gradient": {"lr_up"},
    "lr_too_low": {"lr_down"}, "overfitting": {"capacity_up", "epochs_up"}, "no_signal": {"capacity_up", "epochs_up"},
    "underfitting": {"regularise", "capacity_down", "epochs_down"}, "still_improving": {"regularise", "epochs_down"},
    "vanishing_gradient": {"regularise"}, "unscaled_features": {"lr_up"},
}


def family(cause: str) -> str:
    return "blow_up" if cause in BLOW_UP else cause


@dataclass
class Scenario:
    name: str
    cause: str                       # the verdict expected (a family name for blow-ups)
    spec: object                     # (seed, root) -> keyword sections for diagnose_testkit.run
    healthy: str | None = None       # for blow-ups: the scenario of the same optimizer at a sane rate
    tags: dict = field(default_factory=dict)


def _digits(**sections):
    def spec(seed, root):
        return {"seed": seed, **{k: v(seed, root) if callable(v) else v for k, v in sections.items()}}
    return spec


def _xor(seed, root):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (600, 2))
    path = write_npz(Path(root) / f"xor{seed}.npz", X, X[:, 0] * X[:, 1])
    return {"source": "npy", "path": str(path), "task": "regression"}


def _noise_labels(seed, root):
    """Features that say nothing about the label: 300 rows, 3 classes drawn at random."""
    rng = np.random.default_rng(100 + seed)
    X = rng.standard_normal((300, 16))
    path = write_npz(Path(root) / f"noise{seed}.npz", X, rng.integers(0, 3, 300))
    return {"source": "npy", "path": str(path), "task": "classification"}


def _huge_target(seed, root):
    """A linear target in the thousands, learned unscaled: gradients in the thousands."""
    rng = np.random.default_rng(300 + seed)
    X = rng.standard_normal((600, 8))
    y = 3000 * (X @ rng.standard_normal(8)) + 5000
    path = write_npz(Path(root) / f"huge{seed}.npz", X, y)
    return {"source": "npy", "path": str(path), "task": "regression", "scale_target": False}


MLP = {"kind": "mlp", "hidden": [64]}
OFF = {"early_stopping": {"enabled": False}}

SCENARIOS = [
    Scenario("healthy", "healthy", _digits(model=MLP, optimizer={"kind": "adam", "lr": 0.003},
                                           train={"epochs": 12})),
    Scenario("lr_high_adam", "blow_up", _digits(model=MLP, optimizer={"kind": "adam", "lr": 3.0},
                                                train={"epochs": 12}), healthy="healthy"),
    Scenario("healthy_sgd", "healthy", _digits(model=MLP, optimizer={"kind": "sgd", "lr": 0.1, "momentum": 0.9},
                                               train={"epochs": 12})),
    Scenario("lr_high_sgd", "blow_up", _digits(model=MLP, optimizer={"kind": "sgd", "lr": 100.0, "momentum": 0.9},
                                               train={"epochs": 12}), healthy="healthy_sgd"),
    Scenario("healthy_rmsprop", "healthy", _digits(model=MLP, optimizer={"kind": "rmsprop", "lr": 0.001},
                                                   train={"epochs": 12})),
    Scenario("lr_high_rmsprop", "blow_up", _digits(model=MLP, optimizer={"kind": "rmsprop", "lr": 1.0},
                                                   train={"epochs": 12}), healthy="healthy_rmsprop"),
    Scenario("lr_too_low", "lr_too_low", _digits(model=MLP, optimizer={"kind": "sgd", "lr": 0.003},
                                                 train={"epochs": 8})),
    Scenario("too_few_epochs", "still_improving", _digits(model=MLP, optimizer={"kind": "adam", "lr": 0.003},
                                                          train={"epochs": 3})),
    Scenario("overfit_gap", "overfitting", _digits(
        data={"split": {"validation": 0.8, "test": 0.1}}, model={"kind": "mlp", "hidden": [256, 256]},
        train={"epochs": 12, "batch_size": 32, **OFF})),
    Scenario("overfit_rising", "overfitting", _digits(
        data={"source": "sklearn", "name": "breast_cancer"}, model={"kind": "mlp", "hidden": [256, 256]},
        optimizer={"kind": "adam", "lr": 0.003}, train={"epochs": 15, **OFF})),
    Scenario("underfit_capacity", "underfitting", _digits(
        data=_xor, model={"kind": "linear"}, optimizer={"lr": 0.01}, train={"epochs": 6, "batch_size": 32})),
    Scenario("vanishing", "vanishing_gradient", _digits(
        model={"kind": "mlp", "hidden": [32] * 6, "activation": "sigmoid"}, train={"epochs": 2},
        monitors={"gradients": {"every": 4, "window": 3}})),
    Scenario("exploding", "exploding_gradient", _digits(
        data=_huge_target, model={"kind": "linear"}, optimizer={"kind": "sgd", "lr": 1e-4},
        train={"epochs": 4, "grad_clip": 1.0}, monitors={"gradients": {"every": 5}})),
    Scenario("nan_batch", "nan_loss", _digits(model=poisoned_model(nan_loss_at=[5]))),
    Scenario("no_signal", "no_signal", _digits(
        data=_noise_labels, model={"kind": "mlp", "hidden": [256, 256]}, optimizer={"kind": "adam", "lr": 0.01},
        train={"epochs": 15, "batch_size": 32, **OFF})),
    Scenario("unscaled", "unscaled_features", _digits(
        data={"source": "sklearn", "name": "breast_cancer", "scale": "none"}, model=MLP,
        optimizer={"kind": "sgd", "lr": 0.01}, train={"epochs": 6})),
]

BY_NAME = {s.name: s for s in SCENARIOS}
