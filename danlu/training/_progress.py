"""Progress display: a live bar on a terminal, plain periodic lines in logs and files.

The bar is tqdm's: it is sized to the terminal (and follows a resize), redrawn in place and shows
an ETA. Nothing it draws is wider than the terminal, so an 80-column window keeps one bar line
instead of a stack of wrapped ones. Off a terminal (a file, a CI log) danlu writes plain lines.
"""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time

from ._state import State

# epoch 3/20 |#######      | 23/50 eta 00:01 running_loss 0.1234 val_accuracy 0.9123 lr 0.001
# The ETA comes before the metrics so that a narrow terminal trims the metrics first.
BAR_FORMAT = "{desc} |{bar:16}| {n_fmt}/{total_fmt} eta {remaining}{postfix}"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Shows epoch, batch, running loss, last validation metric, learning rate and an ETA.

    ``mode`` is ``bar`` (a tqdm bar redrawn in place, at most ``refresh`` times a second),
    ``lines`` (one line every ``line_every`` seconds and one per epoch) or ``none``; ``auto`` picks
    ``bar`` on a terminal and ``lines`` otherwise. Reading the loss synchronises a GPU, so it is
    only read when something is drawn.
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
        self._epoch_t0 = 0.0
        self._bar = None
        self._epoch_seconds: list[float] = []

    # -- output ------------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if self.mode == "bar" and text.startswith("\r") and "\n" not in text:
            # a line a subclass redraws by hand (the RL display): cut to the window, never wrapped
            body = text[1:].removesuffix("\x1b[K")
            text = "\r" + body[:max(1, self._width() - 1)] + "\x1b[K"
        self.stream.write(text)
        self.stream.flush()

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return shutil.get_terminal_size().columns

    def _say(self, text: str) -> None:
        """A whole line; on a terminal it is folded to the window's width (and the bar kept below)."""
        if self.mode == "bar":
            text = "\n".join(textwrap.wrap(text, max(20, self._width()), subsequent_indent="  ",
                                           break_on_hyphens=False)) or text
            if self._bar is not None:
                self._bar.clear()
                self._write(text + "\n")
                self._bar.refresh()
                return
        self._write(text + "\n")

    # -- hooks -------------------------------------------------------------------------------------

    def on_fit_start(self, state: State) -> None:
        self._t0 = time.perf_counter()
        self._epoch_seconds = []
        if self.mode != "none":
            n = sum(p.numel() for p in state.model.parameters())
            where = f" -> {state.run_dir}" if state.run_dir else ""
            self._say(f"danlu: training {state.recipe.model.kind} ({n:,} parameters) on {state.device}, "
                      f"{state.recipe.train.epochs} epochs x {state.batches_per_epoch} batches{where}")

    def on_epoch_start(self, state: State) -> None:
        self._epoch_t0 = time.perf_counter()
        if self.mode == "bar":
            from tqdm import tqdm

            self._close_bar()
            self._bar = tqdm(total=state.batches_per_epoch, initial=state.batch, file=self.stream,
                             desc=f"epoch {state.epoch + 1}/{state.recipe.train.epochs}", leave=False,
                             dynamic_ncols=True, mininterval=self.refresh, bar_format=BAR_FORMAT)

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

    def _postfix(self, state: State) -> str:
        parts = [f"running_loss {_fmt(state.train_loss_running_mean)}"]
        val = state.history[-1].get(f"val_{self.primary}") if state.history else None
        if val is not None:
            parts.append(f"val_{self.primary} {_fmt(val)}")
        parts.append(f"lr {state.lr:.3g}")
        return " ".join(parts)

    def on_batch_end(self, state: State) -> None:
        if self.mode == "none":
            return
        now = time.perf_counter()
        if self.mode == "bar":
            if self._bar is None:
                return
            if now - self._last >= self.refresh:   # read the loss (a GPU sync) only when it is shown
                self._last = now
                self._bar.set_postfix_str(self._postfix(state), refresh=False)
            self._bar.update(state.batch - self._bar.n)
        elif self.mode == "lines" and now - self._last >= self.line_every:
            self._last = now
            self._write(self._line(state) + "\n")

    def _fit_eta(self, state: State) -> str | None:
        """Time left for the epochs still to run, at the mean pace of the epochs seen so far."""
        left = state.recipe.train.epochs - state.epoch
        if not self._epoch_seconds or left <= 0 or state.stop_reason:
            return None
        return _clock(left * sum(self._epoch_seconds) / len(self._epoch_seconds))

    def on_epoch_end(self, state: State) -> None:
        if self.mode == "none" or not state.history:
            return
        self._epoch_seconds.append(time.perf_counter() - self._epoch_t0)
        self._close_bar()
        h = state.history[-1]
        shown = [f"epoch {h['epoch']}/{state.recipe.train.epochs}",
                 f"train_loss {_fmt(h.get('train_loss_running_mean'))}"]
        for key in ("val_loss", f"val_{self.primary}"):
            if key in h:
                shown.append(f"{key} {_fmt(h[key])}")
        shown.append(f"lr {h['lr']:.3g}")
        shown.append(f"{self._epoch_seconds[-1]:.1f}s")
        eta = self._fit_eta(state)
        if eta is not None:
            shown.append(f"eta {eta}")
        self._say("  ".join(shown))

    def on_fit_end(self, state: State) -> None:
        self._close_bar()
        if self.mode == "none":
            return
        why = f" ({state.stop_reason})" if state.stop_reason else ""
        self._say(f"danlu: finished after {state.epoch} epochs, {state.step} steps, "
                  f"{time.perf_counter() - self._t0:.1f}s{why}")

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()   # leave=False: the line is cleared, the epoch line takes its place
            self._bar = None

    def show_event(self, event: dict) -> None:
        if self.mode == "none":
            return
        msg = event.get("message") or event["kind"]
        if self.mode == "bar" and self._bar is None:
            self._write("\r\x1b[K")   # clear a bar a subclass drew by hand (RL) before the message
        self._say(f"danlu [{event['kind']}] {msg}")
