"""The one state object and the small, closed set of events of the training loop.

Callbacks are structural: any object with some of the ``on_<event>(state)`` methods is a
callback; only the methods it defines are ever called (so empty hooks cost nothing on the hot
path). There is one way to stop and one way to skip:

* ``state.request_stop("why")`` ends training after the current batch (or epoch hook);
* ``state.skip_step = True`` in ``on_backward_end`` drops this step's gradients instead of
  applying them (the divergence monitor uses it).

A callback that must survive a resume defines ``state_dict()`` / ``load_state_dict(d)`` and a
unique ``name``; tensors may appear anywhere in its state dict (they go to safetensors).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Event(str, enum.Enum):
    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BACKWARD_END = "backward_end"      # gradients ready, optimizer step not yet taken
    BATCH_END = "batch_end"
    VALIDATION_END = "validation_end"  # state.metrics holds this epoch's figures
    EPOCH_END = "epoch_end"            # after the epoch counter moved on (checkpoint point)
    FIT_END = "fit_end"


@dataclass
class State:
    """Everything the loop and its callbacks share. Read it; write only what your hook owns."""

    recipe: Any
    info: Any
    model: Any
    optimizer: Any
    schedule: Any
    loss_fn: Any
    loss_kind: str
    device: Any
    pipeline: Any = None
    run_dir: Path | None = None
    splits: dict = field(default_factory=dict)
    step_loss: Any = None          # (xb, yb) -> loss tensor; None: loss_fn(model(xb), yb). Distillation
                                   # replaces it (its loss needs the teacher's outputs on the same batch).

    # position
    epoch: int = 0                 # epochs completed
    batch: int = 0                 # batches done in the current epoch
    step: int = 0                  # optimizer steps taken in total
    steps_per_epoch: int = 0
    batches_per_epoch: int = 0

    # this batch
    batch_loss: Any = None         # the loss tensor of the last batch (not yet synchronised)
    skip_step: bool = False
    grad_norm: float | None = None  # set when clipping by norm computed it

    # this epoch
    loss_sum: Any = 0.0            # sum of batch losses in the current epoch (a tensor while training)
    loss_count: int = 0
    metrics: dict = field(default_factory=dict)   # last epoch: train_loss_running_mean, val_loss, val_*, lr
    history: list = field(default_factory=list)   # one metrics dict per finished epoch

    stop_reason: str | None = None
    events: list = field(default_factory=list)    # diagnoses and rescues, as they happened
    extra: dict = field(default_factory=dict)     # room for callbacks to share facts

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def train_loss_running_mean(self) -> float | None:
        return float(self.loss_sum) / self.loss_count if self.loss_count else None

    def record_event(self, kind: str, **facts) -> dict:
        """Append a diagnosis or rescue to the run's event log (and to ``state.events``)."""
        event = {"kind": kind, "epoch": self.epoch, "batch": self.batch, "step": self.step, **facts}
        self.events.append(event)
        for cb in self.extra.get("event_sinks", ()):
            cb(event)
        return event


class CallbackList:
    """Dispatches events to the callbacks that define a hook for them, in the given order."""

    def __init__(self, callbacks):
        self.callbacks = [cb for cb in callbacks if cb is not None]
        self._hooks = {
            ev: [getattr(cb, f"on_{ev.value}") for cb in self.callbacks if callable(getattr(cb, f"on_{ev.value}", None))]
            for ev in Event
        }

    def fire(self, event: Event, state: State) -> None:
        for hook in self._hooks[event]:
            hook(state)

    def has(self, event: Event) -> bool:
        return bool(self._hooks[event])

    def stateful(self):
        return [cb for cb in self.callbacks if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict")]

    def describe(self) -> list[str]:
        """Names of callbacks per event, for ``danlu loop``."""
        lines = []
        for ev in Event:
            names = [type(h.__self__).__name__ for h in self._hooks[ev]]
            lines.append(f"{ev.value:16s} {', '.join(names) if names else '-'}")
        return lines
