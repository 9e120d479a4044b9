"""Loss, optimizer and schedule factory: each piece against a hand-written formula or torch itself."""
import json
import math
import types

import pytest
import torch
import torch.nn.functional as F

from danlu.errors import CheckpointError, RecipeError
from danlu.training._factory import (
    build_loss,
    build_optimizer,
    build_schedule,
    output_dim,
    resolve_loss_kind,
    scores_to_proba,
)

CLS3 = types.SimpleNamespace(task="classification", n_classes=3, n_targets=1)
CLS2 = types.SimpleNamespace(task="classification", n_classes=2, n_targets=1)
REG1 = types.SimpleNamespace(task="regression", n_classes=None, n_targets=1)
REG2 = types.SimpleNamespace(task="regression", n_classes=None, n_targets=2)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


# --- loss kinds ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind, info, expected", [
    ("auto", CLS3, "cross_entropy"), ("auto", CLS2, "cross_entropy"), ("auto", REG1, "mse"),
    ("hinge", CLS3, "hinge"), ("hinge", CLS2, "hinge"), ("bce", CLS2, "bce"), ("huber", REG2, "huber"),
])
def test_resolve_loss_kind(kind, info, expected):
    assert resolve_loss_kind({"kind": kind}, info) == expected


@pytest.mark.parametrize("kind, info, message", [
    ("mse", CLS3, "loss.kind mse is for regression, but the task is classification"),
    ("mae", CLS2, "is for regression"),
    ("huber", CLS3, "is for regression"),
    ("cross_entropy", REG1, "loss.kind cross_entropy is for classification, but the task is regression"),
    ("bce", REG1, "is for classification"),
    ("hinge", REG2, "is for classification"),
    ("exponential", REG1, "is for classification"),
    ("bce", CLS3, "loss.kind bce needs exactly 2 classes, the data has 3"),
    ("exponential", CLS3, "needs exactly 2 classes"),
])
def test_loss_task_mismatch_is_a_recipe_error(kind, info, message):
    with pytest.raises(RecipeError, match=message):
        resolve_loss_kind({"kind": kind}, info, source="r.yaml")
    with pytest.raises(RecipeError, match="^r.yaml: "):
        build_loss({"kind": kind}, info, source="r.yaml")


def test_unknown_loss_kind_is_a_recipe_error():
    with pytest.raises(RecipeError, match="did you mean 'hinge'"):
        build_loss({"kind": "hinje"}, CLS3)


@pytest.mark.parametrize("kind, info, expected", [
    ("cross_entropy", CLS3, 3), ("cross_entropy", CLS2, 2), ("hinge", CLS3, 3), ("hinge", CLS2, 1),
    ("bce", CLS2, 1), ("exponential", CLS2, 1), ("mse", REG1, 1), ("mae", REG2, 2),
])
def test_output_dim(kind, info, expected):
    assert output_dim(kind, info) == expected


# --- loss values against hand-written formulas -----------------------------------------------

def test_mse_mae_huber_single_target(gen):
    out = torch.randn(8, 1, generator=gen) * 3
    y = torch.randn(8, generator=gen)  # (N,) targets meet an (N, 1) head
    diff = out[:, 0] - y
    torch.testing.assert_close(build_loss({"kind": "mse"}, REG1)(out, y), (diff ** 2).mean())
    torch.testing.assert_close(build_loss({"kind": "mae"}, REG1)(out, y), diff.abs().mean())
    delta = 0.7
    huber = torch.where(diff.abs() <= delta, 0.5 * diff ** 2, delta * (diff.abs() - 0.5 * delta))
    assert (diff.abs() > delta).any() and (diff.abs() <= delta).any()  # both branches exercised
    torch.testing.assert_close(build_loss({"kind": "huber", "delta": delta}, REG1)(out, y), huber.mean())


