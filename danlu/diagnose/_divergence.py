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

Not every blow-up produces a NaN or a spike. An adaptive optimizer (Adam, RMSProp) at a rate
far too high throws the weights somewhere the loss is merely as bad as a constant guess, and
keeps them there. So at each epoch's end the run is also compared with the trivial predictor
(class priors, the mean target), whose loss is measured once at the start:

* ``worse_than_trivial``: the epoch's training loss is well above both the trivial loss and the
  untrained model's, or the validation loss is far above them while training did not memorise;
  for two epochs in a row (a short first epoch may overshoot and recover), or for one when far
  worse (3x);
* ``back_to_trivial``: an earlier epoch was clearly better than the trivial predictor, and both
  losses are now back at its level;
* ``one_class``: the predictions have collapsed onto one class although the data have several
  (after the model had been better than that, or while it is worse than trivial).

* ``dead_units``: in some layer of ReLU units, at least 90 % of the units now output zero for
  every row of a fixed probe batch (256 training rows, one forward pass per epoch), and that
  share is at least 50 points above the one at the last good epoch (or of the initial weights):
  a sudden mass death, as a step far too large leaves behind, not a slow sparsification. This
  names the cause even when one of the checks above also saw the collapse.

* ``unstable``: in the few epochs right after a rescue, the training loss rose clearly from one
  epoch to the next, or the validation loss jumped far above its best: the cut was not enough
  (a rate 1000x too high needs several).

