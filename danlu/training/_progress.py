"""Progress display: a live bar on a terminal, plain periodic lines in logs and files."""
from __future__ import annotations

import sys
import time

from ._state import State


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """Shows epoch, batch, running loss, last validation metric and learning rate.

    ``mode`` is ``bar`` (redrawn in place, at most ``refresh`` times a second), ``lines`` (one
    line every ``line_every`` seconds and one per epoch) or ``none``; ``auto`` picks ``bar`` on a
    terminal and ``lines`` otherwise. Reading the loss synchronises a GPU, so it is only read
    when something is drawn.
    """

    def __init__(self, mode="auto", stream=None, refresh=0.1, line_every=10.0, primary="accuracy"):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.refresh = refresh
        self.line_every = line_every
        self.primary = primary
        self._last = 0.0
        self._t0 = 0.0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def on_fit_start(self, state: State) -> None:
        self._t0 = time.perf_counter()
        if self.mode != "none":
            n = sum(p.numel() for p in state.model.parameters())
            where = f" -> {state.run_dir}" if state.run_dir else ""
            self._write(f"danlu: training {state.recipe.model.kind} ({n:,} parameters) on {state.device}, "
                        f"{state.recipe.train.epochs} epochs x {state.batches_per_epoch} batches{where}\n")

    def on_epoch_start(self, state: State) -> None:
        self._epoch_t0 = time.perf_counter()

    def _line(self, state: State) -> str:
        epochs = state.recipe.train.epochs
        val = state.history[-1].get(f"val_{self.primary}") if state.history else None
        loss = state.train_loss_running_mean
        parts = [f"epoch {state.epoch + 1}/{epochs}", f"batch {state.batch}/{state.batches_per_epoch}",
                 f"train_loss_running_mean {_fmt(loss)}"]
        if val is not None:
            parts.append(f"last val_{self.primary} {_fmt(val)}")
        parts.append(f"lr {state.lr:.3g}")
        return "  ".join(parts)

    def on_batch_end(self, state: State) -> None:
        if self.mode == "none":
            return
        now = time.perf_counter()
        if self.mode == "bar" and now - self._last >= self.refresh:
            self._last = now
            width = 24
            done = int(width * state.batch / max(1, state.batches_per_epoch))
            bar = "#" * done + "." * (width - done)
            self._write(f"\r[{bar}] {self._line(state)}\x1b[K")
        elif self.mode == "lines" and now - self._last >= self.line_every:
            self._last = now
            self._write(self._line(state) + "\n")

    def on_epoch_end(self, state: State) -> None:
        if self.mode == "none" or not state.history:
            return
        h = state.history[-1]
        shown = [f"epoch {h['epoch']}/{state.recipe.train.epochs}",
                 f"train_loss {_fmt(h.get('train_loss_running_mean'))}"]
        for key in ("val_loss", f"val_{self.primary}"):
            if key in h:
                shown.append(f"{key} {_fmt(h[key])}")
        shown.append(f"lr {h['lr']:.3g}")
        shown.append(f"{time.perf_counter() - self._epoch_t0:.1f}s")
        prefix = "\r" if self.mode == "bar" else ""
        self._write(prefix + "  ".join(shown) + ("\x1b[K" if self.mode == "bar" else "") + "\n")

    def on_fit_end(self, state: State) -> None:
        if self.mode == "none":
            return
        why = f" ({state.stop_reason})" if state.stop_reason else ""
        self._write(f"danlu: finished after {state.epoch} epochs, {state.step} steps, "
                    f"{time.perf_counter() - self._t0:.1f}s{why}\n")

    def show_event(self, event: dict) -> None:
        if self.mode == "none":
            return
        prefix = "\n" if self.mode == "bar" else ""
        msg = event.get("message") or event["kind"]
        self._write(f"{prefix}danlu [{event['kind']}] {msg}\n")