def test_regression_losses_multi_target(gen):
    out = torch.randn(6, 2, generator=gen)
    y = torch.randn(6, 2, generator=gen)
    torch.testing.assert_close(build_loss({"kind": "auto"}, REG2)(out, y), ((out - y) ** 2).mean())
    per_sample = build_loss({"kind": "mae"}, REG2, reduction="none")(out, y)
    torch.testing.assert_close(per_sample, (out - y).abs().mean(1))
    with pytest.raises(ValueError, match="do not match"):
        build_loss({"kind": "mse"}, REG2)(out, y[:, :1])


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_with_label_smoothing(gen, smoothing):
    out = torch.randn(10, 3, generator=gen)
    y = torch.randint(0, 3, (10,), generator=gen)
    log_p = torch.log_softmax(out, dim=1)
    nll = -log_p[torch.arange(10), y]
    expected = ((1 - smoothing) * nll - smoothing * log_p.mean(1)).mean()
    loss = build_loss({"kind": "cross_entropy", "label_smoothing": smoothing}, CLS3)
    torch.testing.assert_close(loss(out, y), expected)
    assert loss.kind == "cross_entropy"


def test_binary_losses(gen):
    f = torch.randn(12, 1, generator=gen) * 2
    y = torch.randint(0, 2, (12,), generator=gen)
    p = torch.sigmoid(f[:, 0])
    yf = y.float()
    s = 2 * yf - 1
    bce = -(yf * torch.log(p) + (1 - yf) * torch.log(1 - p)).mean()
    torch.testing.assert_close(build_loss({"kind": "bce"}, CLS2)(f, y), bce)
    torch.testing.assert_close(build_loss({"kind": "exponential"}, CLS2)(f, y), torch.exp(-s * f[:, 0]).mean())
    hinge = torch.clamp(1 - s * f[:, 0], min=0)
    assert (hinge == 0).any() and (hinge > 0).any()
    torch.testing.assert_close(build_loss({"kind": "hinge"}, CLS2)(f, y), hinge.mean())


def test_multiclass_hinge_is_the_crammer_singer_style_margin(gen):
    out = torch.randn(9, 3, generator=gen)
    y = torch.randint(0, 3, (9,), generator=gen)
    expected = []
    for row, label in zip(out, y):
        margins = [max(0.0, 1 - row[label].item() + row[j].item()) for j in range(3) if j != label]
        expected.append(sum(margins) / 3)
    torch.testing.assert_close(build_loss({"kind": "hinge"}, CLS3)(out, y), torch.tensor(expected).mean())


def test_reduction_none_gives_per_sample_losses(gen):
    out = torch.randn(5, 3, generator=gen)
    y = torch.randint(0, 3, (5,), generator=gen)
    per_sample = build_loss({}, CLS3, reduction="none")(out, y)
    assert per_sample.shape == (5,)
    torch.testing.assert_close(per_sample.mean(), F.cross_entropy(out, y))


def test_losses_have_gradients(gen):
    out = torch.randn(4, 1, generator=gen, requires_grad=True)
    build_loss({"kind": "exponential"}, CLS2)(out, torch.tensor([0, 1, 1, 0])).backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()


# --- scores to probabilities ---------------------------------------------------------------

@pytest.mark.parametrize("kind, info, width", [
    ("cross_entropy", CLS3, 3), ("hinge", CLS3, 3), ("cross_entropy", CLS2, 2),
    ("bce", CLS2, 1), ("exponential", CLS2, 1), ("hinge", CLS2, 1),
])
def test_probabilities_rows_sum_to_one(gen, kind, info, width):
    out = torch.randn(7, width, generator=gen) * 4
    proba = scores_to_proba(out, kind, info)
    assert proba.shape == (7, info.n_classes)
    assert (proba >= 0).all()
    torch.testing.assert_close(proba.sum(1), torch.ones(7))
    if width == 1:  # positive score means class 1
        assert torch.equal(proba.argmax(1), (out[:, 0] > 0).long())
    else:
        assert torch.equal(proba.argmax(1), out.argmax(1))


