"""The training loop, its state and events, the built-in callbacks, checkpoints and the factory
of losses, optimizers and schedules."""
from ._callbacks import Checkpointer, EarlyStopping, MetricsLog
from ._factory import (Schedule, build_loss, build_optimizer, build_schedule, output_dim, resolve_loss_kind,
                       scores_to_proba)
from ._loop import epoch_permutation, evaluate_outputs, fit, model_outputs
from ._progress import Progress
from ._state import CallbackList, Event, State

__all__ = ["CallbackList", "Checkpointer", "EarlyStopping", "Event", "MetricsLog", "Progress", "Schedule", "State",
           "build_loss", "build_optimizer", "build_schedule", "epoch_permutation", "evaluate_outputs", "fit",
           "model_outputs", "output_dim", "resolve_loss_kind", "scores_to_proba"]
