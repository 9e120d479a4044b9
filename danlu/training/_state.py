"""The one state object, the small closed set of events, and how callbacks are called.

Callbacks are structural: any object with some of the ``on_<event>(state)`` methods is a
callback; only the methods it defines are ever called (so empty hooks cost nothing on the hot
path). The events, in the order the loop fires them::

    fit_start
      epoch_start
        backward_end      (once per optimizer step: gradients ready, step not yet taken)
        batch_end
      validation_start    (the epoch's batches are done; its figures are computed next)
      validation_end      (state.metrics holds this epoch's figures)
      epoch_end           (the epoch counter has moved on: the checkpoint point)
    fit_end

Filters instead of more hooks (as Ignite's ``Events.EPOCH_COMPLETED(every=5)``): ``on(event, fn,
every=N)`` or ``on(event, fn, once=N)`` wraps a plain function ``fn(state)`` as a callback that
runs on every N-th or only the N-th occurrence. What counts is read from the state, so a resumed
run counts on where it left off: epoch_start and validation_start/_end count epochs (1-based), epoch_end
the epochs completed, batch_end the batches done since the run began, backward_end the optimizer
steps (the one about to be taken), fit_start and fit_end their own calls::

    callbacks=[on(Event.EPOCH_END, lambda state: print(state.metrics), every=2)]

There is one way to stop and one way to skip:

* ``state.request_stop("why")`` ends training after the current batch (or epoch hook);
* ``state.skip_step = True`` in ``on_backward_end`` drops this step's gradients instead of
  applying them (the divergence monitor uses it).

One loss hook: a callback may define ``compute_loss(state, xb, yb) -> loss tensor`` (distillation
does; quantization-aware training and generative models need not, since their model computes
it). At most one callback of a run defines it; without one the loss of a batch is the model's own
``objective(xb, yb)`` when it has one (``danlu.training._objective``), else
``state.loss_fn(state.net(xb), yb)``. A ``compute_loss`` of your own should run the model as
``state.net(xb)`` (the DDP wrapper under torchrun, the model itself otherwise) so that it trains
on several processes too; distillation refuses torchrun instead.

How the work is spread over processes is ``state.strategy`` (one process by default; under
torchrun the ``DistributedTraining`` callback of ``danlu.distributed`` installs its own): the loop
always asks it for this process's share of a batch, the module to run forward, and the batch loss
every process records. The loop has no multi-process case of its own. In the same way
``state.precision`` (``train.precision``, danlu.training._precision) gives the autocast context of
the forward pass, runs backward and takes the optimizer step; the loop has no precision case either.

Keras-style callbacks work as Keras users expect: ``on_train_begin(logs=None)``,
``on_train_end(logs=None)``, ``on_epoch_begin(epoch, logs=None)``, ``on_epoch_end(epoch,
logs=None)`` (``logs`` is that epoch's row of metrics.jsonl: ``train_loss_running_mean``,
``val_loss``, ``val_accuracy``, ...; ``epoch`` counts from 0) and ``on_train_batch_end(batch,
logs=None)`` / ``on_batch_end(batch, logs=None)`` (``logs``: ``batch_loss``, counting from 0
within the epoch). A hook is taken for the Keras form when it has a parameter named ``logs``
and its first one is not named ``state``.
As in Keras, ``self.model`` is the model being trained, and ``self.model.stop_training = True``
in a hook stops the run. Hooks danlu cannot call — Lightning's ``on_train_epoch_end(trainer,
pl_module)`` and friends, Keras' batch-begin, test and predict hooks, any signature that does not
take ``(state)`` — are refused when the callback list is built, in one line that says what danlu
calls.

A callback that must survive a resume defines ``state_dict()`` / ``load_state_dict(d)`` and a
unique ``name``; tensors may appear anywhere in its state dict (they go to safetensors).
``danlu.training.check_callback`` checks a callback against all of this.
"""
from __future__ import annotations

import enum
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError


class Event(str, enum.Enum):
    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BACKWARD_END = "backward_end"      # gradients ready, optimizer step not yet taken
    BATCH_END = "batch_end"
    VALIDATION_START = "validation_start"  # the epoch is trained, its figures not yet computed
    VALIDATION_END = "validation_end"  # state.metrics holds this epoch's figures
    EPOCH_END = "epoch_end"            # after the epoch counter moved on (checkpoint point)
    FIT_END = "fit_end"