def test_single_logit_probabilities():
    f = torch.tensor([[0.0], [1.0], [-2.0]])
    torch.testing.assert_close(scores_to_proba(f, "bce", CLS2)[:, 1], torch.sigmoid(f[:, 0]))
    # The exponential loss is minimised by half the log-odds, so p = sigmoid(2 f).
    torch.testing.assert_close(scores_to_proba(f, "exponential", CLS2)[:, 1], torch.sigmoid(2 * f[:, 0]))
    torch.testing.assert_close(scores_to_proba(f, "bce", CLS2)[:, 0], 1 - torch.sigmoid(f[:, 0]))


def test_regression_predictions_shape():
    assert scores_to_proba(torch.randn(5, 1), "mse", REG1).shape == (5,)
    assert scores_to_proba(torch.randn(5, 2), "mae", REG2).shape == (5, 2)


# --- optimizers ----------------------------------------------------------------------------

def _one_step(optimizer, param):
    optimizer.zero_grad()
    ((param - 1.0) ** 2).sum().backward()
    optimizer.step()
    return param.detach().clone()


@pytest.mark.parametrize("cfg, oracle", [
    ({"kind": "sgd", "lr": 0.1}, lambda p: torch.optim.SGD(p, lr=0.1)),
    ({"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ({"kind": "adagrad", "lr": 0.05, "eps": 1e-6}, lambda p: torch.optim.Adagrad(p, lr=0.05, eps=1e-6)),
    ({"kind": "rmsprop", "lr": 0.01, "alpha": 0.9, "momentum": 0.5},
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, momentum=0.5)),
    ({"kind": "adam", "lr": 0.01, "betas": [0.8, 0.99]}, lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99))),
    ({"kind": "adamw", "lr": 0.01, "weight_decay": 0.1},
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
    ({}, lambda p: torch.optim.Adam(p, lr=1e-3)),
])
def test_optimizer_matches_torch(gen, cfg, oracle):
    start = torch.randn(5, generator=gen)
    ours_param = start.clone().requires_grad_()
    torch_param = start.clone().requires_grad_()
    ours, theirs = build_optimizer(cfg, [ours_param]), oracle([torch_param])
    assert type(ours) is type(theirs)
    for _ in range(3):
        torch.testing.assert_close(_one_step(ours, ours_param), _one_step(theirs, torch_param))
    assert not torch.equal(ours_param.detach(), start)


def test_optimizer_respects_param_groups():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = build_optimizer({"kind": "sgd", "lr": 0.1}, [{"params": [a]}, {"params": [b], "lr": 0.01}])
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]


def test_nesterov_without_momentum_is_a_recipe_error():
    with pytest.raises(RecipeError, match="optimizer.nesterov needs optimizer.momentum > 0"):
        build_optimizer({"kind": "sgd", "nesterov": True}, [torch.nn.Parameter(torch.zeros(1))])


def test_bad_optimizer_values_are_recipe_errors():
    with pytest.raises(RecipeError, match="optimizer.lr must be > 0"):
        build_optimizer({"lr": -0.1}, [torch.nn.Parameter(torch.zeros(1))])


# --- schedules -----------------------------------------------------------------------------

def make_schedule(cfg, lr=0.1, steps_per_epoch=10, epochs=10, mode="min", groups=None):
    params = groups or [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=lr)
    return build_schedule(cfg, optimizer, steps_per_epoch, epochs, mode=mode), optimizer


def run_steps(schedule, n):
    lrs = []
    for _ in range(n):
        lrs.append(schedule.lr())
        schedule.step()
    return lrs


def test_constant_schedule_keeps_the_rate():
    schedule, optimizer = make_schedule({})
    assert run_steps(schedule, 50) == [0.1] * 50
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_warmup_starts_small_and_reaches_the_base_rate():
    schedule, optimizer = make_schedule({"kind": "constant", "warmup_epochs": 1, "warmup_steps": 5})
    assert schedule.warmup_steps == 15
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 16)  # set before the first step
    lrs = [schedule.lr_at(s) for s in range(20)]
    assert lrs[0] == pytest.approx(0.1 / 16)
    assert all(a < b for a, b in zip(lrs[:15], lrs[1:16]))               # rising linearly
    assert lrs[15:] == [pytest.approx(0.1)] * 5


