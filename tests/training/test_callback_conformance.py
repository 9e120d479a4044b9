"""check_callback (danlu.training) over every built-in callback class, a user's danlu-form, Keras-form
and on(...) callback; and the broken callbacks it must report, each naming the failed check."""
import copy

import pytest

import danlu
from danlu.errors import UserError
from danlu.training import Checkpointer, EarlyStopping, MetricsLog, Progress
from danlu.training._conformance import TINY_RECIPE, check_callback
from danlu.training._state import Event, on


class UserCounter:
    """A user's danlu-form callback with a state: counts batches, saved in checkpoints."""

    name = "user_counter"

    def __init__(self):
        self.batches = 0

    def on_batch_end(self, state):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, d):
        self.batches = d["batches"]


class KerasHistory:
    """A Keras user's callback: on_epoch_end(epoch, logs)."""

    def __init__(self):
        self.seen = []

    def on_train_begin(self, logs=None):
        self.seen.append(("begin", None))

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, logs["val_loss"]))


def _renamed(cb, name):
    cb.name = name   # a second instance of a built-in beside the run's own one needs a name of its own
    return cb


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    spec = copy.deepcopy(TINY_RECIPE)
    spec["output"]["runs_dir"] = str(tmp_path_factory.mktemp("teacher"))
    return danlu.train(spec, tmp_path_factory.mktemp("t") / "teacher", progress="none").path


def _builtins(tmp_path, teacher):
    """name -> (callback, recipe overrides); every built-in callback class of danlu."""
    from danlu.compress._qat import QATSchedule
    from danlu.diagnose import ConvergenceMonitor, DivergenceMonitor, FitMonitor, GradientMonitor
    from danlu.diagnose._verdict import VerdictMonitor
    from danlu.distill._distill import Distillation
    from danlu.training._loggers import TensorBoardLogger
    from danlu.transfer._finetune import GradualUnfreeze

    return {
        "Checkpointer": (_renamed(Checkpointer(tmp_path / "extra", every_epochs=1, keep_last=5), "checkpointer_2"),
                         None),
        "EarlyStopping": (_renamed(EarlyStopping(patience=1, restore_best=True), "early_stopping_2"), None),
        "MetricsLog": (MetricsLog(tmp_path / "extra-log"), None),
        "Progress": (Progress(mode="lines"), None),
        "TensorBoardLogger": (TensorBoardLogger(tmp_path / "tb"), None),
        "GradientMonitor": (GradientMonitor(every=1), None),
        "DivergenceMonitor": (DivergenceMonitor(), None),
        "FitMonitor": (FitMonitor(), None),
        "ConvergenceMonitor": (ConvergenceMonitor(), None),
        "VerdictMonitor": (VerdictMonitor(), None),
        "QATSchedule": (QATSchedule(start_epoch=1), {"quant": {"enabled": True, "start_epoch": 1}}),
        "Distillation": (Distillation([teacher], temperature=2.0, alpha=0.5), None),
        "GradualUnfreeze": (GradualUnfreeze(every=1), None),
    }


# MLflowLogger passes too (14 s: MLflow's import and SQLite store); it is left out to keep the suite
# fast, and tests/ecosystem/test_loggers.py resumes a run that logs to MLflow.
BUILTINS = ["Checkpointer", "EarlyStopping", "MetricsLog", "Progress", "TensorBoardLogger",
            "GradientMonitor", "DivergenceMonitor", "FitMonitor", "ConvergenceMonitor", "VerdictMonitor",
            "QATSchedule", "Distillation", "GradualUnfreeze"]


@pytest.mark.parametrize("kind", BUILTINS)
def test_every_builtin_callback_passes(kind, tmp_path, teacher):
    (tmp_path / "extra-log").mkdir()
    cb, recipe = _builtins(tmp_path, teacher)[kind]
    if kind == "TensorBoardLogger":
        pytest.importorskip("tensorboard")
    facts = check_callback(cb, recipe=recipe, workdir=tmp_path)
    assert facts["epochs"] == 2
    assert facts["hooks"] and all(n >= 1 for n in facts["hooks"].values())


def test_distributed_training_hooks_are_callable_and_it_keeps_no_state():
    """Its run needs a torchrun process group (tests/distributed trains with it on 2 processes and
    compares with one); here, the parts of the check that need none."""
    import torch

    from danlu.distributed._ddp import Distributed, DistributedTraining
    from danlu.training._state import read_hooks

    cb = DistributedTraining(Distributed(0, 2, 0, torch.device("cpu")))
    assert [event.value for event, _ in read_hooks(cb)] == ["fit_start", "validation_end", "fit_end"]
    assert not hasattr(cb, "state_dict")   # checkpoints stay the same as in one process


@pytest.mark.parametrize("make", [UserCounter, KerasHistory, lambda: on(Event.BATCH_END, lambda s: None, every=3)],
                         ids=["danlu-form", "keras-form", "on-filter"])
def test_user_callbacks_pass(make, tmp_path):
    cb = make()
    facts = check_callback(cb, workdir=tmp_path)
    assert facts["stateful"] == isinstance(cb, UserCounter)
    assert getattr(cb, "batches", 0) == 0 and getattr(cb, "seen", []) == []   # the one given is not used


# -- what it must report ----------------------------------------------------------------------------

class NoRoundTrip(UserCounter):
    name = "no_round_trip"

    def state_dict(self):
        return {"batches": self.batches, "seen": {1, 2}}   # a set: not JSON


class ForgetsOnLoad(UserCounter):
    name = "forgets"

    def load_state_dict(self, d):
        self.batches = 0


class Nameless(UserCounter):
    name = None


class ClashesWithBuiltin(UserCounter):
    name = "early_stopping"


class NotResumable:
    """Halves the rate every 3 batches, counting in an attribute it never saves."""

    def __init__(self):
        self.n = 0

    def on_batch_end(self, state):
        self.n += 1
        if self.n % 3 == 0:
            for group in state.optimizer.param_groups:
                group["lr"] *= 0.5


class LightningStyle:
    def on_train_epoch_end(self, trainer, pl_module):
        pass


class Misspelt:
    def on_epoch_end(self, state):
        pass

    def on_validation_epoch_end(self, state):   # Lightning's name with danlu's signature
        pass


@pytest.mark.parametrize("cb, check", [
    (NoRoundTrip(), "state_dict"), (ForgetsOnLoad(), "state_dict"), (Nameless(), "name"),
    (ClashesWithBuiltin(), "name"), (NotResumable(), "resume"), (LightningStyle(), "hooks"), (Misspelt(), "hooks"),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_broken_callbacks_are_reported_naming_the_check(cb, check, tmp_path):
    with pytest.raises(UserError) as got:
        check_callback(cb, workdir=tmp_path)
    text = str(got.value)
    assert "\n" not in text
    assert text.startswith(f"check_callback({type(cb).__name__}): check {check!r} failed: "), text
