"""The ``monitors:`` section of a recipe (the training monitors' keys), registered by danlu.diagnose."""
from __future__ import annotations

from ..recipe import NUM, Field, Rule, Section, _f, register_section, sizes, union  # noqa: F401

DIVERGENCE = Section({
    "enabled": _f(bool, True, nullable=False, doc="skip NaN/inf and spiking steps; roll back and lower lr if it recurs"),
    "spike_factor": _f(NUM, 10.0, min=1, min_exclusive=True, nullable=False,
                       doc="a batch loss above this times the recent median is a spike"),
    "window": _f(int, 50, min=2, nullable=False, doc="steps in the running median and in the patience count"),
    "patience": _f(int, 3, min=1, nullable=False, doc="bad steps within the window that trigger a rescue"),
    "lr_factor": _f(NUM, 0.1, min=0, max=1, min_exclusive=True, nullable=False,
                    doc="each rescue multiplies the learning rate by this"),
    "max_rescues": _f(int, 3, min=0, nullable=False, doc="rescues before training stops (rescue_exhausted)"),
    "snapshot_every": _f(int, 100, min=1, nullable=False,
                         doc="good steps between in-memory snapshots a rescue rolls back to"),
})

GRADIENTS = Section({
    "enabled": _f(bool, True, nullable=False, doc="sample per-layer gradient norms (grad_norms.jsonl)"),
    "every": _f(int, 50, min=1, nullable=False, doc="optimizer steps between samples"),
    "window": _f(int, 5, min=1, nullable=False, doc="consecutive samples before vanishing/exploding is reported"),
    "vanish_ratio": _f(NUM, 1e-3, min=0, min_exclusive=True, nullable=False,
                       doc="first layer's gradient norm below this times the last layer's: vanishing"),
    "explode_norm": _f(NUM, 1e3, min=0, min_exclusive=True, nullable=False,
                       doc="total gradient norm above this: exploding"),
})

FIT = Section({
    "enabled": _f(bool, True, nullable=False, doc="report overfitting and underfitting"),
    "patience": _f(int, 3, min=1, nullable=False,
                   doc="epochs of rising validation loss (with falling training loss) that mean overfitting"),
})

CONVERGENCE = Section({
    "enabled": _f(bool, True, nullable=False, doc="report convergence, plateaus and a learning rate off target"),
    "tol": _f(NUM, 0.01, min=0, min_exclusive=True, nullable=False,
              doc="relative change of the training loss over the window below which it has converged"),
    "window": _f(int, 3, min=1, nullable=False, doc="epochs compared by the convergence checks"),
})

MONITORS = Section({
    "divergence": DIVERGENCE,
    "gradients": GRADIENTS,
    "fit": FIT,
    "convergence": CONVERGENCE,
}, doc="training monitors: watch, diagnose and rescue (danlu diagnose RUN reads what they saw)")


register_section("monitors", MONITORS)