def test_cosine_and_linear_end_at_min_lr():
    for kind in ("cosine", "linear"):
        schedule, _ = make_schedule({"kind": kind, "min_lr": 0.001, "warmup_steps": 10})
        assert schedule.lr_at(10) == pytest.approx(0.1)                  # decay starts after warmup
        assert schedule.lr_at(100) == pytest.approx(0.001)
        assert schedule.lr_at(500) == pytest.approx(0.001)
    cosine, _ = make_schedule({"kind": "cosine"})
    assert cosine.lr_at(50) == pytest.approx(0.05)                      # half way: the mean
    linear, _ = make_schedule({"kind": "linear"})
    assert linear.lr_at(25) == pytest.approx(0.075)


def test_step_decays_at_the_right_epochs():
    schedule, optimizer = make_schedule({"kind": "step", "step_size": 3, "gamma": 0.5})
    lrs = run_steps(schedule, 100)
    for step, lr in enumerate(lrs):
        assert lr == pytest.approx(0.1 * 0.5 ** (step // 30))
    assert lrs[29] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.05)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)


def test_multistep_decays_at_milestones():
    schedule, _ = make_schedule({"kind": "multistep", "milestones": [2, 5], "gamma": 0.1})
    assert schedule.lr_at(19) == pytest.approx(0.1)
    assert schedule.lr_at(20) == pytest.approx(0.01)
    assert schedule.lr_at(49) == pytest.approx(0.01)
    assert schedule.lr_at(50) == pytest.approx(0.001)
    with pytest.raises(RecipeError, match="schedule.milestones is required"):
        make_schedule({"kind": "multistep"})


def test_exponential_matches_gamma_power_epoch():
    schedule, _ = make_schedule({"kind": "exponential", "gamma": 0.8}, steps_per_epoch=7)
    for epoch in range(10):
        assert schedule.lr_at(7 * epoch) == pytest.approx(0.1 * 0.8 ** epoch)
    lrs = [schedule.lr_at(s) for s in range(70)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))                     # smooth, every step


@pytest.mark.parametrize("max_lr, peak", [(0.5, 0.5), (None, 1.0)])
def test_onecycle_peaks_at_max_lr(max_lr, peak):
    schedule, _ = make_schedule({"kind": "onecycle", "max_lr": max_lr})
    lrs = [schedule.lr_at(s) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1)
    assert max(lrs) == pytest.approx(peak)
    assert lrs.index(max(lrs)) == 29                 # PyTorch's OneCycleLR: phase one ends at 0.3 * T - 1
    assert lrs[99] == pytest.approx(0.1 * 1e-4)      # ... and phase two at the last step, T - 1
    assert lrs[100] == pytest.approx(0.1 * 1e-4)     # past the end it stays there
    assert all(a <= b for a, b in zip(lrs[:29], lrs[1:30]))
    assert all(a >= b for a, b in zip(lrs[29:99], lrs[30:100]))


def test_plateau_decays_after_patience():
    schedule, optimizer = make_schedule({"kind": "plateau", "patience": 2, "factor": 0.5})
    for value in (1.0, 0.9):                  # improving
        schedule.epoch_end(value)
    assert schedule.lr() == pytest.approx(0.1)
    schedule.epoch_end(0.95)                  # one bad epoch: not yet
    assert schedule.lr() == pytest.approx(0.1)
    schedule.epoch_end(float("nan"))          # nan never counts as an improvement
    assert schedule.lr() == pytest.approx(0.05)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    schedule.epoch_end(0.91)
    assert schedule.lr() == pytest.approx(0.05)
    schedule.epoch_end(0.8)                   # improvement resets the count
    schedule.epoch_end(0.85)
    assert schedule.lr() == pytest.approx(0.05)
    schedule.epoch_end(None)                  # no validation this epoch: nothing happens
    schedule.epoch_end(0.85)
    assert schedule.lr() == pytest.approx(0.025)


