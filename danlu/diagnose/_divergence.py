"""炸炉: catch a blow-up as it happens, skip the bad steps, and rescue the run if it recurs.

Per optimizer step the cost is one read of the loss (one host sync on a GPU, as a grad scaler
does) and a comparison. Gradients are not normed every step: a fused norm of all gradients
costs about as much as 3-5 % of a small model's CPU step. Instead

* the gradient monitor's sampled norms are checked when it has taken them (same step);
* a non-finite gradient that slips through makes the weights non-finite, so the next loss is
  NaN; on a bad loss the weights are checked and, if they are poisoned, rolled back at once.

A rescue restores the last good snapshot of weights and optimizer state (kept in memory and in
the checkpoints), lowers the learning rate through the schedule, and remembers the offending
(epoch, batch) pairs, whose steps are skipped should the same batches come again. The data
position is not rewound: training goes on from the batch after the blow-up.

Snapshots are taken only of weights that a training loss has vouched for: at a good step,
before its update is applied, every ``snapshot_every`` good steps and at the first good step
after each epoch end.
"""
from __future__ import annotations

import math
from collections import deque

import torch

from ._common import clone_tree, params_finite, report

_REFRESH = 10          # good steps between recomputations of the spike threshold (after the first ones)
_FLOOR = 0.1           # spikes are judged against at least this fraction of the early loss level
_MAX_LOGGED = 25       # bad steps recorded one by one; later ones are only counted


