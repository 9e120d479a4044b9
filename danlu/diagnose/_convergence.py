"""Convergence, read from the training loss of each epoch (``train_loss_running_mean``).

* flat: the best loss of the last ``window`` epochs improved on the best before them by less
  than ``tol`` (relative), and the last epochs stay near it. Flat far below the first epoch's
  loss is ``converged``; flat while still high is a ``plateau``.
* false convergence: after a flat stretch the loss fell clearly again (by ``5 * tol``, at
  least 2 %): it had looked done, and was not.
* learning rate too high: the loss keeps swinging up and down between epochs (most of the
  epoch-to-epoch differences change sign), by more than ``10 * tol`` an epoch on average, with
  less net progress than one such swing.
* learning rate too low: from the first epoch on, the loss fell in nearly every epoch, but by
  at most 2 % an epoch, without slowing down and without converging.

At the end of training one more question is asked: was the model finished?

* still improving: the epochs ran out while the best training loss of the last ``window``
  epochs was still clearly (5 %, at least ``5 * tol``) below the best before them, the
  validation loss had not turned up and the validation metric still rose (2 points): train
  longer. (A cross-entropy can fall towards zero for ever; the metric says whether it matters.)
* stopped too early: early stopping ended the run while the training loss still stood near its
  first-epoch level, or was still falling that fast with the validation metric still rising.

The checks run in ``on_validation_end`` (not at epoch end) so that the epoch's checkpoint
holds what they saw; each is reported once per run, except flat stretches, which are
reported again after one has broken. Noisy small-data curves must not flip the verdict back
and forth (hysteresis): a flat stretch only counts as broken when two epochs in a row stay
clearly below it, a break doubles the flat window needed next time, and after one break the
next flat stretch is final. Epochs before the last rescue are left out.
"""
from __future__ import annotations

from ._common import finite, report, since_rescue, trend

_STUCK = 0.7      # flat at or above this fraction of the first epoch's loss: a plateau, not convergence
_SLOW = 0.02      # largest relative improvement per epoch that still counts as slow
_MONOTONE = 0.9   # share of epochs that must improve for a "steady" descent
_SWING_SIGNS = 0.6  # share of sign changes among consecutive differences that means oscillation
_SWING = 10       # mean swing per epoch, in units of tol, that is more than noise
_SETTLED = 10     # a flat stretch keeps its mean within this many tol of the best loss
_FLOOR = 0.05     # a loss below this fraction of the first epoch's: its swings are not judged
_VAL_FLAT = 0.05  # a validation loss within this (relative) range over the span does not move
_MAX_BREAKS = 1   # false convergences after which a flat stretch, once reported, is final
_STILL = 0.05     # the best loss of the last window this much below the best before it: still improving ...
_METRIC_GAIN = 0.02   # ... and the validation metric this much above its best before (a loss can fall for ever)


