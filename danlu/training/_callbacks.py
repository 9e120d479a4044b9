"""Built-in callbacks: early stopping, checkpoints, metric and event logs."""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import _checkpoint as ck
from ._state import State


def _direction(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    from ..evaluation import metric_direction

    name = monitor[4:] if monitor.startswith("val_") else monitor
    return "min" if name == "loss" else metric_direction(name)


class EarlyStopping:
    """Stop when the monitored validation value has not improved by ``min_delta`` for
    ``patience`` epochs in a row; optionally put the best weights back at the end.

    As Keras' ``EarlyStopping``: with patience 2 and the best value at epoch 3, epochs 4 and 5
    bring no improvement and the run stops after epoch 5 (patience 0 stops after the first
    epoch that does not improve)."""

    name = "early_stopping"

    def __init__(self, monitor="val_loss", mode="auto", patience=10, min_delta=0.0, restore_best=True,
                 enabled=True):
        self.monitor = monitor
        self.mode = _direction(monitor, mode)
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best = restore_best
        self.enabled = enabled
        self.best = None
        self.best_epoch = None
        self.bad_epochs = 0
        self.best_weights = None

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_validation_end(self, state: State) -> None:
        value = state.metrics.get(self.monitor)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, state.epoch + 1, 0
            state.is_best = True
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
        else:
            self.bad_epochs += 1
            state.is_best = False
            if self.enabled and self.bad_epochs >= self.patience:
                state.request_stop(f"early stopping: {self.monitor} did not improve for {self.bad_epochs} "
                                   f"epochs (best {self.best:.4g} at epoch {self.best_epoch})")

    def on_fit_end(self, state: State) -> None:
        if self.enabled and self.restore_best and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)
            state.restored_epoch = self.best_epoch

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "best_weights": self.best_weights}

    def load_state_dict(self, d: dict) -> None:
        self.best, self.best_epoch, self.bad_epochs = d["best"], d["best_epoch"], d["bad_epochs"]
        self.best_weights = d["best_weights"]


class MetricsLog:
    """Append one JSON line per epoch to metrics.jsonl and one per event to events.jsonl."""

    def __init__(self, run_dir: Path):
        self.metrics_path = Path(run_dir) / "metrics.jsonl"
        self.events_path = Path(run_dir) / "events.jsonl"

    def on_fit_start(self, state: State) -> None:
        # After a resume the files may hold lines from past the checkpoint: rewrite them from the
        # restored history so that they read as if the run had never stopped.
        lines = "".join(json.dumps(h) + "\n" for h in state.history)
        ck.atomic_write_text(self.metrics_path, lines)
        ck.atomic_write_text(self.events_path, "".join(json.dumps(e, default=str) + "\n" for e in state.events))
        state.event_sinks.append(self._write_event)

    def _write_event(self, event: dict) -> None:
        with open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, default=str) + "\n")

    def on_epoch_end(self, state: State) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(state.history[-1]) + "\n")


class Checkpointer:
    """Save a checkpoint every N epochs and/or every N optimizer steps; keep the last N and the best."""

    name = "checkpointer"

    def __init__(self, run_dir: Path, every_epochs=1, every_steps=0, keep_last=2, keep_best=True,
                 collect=None):
        self.root = Path(run_dir) / "checkpoints"
        self.every_epochs = every_epochs
        self.every_steps = every_steps
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.collect = collect  # () -> (model_state, state_dict), given by the loop
        self.best_name = None
        self._last_step_saved = None
        self._writing = None   # the checkpoint write in flight (ck.BackgroundWrite)

    def save(self, state: State, is_best: bool = False) -> Path:
        """Copy the run's state now and write it on a background thread (:class:`ck.BackgroundWrite`):
        the fsynced, checksummed commit does not stall training. At most one write is in flight,
        so a save first waits for the one before and raises its error (a full disk, say)."""
        self.wait()
        snap = ck.snapshot(self.root, state.step, *self.collect())   # copies: the next step changes the originals
        self._last_step_saved = state.step
        if is_best and self.keep_best:
            self.best_name = ck.checkpoint_name(state.step)
        keep = {self.best_name} if self.best_name else set()
        root, keep_last = self.root, self.keep_last

        def write() -> None:
            ck.write_snapshot(snap)
            ck.prune_checkpoints(root, keep_last, keep)

        self._writing = ck.BackgroundWrite(root, write)
        return root / ck.checkpoint_name(state.step)

    def wait(self) -> None:
        """Until the checkpoint in flight (if any) is on disk; raises the error its write met."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.wait()

    def on_fit_start(self, state: State) -> None:
        # a run that raised in this process may still be writing into this folder (a resume or
        # train --overwrite right after it): its write lands first, this run's replace it
        ck.wait_for_writes(self.root)

    def on_fit_end(self, state: State) -> None:
        self.wait()   # the run's last checkpoint is committed before its final files are written

    def on_batch_end(self, state: State) -> None:
        # only at an optimizer-step boundary: no half-accumulated gradients are in flight
        if (self.every_steps and state.step and state.step % self.every_steps == 0
                and state.stepped and state.batch < state.batches_per_epoch
                and state.step != self._last_step_saved):
            self.save(state)

    def on_epoch_end(self, state: State) -> None:
        last = state.stop_reason is not None or state.epoch >= state.recipe.train.epochs
        if (self.every_epochs and state.epoch % self.every_epochs == 0) or last:
            self.save(state, is_best=state.is_best)

    def state_dict(self) -> dict:
        return {"best_name": self.best_name}

    def load_state_dict(self, d: dict) -> None:
        self.best_name = d.get("best_name")