class DivergenceMonitor:
    """Skip NaN/inf and spiking steps; roll back, lower the learning rate and go on if they recur."""

    name = "monitor_divergence"

    def __init__(self, spike_factor: float = 10.0, window: int = 50, patience: int = 3, lr_factor: float = 0.1,
                 max_rescues: int = 3, snapshot_every: int = 100, lang: str = "en"):
        self.spike_factor = spike_factor
        self.window = window
        self.patience = patience
        self.lr_factor = lr_factor
        self.max_rescues = max_rescues
        self.snapshot_every = snapshot_every
        self.lang = lang
        self._reset_state()

    def _reset_state(self) -> None:
        self.ticks = 0                             # steps attempted, skipped ones included
        self.losses = deque(maxlen=self.window)    # recent good batch losses
        self.threshold = math.inf                  # spike threshold, refreshed every _REFRESH good steps
        self.reference = None                      # median loss of the first full window
        self.good = 0                              # good steps seen
        self.bad_ticks = deque()                   # ticks of the recent bad steps ...
        self.bad_where = deque()                   # ... and their (epoch, batch)
        self.bad_total = 0
        self.rescues = 0
        self.skip_batches: set[tuple[int, int]] = set()
        self.snapshot = None                       # {"step", "model", "optimizer"}
        self._snapshot_layout = None               # what the snapshot's buffers fit (see _take_snapshot)
        self.since_snapshot = 0
        self.snapshot_due = False                  # an epoch ended: snapshot at the next good step

    # -- hooks ---------------------------------------------------------------------------------

    def on_fit_start(self, state) -> None:
        if self.snapshot is None:  # the initial weights are good by definition
            self._take_snapshot(state)

    def on_backward_end(self, state) -> None:
        self.ticks += 1
        # (step, total norm) when the gradient monitor sampled this step; taken out at once, so
        # that no later try at the same step reads it again
        sampled = state.extra.pop("grad_total", None)
        if self.skip_batches and (state.epoch, state.batch) in self.skip_batches:
            state.skip_step = True
            return
        loss = float(state.batch_loss)
        if not math.isfinite(loss):
            self._bad_step(state, "nan_loss", what="loss", value=loss)
        elif loss > self.threshold:
            self._bad_step(state, "loss_spike", loss=loss)
        elif sampled is not None and sampled[0] == state.step and not math.isfinite(sampled[1]):
            self._bad_step(state, "nan_loss", what="gradients", value=sampled[1])
        else:
            self._good_step(state, loss)

    def on_validation_end(self, state) -> None:
        # The end of an epoch is a natural snapshot point, but no loss has vouched for the
        # weights the epoch's last step made. The first batch of the next epoch sees exactly
        # these weights: the snapshot is taken there, if its loss is good.
        self.snapshot_due = True

    # -- steps -----------------------------------------------------------------------------------

    def _good_step(self, state, loss: float) -> None:
        self.losses.append(loss)
        self.good += 1
        # Every step at first: a blow-up in the very first steps must be caught too.
        if self.good <= _REFRESH or self.good % _REFRESH == 0:
            self._refresh_threshold()
        # The weights of this step produced a sane loss, so they are a safe point to return to.
        self.since_snapshot += 1
        if self.snapshot_due or self.since_snapshot >= self.snapshot_every:
            self._take_snapshot(state)

    def _refresh_threshold(self) -> None:
        median = _median(self.losses)
        if self.reference is None and len(self.losses) == self.window:
            self.reference = median
        level = max(median, _FLOOR * self.reference) if self.reference is not None else median
        self.threshold = self.spike_factor * level if level > 0 else math.inf

    def _bad_step(self, state, kind: str, **facts) -> None:
        state.skip_step = True
        self.bad_total += 1
        self.bad_ticks.append(self.ticks)
        self.bad_where.append((state.epoch, state.batch))
        while self.bad_ticks and self.bad_ticks[0] <= self.ticks - self.window:
            self.bad_ticks.popleft()
            self.bad_where.popleft()
        if kind == "loss_spike":
            # right after a rescue the recent losses are gone and the early level stands in
            median = _median(self.losses) if self.losses else self.reference
            facts.update(median=median, ratio=facts["loss"] / median if median and median > 0 else math.inf)
        if self.bad_total <= _MAX_LOGGED:
            report(state, kind, self.lang, bad=len(self.bad_ticks), patience=self.patience, window=self.window,
                   **facts)
        # Poisoned weights give a bad loss on every batch: skipping cannot help, roll back now.
        poisoned = kind == "nan_loss" and not params_finite(state.model)
        if poisoned or len(self.bad_ticks) >= self.patience:
            report(state, "divergence", self.lang, variant="weights" if poisoned else "recurring",
                   bad=len(self.bad_ticks), window=self.window)
            self._rescue(state)

    # -- rescue ----------------------------------------------------------------------------------

    def _rescue(self, state) -> None:
        if self.rescues >= self.max_rescues:
            self._give_up(state)
            return
        self.rescues += 1
        batches = sorted(set(self.bad_where))
        self.skip_batches.update(batches)
        lr_before = state.lr
        self._restore(state)
        lr_after = self._lower_lr(state)
        report(state, "rescue", self.lang, n=self.rescues, max=self.max_rescues,
               to_step=self.snapshot["step"], lr_before=lr_before, lr_after=lr_after,
               batches=[list(b) for b in batches])
        self.bad_ticks.clear()
        self.bad_where.clear()
        # Losses from just before the blow-up would inflate the median; start it afresh.
        self.losses.clear()
        self.threshold = self.spike_factor * self.reference if self.reference else math.inf

    def _give_up(self, state) -> None:
        self._restore(state)  # the model the run ends with is the last good one, not NaN
        report(state, "rescue_exhausted", self.lang, n=self.rescues, to_step=self.snapshot["step"])
        state.extra["diverged"] = True
        state.request_stop(f"rescue exhausted: training kept blowing up after {self.rescues} rescues "
                           f"(monitors.divergence.max_rescues); see `danlu diagnose`")

    def _restore(self, state) -> None:
        state.model.load_state_dict(self.snapshot["model"])
        lrs = [group["lr"] for group in state.optimizer.param_groups]
        state.optimizer.load_state_dict(clone_tree(self.snapshot["optimizer"]))
        # The snapshot's param groups carry the rate of its own step; keep the schedule's current one.
        for group, lr in zip(state.optimizer.param_groups, lrs):
            group["lr"] = lr

    def _lower_lr(self, state) -> float:
        lrs = [group["lr"] for group in state.optimizer.param_groups]
        rescale = getattr(state.schedule, "rescale", None)
        if rescale is not None:
            # The schedule multiplies its base rates, so the cut outlives its next step() ...
            rescale(self.lr_factor)
        # ... and the very next step already uses the lowered rate, whether or not rescale()
        # touches the param groups itself.
        for group, lr in zip(state.optimizer.param_groups, lrs):
            group["lr"] = lr * self.lr_factor
        return state.lr

    def _take_snapshot(self, state) -> None:
        model_state = state.model.state_dict()
        optim_state = state.optimizer.state_dict()
        live = list(model_state.values()) + list(_leaves(optim_state["state"]))
        snap = self.snapshot
        layout = _layout(live)
        if snap is not None and self._snapshot_layout == layout:
            # Same tensors as last time: copy into the snapshot's own buffers (one fused copy,
            # no allocation), so that a snapshot per epoch stays cheap on small epochs.
            mine = list(snap["model"].values()) + list(_leaves(snap["optimizer"]["state"]))
            _copy_into([m for m in mine if isinstance(m, torch.Tensor)],
                       [x for x in live if isinstance(x, torch.Tensor)])
            snap["optimizer"]["param_groups"] = clone_tree(optim_state["param_groups"])
            snap["step"] = state.step
        else:
            self.snapshot = {"step": state.step,
                             "model": {k: v.detach().clone() for k, v in model_state.items()},
                             "optimizer": clone_tree(optim_state)}
            self._snapshot_layout = layout
        self.since_snapshot = 0
        self.snapshot_due = False

    # -- checkpoints -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "ticks": self.ticks, "losses": list(self.losses), "threshold": _json_float(self.threshold),
            "reference": self.reference, "good": self.good, "bad_ticks": list(self.bad_ticks),
            "bad_where": [list(w) for w in self.bad_where], "bad_total": self.bad_total,
            "rescues": self.rescues, "skip_batches": sorted(list(b) for b in self.skip_batches),
            "snapshot": self.snapshot, "since_snapshot": self.since_snapshot,
            "snapshot_due": self.snapshot_due,
        }

    def load_state_dict(self, d: dict) -> None:
        self._reset_state()
        self.ticks, self.good, self.bad_total = d["ticks"], d["good"], d["bad_total"]
        self.losses.extend(d["losses"])
        self.threshold = float(d["threshold"])
        self.reference = d["reference"]
        self.bad_ticks.extend(d["bad_ticks"])
        self.bad_where.extend(tuple(w) for w in d["bad_where"])
        self.rescues = d["rescues"]
        self.skip_batches = {tuple(b) for b in d["skip_batches"]}
        self.snapshot = d["snapshot"]  # held where it was loaded (the CPU): the next one is a fresh copy
        self.since_snapshot = d["since_snapshot"]
        self.snapshot_due = d["snapshot_due"]


def _leaves(tree):
    """The leaves of a nested dict, in its (insertion) order."""
    for value in tree.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        else:
            yield value


def _layout(leaves: list) -> list:
    """What must match for a snapshot to be refreshed in place: each tensor's shape, dtype and
    device, and every other leaf's value (a plain-number optimizer state that moved means a
    fresh copy)."""
    return [(x.shape, x.dtype, x.device) if isinstance(x, torch.Tensor) else repr(x) for x in leaves]


def _copy_into(dst: list, src: list) -> None:
    with torch.no_grad():
        try:
            torch._foreach_copy_(dst, src)
        except (AttributeError, RuntimeError):  # an older torch, or devices it cannot fuse
            for d, t in zip(dst, src):
                d.copy_(t)


def _median(values) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return math.nan
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _json_float(x: float):
    """JSON has no infinity; a threshold not yet set is written as a string."""
    return x if math.isfinite(x) else "inf"