class SingleProcess:
    """The default ``state.strategy``: this process trains on whole batches.

    A strategy answers three questions of the loop: which rows of a global batch this process
    takes and their weight (``shard``), which module runs the forward pass (``forward_module``),
    and the batch loss every process records (``reduce``)."""

    def shard(self, idx):
        return idx, 1.0

    def forward_module(self, model):
        return model

    def reduce(self, loss):
        return loss


def _full_precision():
    from ._precision import FullPrecision

    return FullPrecision()


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
    strategy: Any = field(default_factory=SingleProcess)   # see SingleProcess; danlu.distributed swaps it
    precision: Any = field(default_factory=_full_precision)   # train.precision: see danlu.training._precision
    compiled: Any = None           # train.compile: the compiled forward of the model (None: the model itself)

    # position
    epoch: int = 0                 # epochs completed
    batch: int = 0                 # batches done in the current epoch
    step: int = 0                  # optimizer steps taken in total
    steps_per_epoch: int = 0
    batches_per_epoch: int = 0

    # this batch
    batch_loss: Any = None         # the loss tensor of the last batch (not yet synchronised)
    stepped: bool = False          # this batch ended an optimizer step (every train.accumulate batches)
    skip_step: bool = False
    grad_norm: float | None = None  # set when clipping by norm computed it

    # this epoch
    loss_sum: Any = 0.0            # sum of batch losses in the current epoch (a tensor while training)
    loss_count: int = 0
    metrics: dict = field(default_factory=dict)   # last epoch: train_loss_running_mean, val_loss, val_*, lr
    history: list = field(default_factory=list)   # one metrics dict per finished epoch
    is_best: bool = False          # the last validated epoch is the best so far (EarlyStopping sets it)

    stop_reason: str | None = None
    events: list = field(default_factory=list)    # diagnoses and rescues, as they happened
    event_sinks: list = field(default_factory=list)   # callables(event dict) that record_event calls

    # facts callbacks leave for each other
    restored_epoch: int | None = None  # EarlyStopping put this epoch's weights back at fit end
    grad_norms: list = field(default_factory=list)   # GradientMonitor's recent samples {step, epoch, total, layers}
    grad_total: tuple | None = None    # (step, total norm) sampled at this step; the divergence monitor takes it
    diverged: bool = False             # the divergence monitor gave up: the run blew up
    fit_figures: dict | None = None    # FitMonitor's end-of-run figures, for the verdict
    mlflow_run_id: str | None = None   # the MLflow run this run logs to (output.loggers: mlflow)

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def net(self):
        """The module a training batch runs forward through (under torchrun: the DDP wrapper)."""
        return self.strategy.forward_module(self.model if self.compiled is None else self.compiled)

    @property
    def train_loss_running_mean(self) -> float | None:
        return float(self.loss_sum) / self.loss_count if self.loss_count else None

    def record_event(self, kind: str, **facts) -> dict:
        """Append a diagnosis or rescue to the run's event log (and to ``state.events``)."""
        event = {"kind": kind, "epoch": self.epoch, "batch": self.batch, "step": self.step, **facts}
        self.events.append(event)
        for sink in self.event_sinks:
            sink(event)
        return event


# ---------------------------------------------------------------------------------------------
# Filters: on(event, fn, every=N / once=N)
# ---------------------------------------------------------------------------------------------

def _count(event: Event, state: State, calls: int) -> int:
    """Which occurrence of ``event`` this is, read from the state (so a resume keeps counting)."""
    if event in (Event.EPOCH_START, Event.VALIDATION_START, Event.VALIDATION_END):
        return state.epoch + 1
    if event is Event.EPOCH_END:
        return state.epoch
    if event is Event.BATCH_END:
        return state.epoch * state.batches_per_epoch + state.batch
    if event is Event.BACKWARD_END:
        return state.step + 1
    return calls


