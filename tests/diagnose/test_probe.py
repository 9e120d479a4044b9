"""The monitors' shared probe pass: the fit monitor's cheap figures equal evaluate_outputs' bit for
bit, and the dead units sliced from the 1024-row pass equal those of a pass over the first 256 rows."""
import json
from types import SimpleNamespace

import pytest
import torch

from danlu.diagnose import _probe
from danlu.diagnose._fit import primary_figures
from danlu.training import evaluate_outputs, model_outputs


def _info(task, n_classes=None, n_targets=1):
    return SimpleNamespace(task=task, n_classes=n_classes, n_targets=n_targets, positive=1, classes=None)


def _cases():
    g = torch.Generator().manual_seed(0)
    n = 300
    ce = torch.nn.CrossEntropyLoss()
    bce = lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), y.float())  # noqa: E731
    mse = torch.nn.MSELoss()
    labels10 = torch.randint(0, 10, (n,), generator=g)
    labels2 = torch.randint(0, 2, (n,), generator=g)
    tied = torch.zeros(n, 10)
    tied[:, 3] = 1.0
    tied[::7, 5] = 1.0          # ties between two classes: argmax takes the first, as compute_metrics does
    nan = torch.randn(n, 10, generator=g)
    nan[4] = float("nan")
    target1, target3 = torch.randn(n, generator=g), torch.randn(n, 3, generator=g)
    constant = torch.full((n, 2), 0.1)
    yield "multiclass", torch.randn(n, 10, generator=g), labels10, ce, "cross_entropy", _info("classification", 10)
    yield "multiclass ties", tied, labels10, ce, "cross_entropy", _info("classification", 10)
    yield "multiclass nan", nan, labels10, ce, "cross_entropy", _info("classification", 10)
    yield "binary two logits", torch.randn(n, 2, generator=g), labels2, ce, "cross_entropy", _info("classification", 2)
    yield "binary one logit", torch.randn(n, 1, generator=g), labels2, bce, "bce", _info("classification", 2)
    yield "regression 1", target1[:, None] + torch.randn(n, 1, generator=g), target1, \
        lambda o, y: mse(o.reshape(-1), y), "mse", _info("regression")
    yield "regression 3", target3 + 0.5 * torch.randn(n, 3, generator=g), target3, mse, "mse", \
        _info("regression", n_targets=3)
    yield "regression constant target", torch.randn(n, 2, generator=g), constant, mse, "mse", \
        _info("regression", n_targets=2)
    yield "regression perfect", target3.clone(), target3, mse, "mse", _info("regression", n_targets=3)
    yield "regression one row", target3[:1] + 1, target3[:1], mse, "mse", _info("regression", n_targets=3)


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0])
def test_primary_figures_equal_evaluate_outputs(case):
    _, out, y, loss_fn, kind, info = case
    metric = "accuracy" if info.task == "classification" else "r2"
    want = evaluate_outputs(out, y, loss_fn, kind, info)
    value, loss = primary_figures(out, y, loss_fn, kind, info, metric)
    assert (value, loss) == pytest.approx((want[metric], want["loss"]), nan_ok=True, abs=0, rel=0)
    assert type(value) is float


def test_primary_figures_multilabel_falls_back_to_evaluate_outputs():
    g = torch.Generator().manual_seed(1)
    out, y = torch.randn(50, 4, generator=g), torch.randint(0, 2, (50, 4), generator=g).float()
    info = SimpleNamespace(task="multilabel", n_classes=None, n_targets=4, positive=1, classes=list("abcd"))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    want = evaluate_outputs(out, y, loss_fn, "bce", info)
    assert primary_figures(out, y, loss_fn, "bce", info, "accuracy") == (want["accuracy"], want["loss"])


class _SeqFirst(torch.nn.Module):
    """A ReLU whose output is (features, rows): it cannot be sliced by rows."""

    def __init__(self):
        super().__init__()
        self.lin, self.act, self.head = torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.act(self.lin(x).T).T)


def _models():
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                              torch.nn.Dropout(0.5), torch.nn.Linear(32, 16), torch.nn.ReLU6(), torch.nn.Linear(16, 3))
    mlp[1].running_mean.normal_()   # running statistics of their own, as after training
    mlp[1].running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        mlp[0].bias[:12] = -50.0   # dead units, to be found
    cnn = torch.nn.Sequential(torch.nn.Unflatten(1, (2, 2, 2)), torch.nn.Conv2d(2, 4, 2, padding=1),
                              torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Dropout2d(0.3),
                              torch.nn.Flatten(), torch.nn.Linear(36, 3))
    shared = torch.nn.Module()   # one ReLU module called twice: its first call counts
    shared.a, shared.b, shared.act, shared.head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8), torch.nn.ReLU(), \
        torch.nn.Linear(8, 3)
    shared.forward = lambda x: shared.head(shared.act(shared.b(shared.act(shared.a(x)))))
    # normalised over the rows of the pass even in evaluation mode: a 1024-row pass is not sliced
    batch_stats = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16, track_running_stats=False),
                                      torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with torch.no_grad():   # unit 0 is feature 0, which _state makes large after row 256
        batch_stats[0].weight[0] = torch.eye(8)[0]
        batch_stats[0].bias[0] = 0.0
    return {"mlp batchnorm dropout": mlp, "cnn batchnorm dropout": cnn, "shared relu": shared,
            "sequence first": _SeqFirst(), "batchnorm of the batch": batch_stats}