class ConvergenceMonitor:
    """Report convergence, plateaus, false convergence and a learning rate far off target."""

    name = "monitor_convergence"

    def __init__(self, tol: float = 0.01, window: int = 3, lang: str = "en"):
        self.tol = tol
        self.window = window
        self.lang = lang
        self.flat_epoch = None     # 1-based epoch at which the current flat stretch was reported
        self.flat_loss = None
        self.swing_reported = False
        self.slow_reported = False
        self.breaks = 0            # false convergences reported
        self.below = 0             # epochs in a row clearly below the flat stretch
        self.start = 0             # first history index judged (after the last rescue)

    @property
    def span(self) -> int:
        """Epochs looked at by the learning-rate checks."""
        return max(2 * self.window + 1, 5)

    def on_validation_end(self, state) -> None:
        start = since_rescue(state)
        if start != self.start:   # a rescue: the stretch judged before it is history
            self.start, self.flat_epoch, self.flat_loss, self.below = start, None, None, 0
        losses = [h.get("train_loss_running_mean") for h in state.history[start:]]
        losses.append(state.metrics.get("train_loss_running_mean"))
        if not all(finite(x) for x in losses) or losses[0] <= 0:
            return  # a blown-up epoch is the divergence monitor's business
        if self.breaks < _MAX_BREAKS or self.flat_loss is None:
            self._check_flat(state, losses)
        if not self.swing_reported:
            val = [h.get("val_loss") for h in state.history[start:]] + [state.metrics.get("val_loss")]
            self._check_swing(state, losses, val)
        if not self.slow_reported and self.flat_loss is None:
            self._check_slow(state, losses)

    # -- checks ----------------------------------------------------------------------------------

    def _check_flat(self, state, losses: list) -> None:
        if self.flat_loss is not None:
            drop = max(5 * self.tol, 0.02)
            self.below = self.below + 1 if losses[-1] < self.flat_loss * (1 - drop / 2) else 0
            if self.below >= 2 and losses[-1] < self.flat_loss * (1 - drop):
                self.breaks += 1
                report(state, "false_convergence", self.lang, plateau_epoch=self.flat_epoch,
                       loss_before=self.flat_loss, loss_after=losses[-1])
                self.flat_epoch = self.flat_loss = None
                self.below = 0
            return
        window = self.window * (1 + self.breaks)
        if len(losses) <= window:
            return
        # Judged on the best loss, not the last: epoch losses of small data sets are noisy, and
        # noise alone moves the last value by more than tol.
        recent, earlier = losses[-window:], losses[:-window]
        best_before, best_now = min(earlier), min(recent)
        gain = (best_before - best_now) / best_before
        settled = sum(recent) / len(recent) <= min(best_before, best_now) * (1 + _SETTLED * self.tol)
        if gain >= self.tol or not settled:
            return
        best = min(best_before, best_now)
        level = best / losses[0]
        # a generative model's loss keeps a large irreducible part: its level says nothing
        kind = "plateau" if level >= _STUCK and not _objective(state) else "converged"
        report(state, kind, self.lang, change=max(gain, 0.0), loss=best, window=window, level=level)
        self.flat_epoch, self.flat_loss = self.start + len(losses), best

    def _check_swing(self, state, losses: list, val: list) -> None:
        if len(losses) < self.span:
            return
        # A training loss that bounces from batch noise while the validation loss trends down,
        # is at its best now, does not move or moves smoothly is noise at the floor, not steps
        # that overshoot: those shake the validation loss too.
        val = val[-self.span:]
        if all(finite(v) for v in val):
            flat = max(val) - min(val) <= _VAL_FLAT * sum(val) / len(val)
            if trend(val) < 0 or val[-1] <= min(val) or flat or not self._swings(val, _SWING):
                return
        seg = losses[-self.span:]
        if sum(seg) / len(seg) < _FLOOR * losses[0]:
            return   # swings of a loss near zero are relative noise at the floor
        diffs = [b - a for a, b in zip(seg, seg[1:])]
        changes = sum(1 for a, b in zip(diffs, diffs[1:]) if a * b < 0)
        swing = sum(abs(d) for d in diffs) / len(diffs) / (sum(seg) / len(seg))
        net = abs(seg[-1] - seg[0]) / seg[0]
        if self._swings(seg, _SWING) and net < swing:
            self.swing_reported = True
            report(state, "lr_too_high", self.lang, changes=changes, epochs=len(seg), swing=swing, net=net)

    def _swings(self, seg: list, size: float) -> bool:
        """Most epoch-to-epoch differences change sign, by more than ``size * tol`` on average."""
        diffs = [b - a for a, b in zip(seg, seg[1:])]
        changes = sum(1 for a, b in zip(diffs, diffs[1:]) if a * b < 0)
        swing = sum(abs(d) for d in diffs) / len(diffs) / (sum(seg) / len(seg))
        return changes >= _SWING_SIGNS * (len(diffs) - 1) and swing > size * self.tol

    def _check_slow(self, state, losses: list) -> None:
        if len(losses) < self.span:
            return
        gains = [(a - b) / a for a, b in zip(losses, losses[1:])]
        steady = sum(g > 0 for g in gains) >= _MONOTONE * len(gains)
        small = max(gains) <= _SLOW
        half = len(gains) // 2
        early, late = sum(gains[:half]) / half, sum(gains[half:]) / (len(gains) - half)
        not_slowing = late >= 0.5 * early
        per_epoch = sum(gains) / len(gains)
        if steady and small and not_slowing and per_epoch > self.tol / self.window:
            self.slow_reported = True
            report(state, "lr_too_low", self.lang, per_epoch=per_epoch, epochs=len(losses))

    # -- the end ---------------------------------------------------------------------------------

    def on_fit_end(self, state) -> None:
        if state.diverged:
            return
        rows = state.history[self.start:]
        losses = [h.get("train_loss_running_mean") for h in rows]
        if len(losses) < 2 or not all(finite(x) and x > 0 for x in losses):
            return
        k = min(self.window, len(losses) - 1)
        before, recent = min(losses[:-k]), min(losses[-k:])
        gain = (before - recent) / before
        falling = gain >= max(_STILL, 5 * self.tol) and losses[-1] <= before
        stuck = recent >= _STUCK * losses[0]
        reason = state.stop_reason or ""
        facts = {"epoch": state.epoch - 1, "epochs": state.epoch, "window": k, "gain": max(gain, 0.0),
                 "loss": recent}
        if not reason and falling and _val_not_rising(rows, k) and _metric_rising(rows, k):
            report(state, "still_improving", self.lang, **facts)
        elif reason.startswith("early stopping") and (stuck or (falling and _metric_rising(rows, k))):
            report(state, "stopped_too_early", self.lang, **facts)

    # -- checkpoints -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"flat_epoch": self.flat_epoch, "flat_loss": self.flat_loss, "swing_reported": self.swing_reported,
                "slow_reported": self.slow_reported, "breaks": self.breaks, "below": self.below, "start": self.start}

    def load_state_dict(self, d: dict) -> None:
        self.flat_epoch, self.flat_loss = d["flat_epoch"], d["flat_loss"]
        self.swing_reported, self.slow_reported = d["swing_reported"], d["slow_reported"]
        self.breaks, self.below, self.start = d.get("breaks", 0), d.get("below", 0), d.get("start", 0)


def _objective(state) -> bool:
    from ..training._objective import is_objective_model

    model = getattr(state, "model", None)
    return model is not None and is_objective_model(model)


def _metric_rising(rows: list, k: int) -> bool:
    """The validation metric (accuracy, r2) of the last ``k`` epochs beat its best before them by
    ``_METRIC_GAIN`` (True where there is none: the losses alone decide)."""
    for key in ("val_accuracy", "val_r2"):
        values = [h.get(key) for h in rows]
        if all(finite(v) for v in values):
            return max(values[-k:]) >= max(values[:-k]) + _METRIC_GAIN
    return True


def _val_not_rising(rows: list, k: int) -> bool:
    """The validation loss of the last ``k`` epochs reached at least its best before them (True
    where there is no validation loss)."""
    val = [h.get("val_loss") for h in rows]
    if not all(finite(v) for v in val):
        return True
    return min(val[-k:]) <= min(val[:-k])