class EventHandler:
    """A plain function ``fn(state)`` run on some occurrences of one event; made by :func:`on`."""

    def __init__(self, event: Event, fn: Callable, every: int | None = None, once: int | None = None):
        self.event = Event(event)
        if every is not None and once is not None:
            raise UserError(f"on({self.event.value}, ...): give every= or once=, not both")
        for key, value in (("every", every), ("once", once)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserError(f"on({self.event.value}, ...): {key} must be a whole number >= 1, got {value!r}")
        self.fn, self.every, self.once = fn, every, once
        self.calls = 0
        setattr(self, f"on_{self.event.value}", self._fire)

    def __repr__(self) -> str:
        when = f", every={self.every}" if self.every else f", once={self.once}" if self.once else ""
        return f"on({self.event.value}, {getattr(self.fn, '__name__', self.fn)}{when})"

    def _fire(self, state: State) -> None:
        self.calls += 1
        n = _count(self.event, state, self.calls)
        if (self.every is None or n % self.every == 0) and (self.once is None or n == self.once):
            self.fn(state)


def on(event: Event | str, fn: Callable, *, every: int | None = None, once: int | None = None) -> EventHandler:
    """``fn(state)`` as a callback on ``event``: every time, every ``every``-th time, or only the
    ``once``-th time (counted as the module docstring says)."""
    return EventHandler(event, fn, every=every, once=once)


# ---------------------------------------------------------------------------------------------
# Reading a callback's hooks: danlu form, Keras form, refused
# ---------------------------------------------------------------------------------------------

_DANLU = {f"on_{ev.value}": ev for ev in Event}
# Keras hook -> (event, what its first argument is); None: no argument besides logs
_KERAS = {"on_train_begin": (Event.FIT_START, None), "on_train_end": (Event.FIT_END, None),
          "on_epoch_begin": (Event.EPOCH_START, "epoch"), "on_epoch_end": (Event.EPOCH_END, "epoch"),
          "on_train_batch_end": (Event.BATCH_END, "batch"), "on_batch_end": (Event.BATCH_END, "batch")}
_KERAS_UNCALLED = ("on_batch_begin", "on_train_batch_begin", "on_test_begin", "on_test_end", "on_test_batch_begin",
                   "on_test_batch_end", "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
                   "on_predict_batch_end")
# Lightning's hooks (trainer, pl_module, ...) and the danlu hook that does the same job
_LIGHTNING = {"on_train_start": "on_fit_start", "on_train_epoch_start": "on_epoch_start",
              "on_train_epoch_end": "on_epoch_end", "on_train_batch_start": "on_epoch_start",
              "on_validation_start": "on_validation_end", "on_validation_epoch_start": "on_validation_end",
              "on_validation_epoch_end": "on_validation_end", "on_validation_batch_start": "on_validation_end",
              "on_validation_batch_end": "on_validation_end", "on_before_backward": "on_backward_end",
              "on_after_backward": "on_backward_end", "on_before_optimizer_step": "on_backward_end",
              "on_before_zero_grad": "on_backward_end", "on_save_checkpoint": "state_dict",
              "on_load_checkpoint": "load_state_dict", "on_exception": "on_fit_end",
              "on_sanity_check_start": "on_fit_start", "on_sanity_check_end": "on_fit_start",
              "on_test_start": "on_fit_end", "on_test_epoch_start": "on_fit_end", "on_test_epoch_end": "on_fit_end",
              "on_predict_start": "on_fit_end", "on_predict_epoch_end": "on_fit_end"}
_KERAS_LIKE = {"on_train_begin": "on_fit_start", "on_train_end": "on_fit_end", "on_epoch_begin": "on_epoch_start",
               "on_train_batch_end": "on_batch_end", "on_batch_begin": "on_epoch_start",
               "on_train_batch_begin": "on_epoch_start"}


def callback_name(cb) -> str:
    return repr(cb) if isinstance(cb, EventHandler) else type(cb).__name__


def _signature(method) -> inspect.Signature | None:
    try:
        return inspect.signature(method)
    except (TypeError, ValueError):   # builtins without a signature: trusted as they are
        return None


def _takes(sig: inspect.Signature | None, *args) -> bool:
    if sig is None:
        return True
    try:
        sig.bind(*args)
    except TypeError:
        return False
    return True


def _refuse(cb, attr: str, sig: inspect.Signature | None) -> UserError:
    like = attr if attr in _DANLU else _LIGHTNING.get(attr) or _KERAS_LIKE.get(attr) or "on_test_end"
    instead = f"{like}(self)" if like in ("state_dict", "load_state_dict") else f"{like}(self, state)"
    if like == "load_state_dict":
        instead = "load_state_dict(self, d)"
    keras = "on_epoch_end(self, epoch, logs=None)" if attr not in _KERAS else \
        f"{attr}(self, {_KERAS[attr][1] + ', ' if _KERAS[attr][1] else ''}logs=None)"
    return UserError(f"callback {callback_name(cb)}: {attr}{sig if sig is not None else '(...)'} is not a hook "
                     f"danlu can call; danlu calls on_<event>(state) (here: {instead}), or the Keras form {keras}")


def _is_keras(sig: inspect.Signature | None) -> bool:
    """Keras' hooks take ``logs``; a danlu hook takes ``state`` first (even with a ``logs`` after it)."""
    if sig is None or "logs" not in sig.parameters:
        return False
    return next(iter(sig.parameters)) != "state"


class _KerasCall:
    """One Keras-form hook called from a danlu event, with Keras' arguments."""

    def __init__(self, cb, attr: str, method, arg: str | None):
        self.cb, self.attr, self.method, self.arg = cb, attr, method, arg

    def __call__(self, state: State) -> None:
        if self.arg == "epoch":   # Keras counts epochs from 0; epoch_end fires after the counter moved on
            ended = self.attr == "on_epoch_end"
            logs = dict(state.history[-1]) if ended and state.history else {}
            self.method(state.epoch - 1 if ended else state.epoch, logs)
        elif self.arg == "batch":
            self.method(state.batch - 1, {"batch_loss": float(state.batch_loss)})
        else:
            self.method(dict(state.history[-1]) if state.history else {})
        if getattr(state.model, "stop_training", False):
            state.request_stop(f"callback {callback_name(self.cb)} set model.stop_training")


class _KerasModel:
    """Gives a Keras-form callback ``self.model`` (the torch model) at fit start, as Keras does."""

    def __init__(self, cb):
        self.cb = cb

    def __call__(self, state: State) -> None:
        state.model.stop_training = False
        self.cb.model = state.model


_NAMES = sorted(set(_DANLU) | set(_KERAS) | set(_KERAS_UNCALLED) | set(_LIGHTNING))


def read_hooks(cb) -> list[tuple[Event, Callable]]:
    """``(event, hook(state))`` for every hook ``cb`` defines, in event order; a UserError for a
    hook danlu cannot call (a Lightning hook, a Keras hook danlu has no event for, a bad signature)."""
    hooks, keras = [], False
    for attr in _NAMES:
        method = getattr(cb, attr, None)
        if not callable(method):
            continue
        sig = _signature(method)
        if attr in _KERAS and _is_keras(sig):
            event, arg = _KERAS[attr]
            if not _takes(sig, *([0] if arg else []), {}):
                raise _refuse(cb, attr, sig)
            hooks.append((event, _KerasCall(cb, attr, method, arg)))
            keras = True
        elif attr in _DANLU and _takes(sig, None):
            hooks.append((_DANLU[attr], method))
        else:
            raise _refuse(cb, attr, sig)
    if keras:
        hooks.insert(0, (Event.FIT_START, _KerasModel(cb)))
    order = list(Event)
    return sorted(hooks, key=lambda h: order.index(h[0]))   # stable: within an event, as listed


class CallbackList:
    """Dispatches events to the callbacks that define a hook for them, in the given order."""

    def __init__(self, callbacks):
        self.callbacks = [cb for cb in callbacks if cb is not None]
        for cb in self.callbacks:
            if isinstance(cb, type):
                raise UserError(f"callbacks=[{cb.__name__}]: give an instance, {cb.__name__}(...), not the class")
        self._hooks = {ev: [] for ev in Event}
        for cb in self.callbacks:
            for event, hook in read_hooks(cb):
                self._hooks[event].append(hook)
        names = {}
        for cb in self.stateful():   # a checkpoint saves each one's state under its name
            name = getattr(cb, "name", None)
            if not isinstance(name, str) or not name:
                raise UserError(f"callback {type(cb).__name__} has state_dict() and load_state_dict() but no name; "
                                f"give it a unique name (a class attribute name = '...'), its state is saved under it")
            if name in names:
                raise UserError(f"callbacks {type(names[name]).__name__} and {type(cb).__name__} are both named "
                                f"{name!r}; a callback with a state needs a unique name, its state is saved under it")
            names[name] = cb
        losses = [cb for cb in self.callbacks if callable(getattr(cb, "compute_loss", None))]
        if len(losses) > 1:
            raise UserError(f"callbacks {callback_name(losses[0])} and {callback_name(losses[1])} both define "
                            f"compute_loss; a run has one loss hook, so keep one of them")
        # the one loss hook: compute_loss(state, xb, yb) -> loss tensor, or None for the default
        self.compute_loss = losses[0].compute_loss if losses else None

    def fire(self, event: Event, state: State) -> None:
        for hook in self._hooks[event]:
            hook(state)

    def stateful(self):
        return [cb for cb in self.callbacks if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict")]
