"""The loop's extension points: one loss hook (compute_loss), the strategy every batch goes through
(no multi-process branch in the loop), and on(event, fn, every=/once=) filters."""
import copy
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import danlu
from danlu.errors import UserError
from danlu.training._state import Event, on
from danlu.training._conformance import TINY_RECIPE

LOOP = Path(__file__).resolve().parents[2] / "danlu" / "training" / "_loop.py"


def _spec(tmp_path, epochs=2):
    spec = copy.deepcopy(TINY_RECIPE)
    spec["output"]["runs_dir"] = str(tmp_path)
    spec["train"]["epochs"] = epochs
    return spec


def _same_weights(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


class RecipeLoss:
    """compute_loss that is the default loss written out: the run must not change by a bit."""

    def __init__(self):
        self.calls = 0

    def compute_loss(self, state, xb, yb):
        self.calls += 1
        return state.loss_fn(state.net(xb), yb)


class Doubled:
    def compute_loss(self, state, xb, yb):
        return 2 * state.loss_fn(state.net(xb), yb)


def test_one_compute_loss_is_the_batch_loss(tmp_path):
    plain = danlu.train(_spec(tmp_path), tmp_path / "plain", progress="none")
    hook = RecipeLoss()
    same = danlu.train(_spec(tmp_path), tmp_path / "same", progress="none", callbacks=[hook])
    assert hook.calls == 2 * 4   # every training batch: 105 rows / 32 = 4 batches, 2 epochs
    assert _same_weights(plain.path, same.path)
    doubled = danlu.train(_spec(tmp_path), tmp_path / "doubled", progress="none", callbacks=[Doubled()])
    first = [json.loads(line) for line in (plain.path / "metrics.jsonl").read_text().splitlines()][0]
    second = [json.loads(line) for line in (doubled.path / "metrics.jsonl").read_text().splitlines()][0]
    assert not _same_weights(plain.path, doubled.path)
    # the first batch's loss is twice the plain one (same weights before any step)
    assert second["train_loss_running_mean"] != first["train_loss_running_mean"]


def test_two_compute_loss_callbacks_are_refused_naming_both(tmp_path):
    with pytest.raises(UserError, match=r"^callbacks RecipeLoss and Doubled both define compute_loss; "):
        danlu.train(_spec(tmp_path), tmp_path / "run", progress="none", callbacks=[RecipeLoss(), Doubled()])
    assert not (tmp_path / "run").exists()


def test_the_loop_has_no_capability_branch():
    source = LOOP.read_text()
    for word in ("dist", "ddp", "extra", "step_loss", "distill", "quant", "lora", "objective ="):
        assert not re.search(rf"\b{word}", source, re.IGNORECASE), word


class HalfBatches:
    """A strategy that keeps the first half of every batch at weight 1: the loop must go through it."""

    def __init__(self):
        self.shards = self.reduces = 0

    def shard(self, idx):
        self.shards += 1
        return idx[: len(idx) // 2], 1.0

    def forward_module(self, model):
        return model

    def reduce(self, loss):
        self.reduces += 1
        return loss


class Installs:
    def __init__(self, strategy):
        self.strategy = strategy

    def on_fit_start(self, state):
        self.before, state.strategy = state.strategy, self.strategy

    def on_fit_end(self, state):
        state.strategy = self.before


def test_every_batch_goes_through_the_state_strategy(tmp_path):
    strategy = HalfBatches()
    plain = danlu.train(_spec(tmp_path), tmp_path / "plain", progress="none")
    halved = danlu.train(_spec(tmp_path), tmp_path / "halved", progress="none", callbacks=[Installs(strategy)])
    assert strategy.shards == strategy.reduces == 8
    assert not _same_weights(plain.path, halved.path)


FILTERS = [  # (event, filter, the state.epoch values the function sees over 5 epochs)
    (Event.EPOCH_END, {}, [1, 2, 3, 4, 5]),
    (Event.EPOCH_END, {"every": 2}, [2, 4]),
    (Event.EPOCH_END, {"once": 3}, [3]),
    (Event.EPOCH_START, {"every": 2}, [1, 3]),       # state.epoch counts completed epochs: starts of epochs 2, 4
    (Event.VALIDATION_END, {"once": 1}, [0]),
    (Event.FIT_END, {"once": 1}, [5]),
]


def test_on_filters_call_counts(tmp_path):
    seen = [[] for _ in FILTERS]
    handlers = [on(event, lambda state, out=out: out.append(state.epoch), **kwargs)
                for (event, kwargs, _), out in zip(FILTERS, seen)]
    danlu.train(_spec(tmp_path, epochs=5), tmp_path / "run", progress="none", callbacks=handlers)
    assert seen == [expected for _, _, expected in FILTERS]


def test_on_every_batch_counts_batches_of_the_whole_run(tmp_path):
    seen = []
    handler = on(Event.BATCH_END, lambda state: seen.append((state.epoch, state.batch)), every=3)
    danlu.train(_spec(tmp_path, epochs=2), tmp_path / "run", progress="none", callbacks=[handler])
    assert seen == [(0, 3), (1, 2)]    # batches 3 and 6 of 4 + 4


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"once": -1}, {"every": 2, "once": 2}, {"every": 1.5}])
def test_bad_filters_are_one_line(kwargs):
    with pytest.raises(UserError, match=r"^on\(epoch_end, \.\.\.\): "):
        on(Event.EPOCH_END, print, **kwargs)


def test_a_callback_class_instead_of_an_instance_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^callbacks=\[RecipeLoss\]: give an instance, RecipeLoss\(\.\.\.\), not the class$"):
        danlu.train(_spec(tmp_path), tmp_path / "run", progress="none", callbacks=[RecipeLoss])