def _state(model, rows):
    g = torch.Generator().manual_seed(2)
    X, y = torch.randn(rows, 8, generator=g), torch.randint(0, 3, (rows,), generator=g)
    X[256:, 0] += 100.0   # rows a batch statistic over more than the first 256 rows would see
    model.train()   # as during training: the probe passes in evaluation mode and restores it
    return SimpleNamespace(model=model, splits={"train": (X, y)}, epoch=3, step=40)


def _alive_alone(model, X):
    """The dead units as the divergence monitor found them before: a pass over these rows only."""
    alive = {}

    def hook(name):
        def seen(module, inputs, output):
            if name not in alive and isinstance(output, torch.Tensor) and output.dim() >= 2:
                alive[name] = (output.detach().flatten(1) != 0).any(0)
        return seen

    handles = [m.register_forward_hook(hook(name)) for name, m in _probe.relu_layers(model)]
    model_outputs(model, X)
    for h in handles:
        h.remove()
    return alive


@pytest.mark.parametrize("rows", [100, 700, 3000])
@pytest.mark.parametrize("name", list(_models()))
def test_dead_units_of_the_shared_pass_equal_a_pass_of_their_own(name, rows):
    model = _models()[name]
    state = _state(model, rows)
    _probe.want_rows(state, "fit", lambda state: 1024)
    alive = _probe.train_alive(state, 256)
    want = _alive_alone(model, state.splits["train"][0][:256])
    assert alive.keys() == want.keys() and alive
    for layer in want:
        assert torch.equal(alive[layer], want[layer]), layer
    assert model.training
    # ... and the outputs of the same pass are model_outputs' on the first 1024 rows
    out = _probe.train_outputs(state, 1024)
    assert torch.equal(out, model_outputs(model, state.splits["train"][0][:1024]))
    if name == "mlp batchnorm dropout":
        assert alive["2"][:12].sum() == 0 and alive["2"][12:].sum() > 10


class _Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.act, self.head = torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
        self.rows = []

    def forward(self, x):
        self.rows.append(len(x))
        return self.head(self.act(self.lin(x)))


def test_one_pass_per_weights_and_a_fresh_one_when_they_change():
    model = _Counting()
    state = _state(model, 2000)
    needed = [1024]
    _probe.want_rows(state, "fit", lambda state: needed[0])
    alive = _probe.train_alive(state, 256)
    out = _probe.train_outputs(state, 1024)
    assert model.rows == [1024]          # one pass serves both
    assert _probe.train_alive(state, 256) is alive and _probe.train_outputs(state, 1024) is out
    with torch.no_grad():                # weights swapped in place (an average put in, a rollback)
        model.lin.weight.copy_(model.lin.weight * 0.5)
    out2 = _probe.train_outputs(state, 1024)
    assert model.rows == [1024, 1024] and not torch.equal(out, out2)
    assert torch.equal(out2, model_outputs(model, state.splits["train"][0][:1024]))
    state.step += 1                      # a new step: a new pass, even with the same weights
    _probe.train_outputs(state, 1024)
    assert len(model.rows) == 4
    _probe.drop(state)
    _probe.train_alive(state, 256)
    assert len(model.rows) == 5 and model.rows[-1] == 1024   # the wanted rows are kept
    needed[0] = 0                        # an epoch the fit monitor does not score: 256 rows only
    state.step += 1
    _probe.train_alive(state, 256)
    assert model.rows[-1] == 256


# -- the validation pass's outputs stand in for a pass of their own ---------------------------

@pytest.mark.parametrize("rows", [300, 2500])
def test_validation_outputs_equal_a_pass_of_their_own(rows):
    model = _models()["mlp batchnorm dropout"]
    state = _state(model, 10)
    Xv = torch.randn(rows, 8, generator=torch.Generator().manual_seed(3))
    state.splits["validation"] = (Xv, torch.zeros(rows))
    caught = _probe.ValidationOutputs()
    caught.start(state)
    model_outputs(model, Xv)           # the validation pass
    out = caught.outputs(state, 1024)
    assert torch.equal(out, model_outputs(model, Xv[:1024]))
    assert not model._forward_hooks    # the hook is gone
    assert caught.outputs(state, 1024) is None   # taken once