Such an epoch is a ``collapse``: the run is rolled back to the last good epoch (the one with the
best validation loss so far; the initial weights if none was clearly better than a guess, as
weights trained at a rate far too high may be damaged) with its optimizer state,
and the learning rate is cut, as a NaN rescue does; the rescues count against one budget.
"""
from __future__ import annotations

import math
from collections import deque

import torch

from ._common import clone_tree, finite, params_finite, report
from ._probe import ValidationOutputs, drop, relu_layers, train_alive

_REFRESH = 10          # good steps between recomputations of the spike threshold (after the first ones)
_FLOOR = 0.1           # spikes are judged against at least this fraction of the early loss level
_MAX_LOGGED = 25       # bad steps recorded one by one; later ones are only counted
_WORSE = 1.15          # training loss this far above the trivial (and the initial) loss: worse than a guess
_FAR_WORSE = 1.5       # validation loss this far above them: confidently wrong
_EXTREME = 3.0         # either loss this far above them: no need to wait for a second epoch
_LEARNED = 0.6         # a loss below this fraction of the trivial one: the model had learned something
_BACK = 0.9            # ... and above this fraction again: it is back at the trivial level
_ONE_CLASS = 0.9       # share of predictions on one class that is a collapse ...
_MIXED = 0.6           # ... when no class holds more than this share of the rows
_GOOD = 0.3            # a loss below this fraction of the trivial one: a model worth returning to
_PROBATION = 8         # epochs after a rescue in which a rising training loss means "cut again"
_UNSTABLE = 0.1        # ... a rise by more than this (relative) ...
_VAL_JUMP = 0.3       # ... or a validation loss this far above its best
_CLEAR_GAIN = 0.05     # ... unless the validation loss improved by this much
_TINY = 0.02           # ... of a loss still above this fraction of the trivial one
_PROBE_ROWS = 1024     # rows used for the trivial and initial losses and the prediction shares
_DEAD_ROWS = 256       # rows of the probe batch for dead units
_DEAD = 0.9            # share of a layer's units zero on every probe row that is a mass death ...
_DEAD_JUMP = 0.5       # ... when it rose by this much since the last good epoch


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
        self._val_outputs = ValidationOutputs()    # the validation pass's outputs, for the prediction shares
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
        self.trivial = None                        # loss of the best constant prediction (training rows)
        self.initial = None                        # loss of the untrained model on the same rows
        self.majority = None                       # share of the most common class (classification)
        self.safe = None                           # {"step", "model", "optimizer"} of the last good epoch
        self.start = None                          # ... of the initial weights, until the model is good
        self.best_val = None                       # best validation (or training) loss of a good epoch
        self.learned = False                       # an epoch was clearly better than the trivial predictor
        self.suspect = False                       # the last epoch was worse than trivial (moderately)
        self.probation = 0                         # epochs left in which a rising loss triggers a rescue
        self.prev_train = None                     # last epoch's training loss (since the last rescue)
        self.rescue_epoch = None                   # the epoch of the last rescue
        self.dead_base = None                      # {ReLU layer: dead share} of the last good epoch

    # -- hooks ---------------------------------------------------------------------------------

    def on_fit_start(self, state) -> None:
        if self.snapshot is None:  # the initial weights are good by definition
            self._take_snapshot(state)
        if self.safe is None:
            self.safe = _copy_snapshot(self.snapshot)
            self.start = _copy_snapshot(self.snapshot)
            self._measure_trivial(state)
            if self.trivial is not None:
                self.dead_base = self._dead_shares(state)

    def on_backward_end(self, state) -> None:
        self.ticks += 1
        # (step, total norm) when the gradient monitor sampled this step; taken out at once, so
        # that no later try at the same step reads it again
        sampled, state.grad_total = state.grad_total, None
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

    def on_validation_start(self, state) -> None:
        if self._shares_wanted(state):
            self._val_outputs.start(state)

    def on_validation_end(self, state) -> None:
        self._val_outputs.stop()
        # The end of an epoch is a natural snapshot point, but no loss has vouched for the
        # weights the epoch's last step made. The first batch of the next epoch sees exactly
        # these weights: the snapshot is taken there, if its loss is good.
        self.snapshot_due = True
        if state.stop_reason is not None or self.trivial is None:
            return
        facts = self._collapse_facts(state)
        shares = self._dead_shares(state) if self.dead_base else None
        dead = self._dead_facts(shares)
        if dead is not None:   # the more specific cause: it names the layer
            facts = {**(facts or {"train_loss": state.metrics.get("train_loss_running_mean"),
                                  "trivial": self.trivial}), **dead, "variant": "dead_units",
                     "seen_as": facts["variant"] if facts else None}
        if facts is None and self.suspect:
            return   # not yet a collapse, but not a good epoch to return to either
        if facts is None:
            facts = self._unstable_facts(state)
        if facts is not None:
            report(state, "collapse", self.lang, **facts)
            self._rescue(state, to_safe=True)
            return
        train = state.metrics.get("train_loss_running_mean")
        # an epoch with a rescue in it mixes two rates: no yardstick for the next one
        self.prev_train = train if finite(train) and state.epoch != self.rescue_epoch else None
        val = state.metrics.get("val_loss")
        judged = val if finite(val) else train
        if not finite(judged):
            return
        if judged <= _LEARNED * self.trivial:
            self.learned = True
        if self.best_val is None or judged <= self.best_val:
            self.best_val = judged
            self.safe = _copy_snapshot({"step": state.step, "model": state.model.state_dict(),
                                        "optimizer": state.optimizer.state_dict()})
            if shares:
                self.dead_base = shares
        if judged <= _GOOD * self.trivial:
            self.start = None   # a clearly good epoch to return to: the initial weights are not needed

    # -- collapse without NaN --------------------------------------------------------------------

    def _measure_trivial(self, state) -> None:
        """The trivial predictor's loss and the untrained model's, on a slice of the training rows."""
        from ..training import model_outputs
        from ..training._objective import is_objective_model
        from ._fit import trivial_loss

        splits = getattr(state, "splits", None) or {}
        if "train" not in splits or is_objective_model(state.model):
            return
        X, y = splits["train"]
        X, y = X[:_PROBE_ROWS], y[:_PROBE_ROWS]
        try:
            out = model_outputs(state.model, X)
            initial = float(state.loss_fn(out, y))
            trivial = trivial_loss(out, y, state)
        except (RuntimeError, ValueError, TypeError, IndexError):  # a model this check cannot probe
            return
        if trivial is None or not trivial > 0 or not math.isfinite(initial):
            return
        self.trivial, self.initial = trivial, initial
        if state.info.task == "classification" and state.loss_kind == "cross_entropy":
            counts = torch.bincount(y.long().reshape(-1)).double()
            self.majority = float(counts.max() / counts.sum())

    def _collapse_facts(self, state) -> dict | None:
        train = state.metrics.get("train_loss_running_mean")
        val = state.metrics.get("val_loss")
        if not finite(train):
            return None   # a non-finite epoch is the step checks' business
        trivial = self.trivial
        ref = max(trivial, self.initial)
        facts = {"train_loss": train, "val_loss": val if finite(val) else None, "trivial": trivial,
                 "initial": self.initial}
        share = self._top_share(state)
        if share is not None:
            facts["top_share"] = share
        # The running mean of an epoch with a rescue in it mixes two rates: the validation loss,
        # taken after the epoch, must agree that the model is no better than a guess.
        val_bad = not finite(val) or val >= _BACK * trivial
        worse = (train >= _WORSE * ref and val_bad) or \
            (finite(val) and val >= _FAR_WORSE * ref and train >= _BACK * trivial)
        extreme = train >= _EXTREME * ref or (finite(val) and val >= _EXTREME * ref)
        # A first epoch of a few steps may overshoot and recover: a moderate case must last two
        # epochs, an extreme one (confidently wrong, far worse than a guess) is acted on at once.
        confirmed = worse and (extreme or self.suspect)
        self.suspect = worse
        if confirmed:
            return {"variant": "worse_than_trivial", **facts}
        judged = val if finite(val) else train
        if self.learned and judged >= _BACK * trivial and train >= _BACK * trivial:
            return {"variant": "back_to_trivial", "best_loss": self.best_val, **facts}
        if share is not None and share >= _ONE_CLASS and (self.learned or train >= _WORSE * ref):
            return {"variant": "one_class", **facts}
        return None

    def _dead_shares(self, state) -> dict[str, float] | None:
        """Per ReLU layer, the share of its units (output positions) that are zero for every row
        of the probe batch; None when the model has no nn.ReLU or cannot be probed. The forward
        pass is the one the fit monitor scores its training rows with (see ``_probe``)."""
        splits = getattr(state, "splits", None) or {}
        if "train" not in splits or not relu_layers(state.model):
            return None
        try:
            alive = train_alive(state, _DEAD_ROWS)
        except (RuntimeError, ValueError, TypeError, IndexError):
            return None
        return {name: 1.0 - float(a.float().mean()) for name, a in (alive or {}).items() if a.numel()} or None

    def _dead_facts(self, shares: dict | None) -> dict | None:
        """The layer with the largest sudden mass death, if any."""
        found = None
        for name, share in (shares or {}).items():
            before = (self.dead_base or {}).get(name)
            if before is None or share < _DEAD or share - before < _DEAD_JUMP:
                continue
            if found is None or share - before > found["dead_share"] - found["dead_before"]:
                found = {"layer": name, "dead_share": share, "dead_before": before}
        return found

    def _unstable_facts(self, state) -> dict | None:
        if self.probation <= 0:
            return None
        self.probation -= 1
        train, prev = state.metrics.get("train_loss_running_mean"), self.prev_train
        if self.rescues >= self.max_rescues or not finite(train) or prev is None:
            return None   # a rising loss alone never ends a run
        val = state.metrics.get("val_loss")
        if finite(val) and self.best_val is not None and val < self.best_val * (1 - _CLEAR_GAIN):
            return None   # a rougher epoch that clearly improved on validation is progress
        if train > prev * (1 + _UNSTABLE) and train > _TINY * self.trivial:
            return {"variant": "unstable", "train_loss": train, "previous": prev, "rise": train / prev - 1,
                    "trivial": self.trivial}
        best = self.best_val
        if finite(val) and best is not None and val > best * (1 + _VAL_JUMP) and val > _TINY * self.trivial:
            return {"variant": "unstable_val", "val_loss": val, "previous": best, "rise": val / best - 1,
                    "train_loss": train, "trivial": self.trivial}
        return None

    def _shares_wanted(self, state) -> bool:
        return self.majority is not None and self.majority <= _MIXED and "validation" in state.splits

    def _top_share(self, state) -> float | None:
        """The share of validation predictions on the most predicted class, where the data have
        no class that large (None otherwise, or when it cannot be told)."""
        if not self._shares_wanted(state):
            return None
        from ..training import model_outputs

        # the validation pass computed these very outputs, if the weights are still the same
        out = self._val_outputs.outputs(state, _PROBE_ROWS)
        if out is None:
            out = model_outputs(state.model, state.splits["validation"][0][:_PROBE_ROWS])
        if out.dim() != 2 or out.shape[1] < 2 or len(out) == 0:
            return None
        counts = torch.bincount(out.argmax(1), minlength=out.shape[1]).double()
        return float(counts.max() / counts.sum())

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

    def _rescue(self, state, to_safe: bool = False) -> None:
        """Roll back and lower the learning rate: to the last good snapshot after bad steps, to
        the last good epoch after a collapse (``to_safe``)."""
        # Weights trained at a rate found too high, and only a little better than a guess, may
        # be damaged (saturated or dead units): after a collapse, or a second blow-up, training
        # starts afresh from the initial weights rather than from them.
        damaged = self.start is not None and (self.best_val is None or self.best_val > _GOOD * self.trivial)
        if to_safe or (damaged and self.rescues >= 1):
            # the step snapshots may already hold collapsed weights: a good epoch replaces them
            self.snapshot = _copy_snapshot(self.start if damaged else self.safe)
            self._snapshot_layout = None
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
               batches=[list(b) for b in batches], cause="collapse" if to_safe else "steps")
        self.bad_ticks.clear()
        self.bad_where.clear()
        self.probation, self.prev_train, self.rescue_epoch = _PROBATION, None, state.epoch
        # Losses from just before the blow-up would inflate the median; start it afresh.
        self.losses.clear()
        self.threshold = self.spike_factor * self.reference if self.reference else math.inf

    def _give_up(self, state) -> None:
        self._restore(state)  # the model the run ends with is the last good one, not NaN
        report(state, "rescue_exhausted", self.lang, n=self.rescues, to_step=self.snapshot["step"])
        state.diverged = True
        state.request_stop(f"rescue exhausted: training kept blowing up after {self.rescues} rescues "
                           f"(monitors.divergence.max_rescues); see `danlu diagnose`")

    def _restore(self, state) -> None:
        state.model.load_state_dict(self.snapshot["model"])
        drop(state)   # the probe pass saw the weights just replaced
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
            "snapshot_due": self.snapshot_due, "trivial": self.trivial, "initial": self.initial,
            "majority": self.majority, "safe": self.safe, "start": self.start, "best_val": self.best_val,
            "learned": self.learned, "probation": self.probation, "prev_train": self.prev_train,
            "suspect": self.suspect, "rescue_epoch": self.rescue_epoch, "dead_base": self.dead_base,
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
        # checkpoints written before collapse detection existed lack these: the check stays off
        self.trivial, self.initial, self.majority = d.get("trivial"), d.get("initial"), d.get("majority")
        self.safe, self.best_val, self.learned = d.get("safe"), d.get("best_val"), d.get("learned", False)
        self.start = d.get("start")
        self.probation, self.prev_train = d.get("probation", 0), d.get("prev_train")
        self.rescue_epoch, self.suspect = d.get("rescue_epoch"), d.get("suspect", False)
        self.dead_base = d.get("dead_base")
        if self.safe is None and self.snapshot is not None:
            self.safe = _copy_snapshot(self.snapshot)


def _copy_snapshot(snap: dict) -> dict:
    """An own copy of a snapshot (or of live state dicts shaped like one)."""
    return {"step": snap["step"], "model": {k: v.detach().clone() for k, v in snap["model"].items()},
            "optimizer": clone_tree(snap["optimizer"])}


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
