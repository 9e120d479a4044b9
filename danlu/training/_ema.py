"""``train.ema``: an exponential moving average of the weights, which validation, the final figures
and the saved model use while training goes on with the raw weights.

After every optimizer step the average moves toward the weights by ``1 - decay``::

    average = decay * average + (1 - decay) * weights

starting from the weights after the first step, as ``torch.optim.swa_utils.AveragedModel`` with
``get_ema_multi_avg_fn(decay)`` does. Floating-point parameters are averaged; buffers (batch
normalisation's running statistics) are the live model's, as they are at the time.

How the weights move through a run:

* ``validation_start``  the average goes into the model (the raw weights are kept aside), so the
  epoch's validation figures, early stopping's choice and its best weights are the average's;
* ``validation_end``    the raw weights go back, so training and checkpoints go on with them;
* ``fit_end``           the average goes into the model for good, so that the final figures,
  ``summary.json`` and ``model.safetensors`` are the average's (unless early stopping put back
  its best weights, which are an average already).

The average is part of every checkpoint (the callback's state, tensors in safetensors), so a
killed run resumes bit-identical.
"""
from __future__ import annotations

import torch

from ..errors import CheckpointError, UserError
from ._state import State


class EMA:
    """The moving average of a model's floating-point parameters (see the module docstring)."""

    name = "ema"

    def __init__(self, decay: float):
        if not 0 <= decay < 1:
            raise UserError(f"train.ema must be >= 0 and < 1, got {decay!r}")
        self.decay = float(decay)
        self.updates = 0            # optimizer steps averaged so far
        self.shadow = None          # parameter name -> averaged tensor (None until fit start)
        self._loaded = None         # from a checkpoint, until the model is known
        self._state = None
        self._seen_step = 0         # the state's optimizer step the average is up to date with
        self._raw = None            # the raw weights while the average is in the model

    # -- the run's events ------------------------------------------------------------------

    def on_fit_start(self, state: State) -> None:
        self._state = state
        params = self._params(state.model)
        if self._loaded is not None:   # resumed: the checkpoint's average, on the model's device
            missing = sorted(set(params) ^ set(self._loaded))
            if missing:
                raise CheckpointError(f"the checkpoint's weight average (train.ema) does not fit the model: "
                                      f"{', '.join(missing[:3])} differ; resume with the recipe the run was started with")
            self.shadow = {k: self._loaded[k].to(p.device, p.dtype).clone() for k, p in params.items()}
            self._loaded = None
        elif self.shadow is None:
            self.shadow = {k: p.detach().clone() for k, p in params.items()}
            self._seen_step = state.step

    def on_batch_end(self, state: State) -> None:
        self._catch_up()

    def on_validation_start(self, state: State) -> None:
        self._catch_up()
        params = self._params(state.model)
        with torch.no_grad():
            self._raw = {k: p.detach().clone() for k, p in params.items()}
            for k, p in params.items():
                p.copy_(self.shadow[k])

    def on_validation_end(self, state: State) -> None:
        if self._raw is None:
            return
        with torch.no_grad():
            for k, p in self._params(state.model).items():
                p.copy_(self._raw[k])
        self._raw = None

    def on_fit_end(self, state: State) -> None:
        self._catch_up()
        if state.restored_epoch is not None:   # early stopping's best weights: an average already
            return
        with torch.no_grad():
            for k, p in self._params(state.model).items():
                p.copy_(self.shadow[k])

    # -- the average -----------------------------------------------------------------------

    def _catch_up(self) -> None:
        """Average in the optimizer step taken since the last call, if one was. Keyed by
        ``state.step`` (which a skipped step does not move), so calling it twice for one step —
        from ``state_dict()`` when a checkpoint is written at this batch, then from this batch's
        ``on_batch_end`` — averages the step once."""
        state = self._state
        if state is None or self.shadow is None or state.step == self._seen_step:
            return
        params = self._params(state.model)
        with torch.no_grad():
            for k, p in params.items():
                if self.updates == 0:
                    self.shadow[k].copy_(p)
                else:
                    self.shadow[k].lerp_(p.detach(), 1.0 - self.decay)
        self.updates += 1
        self._seen_step = state.step

    @staticmethod
    def _params(model) -> dict:
        return {k: p for k, p in model.named_parameters() if p.is_floating_point()}

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        self._catch_up()   # a checkpoint written in this batch's hooks holds this batch's step
        shadow = self.shadow if self.shadow is not None else self._loaded
        return {"decay": self.decay, "updates": self.updates, "seen_step": self._seen_step,
                "shadow": None if shadow is None else {k: v.detach() for k, v in shadow.items()}}

    def load_state_dict(self, d: dict) -> None:
        self.decay, self.updates, self._seen_step = float(d["decay"]), int(d["updates"]), int(d["seen_step"])
        self._loaded = d["shadow"]
        self.shadow = None


def ema_callbacks(recipe, run_dir=None, progress="none") -> list:
    """The ``train.ema`` callback of a recipe (registered in danlu.training._extend)."""
    return [EMA(recipe.train.ema)]
