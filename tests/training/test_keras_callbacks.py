"""Keras-form callbacks work as Keras users expect; Lightning-form (and any hook danlu cannot call)
is refused in one line before anything is written; danlu-form hooks work unchanged."""
import copy
import json

import pytest

import danlu
from danlu.errors import UserError
from danlu.training._conformance import TINY_RECIPE


def _spec(tmp_path, epochs=3, **train):
    spec = copy.deepcopy(TINY_RECIPE)
    spec["output"]["runs_dir"] = str(tmp_path)
    spec["train"].update(epochs=epochs, **train)
    return spec


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


class KerasRecorder:
    def __init__(self):
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", self.model, logs))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch, logs))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, logs))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, logs))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", None, logs))


def test_keras_callback_gets_epoch_and_that_epochs_figures(tmp_path):
    cb = KerasRecorder()
    run = danlu.train(_spec(tmp_path), tmp_path / "run", progress="none", callbacks=[cb])
    rows = _rows(run.path)
    assert len(rows) == 3
    kinds = [c[0] for c in cb.calls]
    assert kinds[0] == "train_begin" and kinds[-1] == "train_end"
    # as Keras: epochs count from 0, logs are that epoch's figures under danlu's names
    ends = [(epoch, logs) for kind, epoch, logs in cb.calls if kind == "epoch_end"]
    assert [e for e, _ in ends] == [0, 1, 2]
    assert [logs for _, logs in ends] == rows
    assert {"train_loss_running_mean", "val_loss", "val_accuracy", "lr"} <= set(ends[0][1])
    assert [epoch for kind, epoch, _ in cb.calls if kind == "epoch_begin"] == [0, 1, 2]
    # batches count from 0 within each epoch; 105 training rows / 32 = 4 batches
    batches = [(batch, logs) for kind, batch, logs in cb.calls if kind == "batch_end"]
    assert [b for b, _ in batches] == [0, 1, 2, 3] * 3
    assert all(isinstance(logs["batch_loss"], float) for _, logs in batches)
    assert cb.calls[-1][2] == rows[-1]
    # self.model is the torch model being trained, as Keras sets it
    import torch

    assert isinstance(cb.calls[0][1], torch.nn.Module)


def test_keras_stop_training_stops_the_run_after_that_epoch(tmp_path):
    class StopAfterSecond:
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    run = danlu.train(_spec(tmp_path, epochs=5), tmp_path / "run", progress="none", callbacks=[StopAfterSecond()])
    assert len(_rows(run.path)) == 2
    assert "stop_training" in run.summary["run"]["stop_reason"]


def test_danlu_form_hooks_keep_working(tmp_path):
    class Danlu:
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, state):
            self.epochs.append((state.epoch, dict(state.history[-1])))

    cb = Danlu()
    run = danlu.train(_spec(tmp_path, epochs=2), tmp_path / "run", progress="none", callbacks=[cb])
    assert cb.epochs == [(1, _rows(run.path)[0]), (2, _rows(run.path)[1])]


class LightningEpoch:
    def on_train_epoch_end(self, trainer, pl_module):
        pass


class LightningValidation:
    def on_validation_end(self, trainer, pl_module):
        pass


class KerasBatchBegin:
    def on_train_batch_begin(self, batch, logs=None):
        pass


@pytest.mark.parametrize("cb, method, instead", [
    (LightningEpoch(), "on_train_epoch_end(trainer, pl_module)", "on_epoch_end(self, state)"),
    (LightningValidation(), "on_validation_end(trainer, pl_module)", "on_validation_end(self, state)"),
    (KerasBatchBegin(), "on_train_batch_begin(batch, logs=None)", "on_epoch_start(self, state)"),
], ids=lambda v: type(v).__name__ if not isinstance(v, str) else None)
def test_hooks_danlu_cannot_call_are_refused_in_one_line_before_anything_is_written(cb, method, instead, tmp_path):
    with pytest.raises(UserError) as got:
        danlu.train(_spec(tmp_path), tmp_path / "run", progress="none", callbacks=[cb])
    text = str(got.value)
    assert "\n" not in text
    assert text.startswith(f"callback {type(cb).__name__}: {method} is not a hook danlu can call; ")
    assert "danlu calls on_<event>(state)" in text and instead in text and "Keras form" in text
    assert not (tmp_path / "run").exists()


PLUGIN = '''
from danlu.training import register_callbacks


class LightningPrinter:
    def on_train_epoch_end(self, trainer, pl_module):
        print("epoch", trainer.current_epoch)


register_callbacks("lightning_printer", lambda recipe, run_dir, progress: [LightningPrinter()])
'''


def test_cli_refuses_a_lightning_callback_from_a_plugin_with_exit_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "lightning_plugin.py").write_text(PLUGIN)
    (tmp_path / "r.yaml").write_text("plugins: [lightning_plugin]\ndata: {source: sklearn, name: iris}\n"
                                     "model: {kind: mlp}\ntrain: {epochs: 1}\noutput: {progress: none}\n")
    got = subprocess.run([sys.executable, "-m", "danlu", "train", str(tmp_path / "r.yaml"), "--run-dir",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in got.stderr, got.stderr
    assert ("callback LightningPrinter: on_train_epoch_end(trainer, pl_module) is not a hook danlu can call; "
            "danlu calls on_<event>(state) (here: on_epoch_end(self, state))") in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_danlu_hook_with_a_logs_parameter_stays_a_danlu_hook(tmp_path):
    class StateFirst:
        def __init__(self):
            self.got = []

        def on_epoch_end(self, state, logs=None):
            self.got.append((state.epoch, logs))

    cb = StateFirst()
    danlu.train(_spec(tmp_path, epochs=2), tmp_path / "run", progress="none", callbacks=[cb])
    assert cb.got == [(1, None), (2, None)]