def test_validation_outputs_refused_where_the_call_would_differ():
    model = _models()["mlp batchnorm dropout"]
    state = _state(model, 10)
    Xv = torch.randn(300, 8, generator=torch.Generator().manual_seed(3))
    state.splits["validation"] = (Xv, torch.zeros(300))
    caught = _probe.ValidationOutputs()

    def attempt(pass_, after=lambda: None, rows=1024):
        caught.start(state)
        pass_()
        after()
        return caught.outputs(state, rows)

    assert attempt(lambda: model_outputs(model, Xv)) is not None
    assert attempt(lambda: model_outputs(model, Xv.clone())) is None            # other rows
    assert attempt(lambda: model_outputs(model, Xv[1:])) is None                # other rows
    assert attempt(lambda: model_outputs(model, Xv), rows=100) is None          # fewer rows wanted
    with torch.no_grad():
        assert attempt(lambda: model(Xv)) is None                                # training mode
    with torch.no_grad():   # weights swapped back after validation (an average put in for it)
        assert attempt(lambda: model_outputs(model, Xv), lambda: model[0].weight.mul_(1.0)) is None
    assert attempt(lambda: model_outputs(model, Xv), lambda: Xv.add_(0.0)) is None   # rows changed in place
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attempt(lambda: model_outputs(model, Xv)) is None                 # another precision
    assert attempt(lambda: None) is None                                         # no validation pass


# -- the monitors find the same with the shared and skipped passes as without ------------------

def _findings(tmp_path, name, spec):
    from diagnose_testkit import run

    r = run(tmp_path, name, **spec)
    rows = [json.loads(line) for line in (r.path / "events.jsonl").read_text().splitlines()]
    return rows, r.summary.get("test")


@pytest.mark.parametrize("scenario", ["overfit_gap", "lr_high_adam", "healthy"])
def test_monitors_find_the_same_as_with_passes_of_their_own(tmp_path, monkeypatch, scenario):
    from diagnose_scenarios import SCENARIOS

    from danlu.diagnose._fit import FitMonitor

    spec = next(s for s in SCENARIOS if s.name == scenario).spec(0, tmp_path)
    if scenario == "healthy":
        spec["train"] = {**spec.get("train", {}), "ema": 0.9}   # other weights in for validation
    used = {"validation": 0, "settled": 0}
    outputs, settled = _probe.ValidationOutputs.outputs, FitMonitor._gap_settled

    def count(key, fn, hit):
        def wrapped(*args):
            value = fn(*args)
            used[key] += hit(value)
            return value
        return wrapped

    monkeypatch.setattr(_probe.ValidationOutputs, "outputs", count("validation", outputs, lambda v: v is not None))
    monkeypatch.setattr(FitMonitor, "_gap_settled", count("settled", settled, bool))
    shared = _findings(tmp_path, "shared", spec)
    assert used["validation"] > 0   # the prediction shares were read from the validation pass
    assert used["settled"] > 0 or scenario == "overfit_gap"   # ... and settled gaps not scored
    # each monitor on its own again: no validation outputs reused, the gap scored every epoch,
    # the dead units from a pass over their own 256 rows
    monkeypatch.setattr(_probe.ValidationOutputs, "outputs", lambda self, state, rows: None)
    monkeypatch.setattr(FitMonitor, "_gap_settled", lambda self, state: False)
    monkeypatch.setattr(_probe, "_wanted", lambda state, probe: 0)
    alone = _findings(tmp_path, "alone", spec)
    assert shared == alone
    assert shared[0], "the run reports something to compare"


@pytest.mark.parametrize("metric", ["accuracy", "r2"])
def test_a_settled_gap_check_finds_what_the_scored_one_finds(monkeypatch, metric):
    """Epochs whose training rows are not scored (the gap cannot open) leave the findings and the
    counts as scoring them would, on sequences that straddle the threshold with perfect training
    scores."""
    import random

    from danlu.diagnose import _fit

    line = _fit._GAP[metric]
    rnd = random.Random(0)
    task = "classification" if metric == "accuracy" else "regression"
    for _ in range(300):
        epochs = []
        for _ in range(rnd.randint(1, 10)):
            val = 1.0 - rnd.choice([line, line / 2, 0.0, 0.01, 2 * line, 1.0]) * rnd.choice([0.999, 1.0, 1.001])
            train = rnd.choice([1.0, val, min(1.0, val + line), min(1.0, val + line / 2)])
            epochs.append((val, train, rnd.choice([0.0, 1e-3, 1.0])))
        found, patience = [], rnd.choice([1, 2, 3])
        for skip in (True, False):
            fit = _fit.FitMonitor(patience=patience)
            if not skip:
                monkeypatch.setattr(fit, "_gap_settled", lambda state: False)
            rows = []
            for epoch, (val, train, train_loss) in enumerate(epochs):
                state = SimpleNamespace(epoch=epoch, metrics={f"val_{metric}": val, "val_loss": 1.0},
                                        splits={"train": None, "validation": None}, model=torch.nn.Linear(1, 1),
                                        info=SimpleNamespace(task=task))
                monkeypatch.setattr(_fit, "_epoch_figures", lambda state, v=val, t=train, tl=train_loss:
                                    (metric, t, v, tl, 1.0))
                rows.append((fit._gap_facts(state), fit.gap_epochs, fit.gap_since))
            found.append(rows)
        assert found[0] == found[1]