def test_plateau_max_mode_and_floor():
    schedule, _ = make_schedule({"kind": "plateau", "patience": 0, "factor": 0.1, "min_lr": 0.002}, mode="max")
    schedule.epoch_end(0.5)
    schedule.epoch_end(0.7)                   # higher is better
    assert schedule.lr() == pytest.approx(0.1)
    schedule.epoch_end(0.6)
    assert schedule.lr() == pytest.approx(0.01)
    schedule.epoch_end(0.6)
    assert schedule.lr() == pytest.approx(0.002)  # 0.001 would be below min_lr


def test_epoch_end_is_a_no_op_for_step_based_kinds():
    schedule, _ = make_schedule({"kind": "cosine"})
    before = schedule.state_dict()
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        schedule.epoch_end(value)
    assert schedule.state_dict() == before


def test_every_param_group_keeps_its_own_base_rate():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1)
    schedule = build_schedule({"kind": "step", "step_size": 1, "gamma": 0.5}, optimizer, 4, 5)
    run_steps(schedule, 8)
    assert [g["lr"] for g in optimizer.param_groups] == [pytest.approx(0.025), pytest.approx(0.0025)]


@pytest.mark.parametrize("cfg", [
    {"kind": "cosine", "warmup_epochs": 0.5, "min_lr": 1e-4},
    {"kind": "onecycle"},
    {"kind": "plateau", "patience": 1, "factor": 0.5},
])
def test_state_dict_round_trip_continues_identically(cfg):
    values = [1.0, 0.8, 0.9, 0.95, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79]

    def run(schedule, epochs):
        lrs = []
        for epoch in epochs:
            lrs += run_steps(schedule, 10)
            schedule.epoch_end(values[epoch])
        return lrs

    straight, _ = make_schedule(cfg)
    expected = run(straight, range(10))

    first, _ = make_schedule(cfg)
    head = run(first, range(4))
    saved = json.loads(json.dumps(first.state_dict()))                  # through JSON, as on disk
    # A resumed run builds a fresh optimizer and schedule, then loads the saved state.
    resumed, optimizer = make_schedule(cfg)
    resumed.load_state_dict(saved)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(first.lr())
    assert head + run(resumed, range(4, 10)) == pytest.approx(expected)


def test_schedule_built_after_optimizer_resume_uses_the_base_rate():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedule = build_schedule({"kind": "step", "step_size": 1, "gamma": 0.5}, optimizer, 2, 5)
    run_steps(schedule, 4)
    saved_optimizer, saved_schedule = optimizer.state_dict(), schedule.state_dict()

    fresh = torch.optim.SGD([param], lr=0.1)
    fresh.load_state_dict(saved_optimizer)   # its lr is now the decayed 0.025
    resumed = build_schedule({"kind": "step", "step_size": 1, "gamma": 0.5}, fresh, 2, 5)
    resumed.load_state_dict(saved_schedule)
    assert resumed.lr_at(0) == pytest.approx(0.1)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.025)


def test_incomplete_schedule_state_is_a_checkpoint_error():
    schedule, _ = make_schedule({})
    with pytest.raises(CheckpointError, match="schedule state lacks bad_epochs, best"):
        schedule.load_state_dict({"step": 3, "scale": 1.0})


def test_bad_schedule_kind_is_a_recipe_error():
    with pytest.raises(RecipeError, match="did you mean 'cosine'"):
        make_schedule({"kind": "cosin"})


def test_lr_at_is_pure():
    schedule, _ = make_schedule({"kind": "cosine"})
    before = schedule.state_dict()
    assert schedule.lr_at(37) == pytest.approx(0.1 * (1 + math.cos(math.pi * 0.37)) / 2)
    assert schedule.state_dict() == before


def test_rescale_lowers_the_whole_schedule_and_survives_state_round_trip():
    import torch

    from danlu.training._factory import build_schedule

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = build_schedule({"kind": "cosine"}, opt, steps_per_epoch=10, epochs=3)
    sched.step()
    before = sched.lr()
    sched.rescale(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(before * 0.5)
    sched.step()
    assert sched.lr() == pytest.approx(sched.lr_at(2))
    opt2 = torch.optim.SGD([p], lr=0.1)
    other = build_schedule({"kind": "cosine"}, opt2, steps_per_epoch=10, epochs=3)
    other.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
