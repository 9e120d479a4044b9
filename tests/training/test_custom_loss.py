"""Losses of your own: registered by name for recipes, or given as a callable from Python — each
against the same loss written by hand in torch."""
import types

import pytest
import torch
import torch.nn.functional as F

from danlu.errors import RecipeError, UserError
from danlu.training._factory import (
    OUTPUT_MODES,
    build_loss,
    loss_from_callable,
    loss_outputs,
    output_dim,
    register_loss,
    registered_losses,
    resolve_loss_kind,
    scores_to_proba,
    unregister_loss,
)

CLS3 = types.SimpleNamespace(task="classification", n_classes=3, n_targets=1, classes=["a", "b", "c"])
CLS2 = types.SimpleNamespace(task="classification", n_classes=2, n_targets=1, classes=[0, 1])
REG1 = types.SimpleNamespace(task="regression", n_classes=None, n_targets=1, classes=[])
REG2 = types.SimpleNamespace(task="regression", n_classes=None, n_targets=2, classes=[])


@pytest.fixture(autouse=True)
def clean_registry():
    before = set(registered_losses())
    yield
    for name in set(registered_losses()) - before:
        unregister_loss(name)


def focal(out, y, gamma=2.0):
    """Focal loss (Lin et al. 2017) the way one writes it with torch."""
    logp = F.log_softmax(out, dim=1).gather(1, y[:, None]).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


def focal_by_hand(out, y, gamma=2.0):
    """The same formula, one row at a time, as an oracle."""
    total = 0.0
    for row, label in zip(out, y):
        p = torch.exp(row[label]) / torch.exp(row).sum()
        total = total - (1 - p) ** gamma * torch.log(p)
    return total / len(y)


def batch(info, n=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    width = output_dim("auto", info)
    out = torch.randn(n, width, generator=gen, requires_grad=True)
    if info.task == "classification":
        y = torch.randint(0, info.n_classes, (n,), generator=gen)
    else:
        y = torch.randn(n, generator=gen) if info.n_targets == 1 else torch.randn(n, info.n_targets, generator=gen)
    return out, y


def test_registered_function_is_the_recipe_loss_and_matches_the_hand_written_one():
    register_loss("focal", focal, task="classification")
    assert "focal" in registered_losses()
    assert resolve_loss_kind({"kind": "focal"}, CLS3) == "focal"
    loss = build_loss({"kind": "focal"}, CLS3)
    assert loss.kind == "focal" and loss.outputs == "logits"
    out, y = batch(CLS3)
    value = loss(out, y)
    (grad,) = torch.autograd.grad(value, out)
    out2 = out.detach().clone().requires_grad_(True)
    expected = focal_by_hand(out2, y)
    (expected_grad,) = torch.autograd.grad(expected, out2)
    assert torch.allclose(value, expected, atol=1e-6)
    assert torch.allclose(grad, expected_grad, atol=1e-6)


def test_factory_gets_the_data_info_and_module_classes_are_instantiated():
    seen = []

    def weighted(info):
        seen.append(info)
        weight = torch.arange(1, info.n_classes + 1, dtype=torch.float32)
        return lambda out, y: F.cross_entropy(out, y, weight=weight)

    register_loss("weighted", weighted)
    register_loss("nll_module", torch.nn.CrossEntropyLoss, task="classification")
    out, y = batch(CLS3)
    assert torch.allclose(build_loss({"kind": "weighted"}, CLS3)(out, y),
                          F.cross_entropy(out, y, weight=torch.tensor([1.0, 2.0, 3.0])))
    assert seen and seen[-1] is CLS3
    assert torch.allclose(build_loss({"kind": "nll_module"}, CLS3)(out, y), F.cross_entropy(out, y))


def test_decorator_form_and_regression_targets_take_the_outputs_shape():
    @register_loss("log_cosh", task="regression")
    def log_cosh(out, y):
        assert out.shape == y.shape   # (N, k) both, never an (N, 1) - (N,) broadcast
        return torch.log(torch.cosh(out - y)).mean()

    for info in (REG1, REG2):
        assert output_dim("log_cosh", info) == info.n_targets
        out, y = batch(info)
        expected = torch.log(torch.cosh(out - y.reshape(len(y), -1))).mean()
        assert torch.allclose(build_loss({"kind": "log_cosh"}, info)(out, y), expected)
        assert loss_outputs("log_cosh", info) == "values"
        assert scores_to_proba(out, "log_cosh", info).shape == ((16,) if info.n_targets == 1 else (16, 2))


def test_outputs_say_how_scores_become_probabilities():
    register_loss("on_logits", focal, task="classification")
    register_loss("on_probs", lambda p, y: F.nll_loss(torch.log(p), y), task="classification",
                  outputs="probabilities")
    out = torch.tensor([[2.0, 0.0, -1.0], [0.1, 0.2, 0.7]])
    assert torch.allclose(scores_to_proba(out, "on_logits", CLS3), torch.softmax(out, dim=1))
    assert torch.equal(scores_to_proba(out, "on_probs", CLS3), out)
    one = torch.tensor([[0.25], [0.9]])
    assert torch.allclose(scores_to_proba(one, "on_probs", CLS2), torch.tensor([[0.75, 0.25], [0.1, 0.9]]))
    assert output_dim("on_probs", CLS3) == 3 and output_dim("on_probs", CLS2) == 2


def test_other_loss_keys_are_still_checked_for_a_registered_kind():
    register_loss("focal", focal)
    with pytest.raises(RecipeError, match="label_smoothing"):
        build_loss({"kind": "focal", "label_smoothing": 5}, CLS3)
    with pytest.raises(RecipeError, match="unknown key|not a key|nope"):
        build_loss({"kind": "focal", "nope": 1}, CLS3)


def test_a_loss_for_one_task_is_refused_for_the_other():
    register_loss("focal", focal, task="classification")
    with pytest.raises(RecipeError, match="^r.yaml: loss.kind focal is registered for classification, but the "
                                          "task is regression"):
        build_loss({"kind": "focal"}, REG1, source="r.yaml")


@pytest.mark.parametrize("name, kwargs, error, message", [
    ("mse", {}, ValueError, "built-in name"),
    ("logits", {}, ValueError, "built-in name"),
    ("my loss", {}, ValueError, "identifier"),
    ("mine", {"task": "clustering"}, ValueError, "task must be"),
    ("mine", {"outputs": "odds"}, ValueError, "outputs must be one of logits, probabilities, values"),
    ("mine", {"task": "classification", "outputs": "values"}, ValueError, "logits or probabilities"),
    ("mine", {"task": "regression", "outputs": "logits"}, ValueError, "outputs='values'"),
])
def test_bad_registrations_are_refused(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        register_loss(name, focal, **kwargs)


def test_a_name_is_registered_once_unless_replaced():
    register_loss("focal", focal)
    with pytest.raises(ValueError, match="already registered"):
        register_loss("focal", focal)
    register_loss("focal", lambda out, y: F.cross_entropy(out, y), replace=True)
    out, y = batch(CLS3)
    assert torch.allclose(build_loss({"kind": "focal"}, CLS3)(out, y), F.cross_entropy(out, y))


def test_an_unregistered_kind_at_predict_time_points_to_plugins():
    with pytest.raises(UserError, match="not registered in this process.*plugins:"):
        scores_to_proba(torch.zeros(2, 3), "focal_from_elsewhere", CLS3)


# --- callables (the Python API) -------------------------------------------------------------

def test_a_callable_is_wrapped_and_its_kind_is_its_output_mode():
    loss = loss_from_callable(focal, CLS3)
    assert loss.kind == "logits" and loss.kind in OUTPUT_MODES
    out, y = batch(CLS3)
    assert torch.allclose(loss(out, y), focal_by_hand(out, y), atol=1e-6)
    # a run records loss.kind; predictions then need no code of the user's
    assert torch.allclose(scores_to_proba(out, loss.kind, CLS3), torch.softmax(out, dim=1))
    mse = loss_from_callable(torch.nn.MSELoss(), REG2)
    assert mse.kind == "values"
    out, y = batch(REG2)
    assert torch.allclose(mse(out, y), F.mse_loss(out, y))


def test_checking_a_callable_leaves_the_global_random_stream_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    loss_from_callable(lambda out, y: F.cross_entropy(out, y) + 0 * torch.rand(1).sum(), CLS3)
    assert torch.equal(torch.rand(3), expected)


def returns_a_float(out, y):
    return 0.5


def returns_per_sample(out, y):
    return F.cross_entropy(out, y, reduction="none")


def returns_nan(out, y):
    return out.sum() * float("nan")


def detaches(out, y):
    return F.cross_entropy(out.detach(), y)


def raises(out, y):
    raise KeyError("boom")


@pytest.mark.parametrize("fn, message", [
    (returns_a_float, "returns_a_float must return a torch tensor, got float"),
    (returns_per_sample, r"returns_per_sample must return one number \(a 0-d tensor\), got shape \(4,\)"),
    (returns_nan, "returns_nan returns nan on a tiny batch"),
    (detaches, "detaches does not depend on the model's outputs"),
    (raises, r"raises fails on a tiny batch \(outputs \(4, 3\), targets \(4,\)\): KeyError: 'boom'"),
])
def test_bad_callables_are_refused_in_one_line_naming_the_function(fn, message):
    with pytest.raises(UserError, match=message) as err:
        loss_from_callable(fn, CLS3)
    assert "\n" not in str(err.value)


def test_a_registered_loss_gets_the_same_check_when_built():
    register_loss("bad", returns_per_sample)
    with pytest.raises(UserError, match="loss 'bad' .*returns_per_sample.* must return one number"):
        build_loss({"kind": "bad"}, CLS3)


def test_callable_argument_errors():
    with pytest.raises(UserError, match="loss must be a callable"):
        loss_from_callable("mse", CLS3)
    with pytest.raises(UserError, match="outputs='values'"):
        loss_from_callable(torch.nn.MSELoss(), REG1, outputs="logits")


def test_the_conformance_check_tries_every_task_a_loss_accepts():
    from danlu.training._factory import check_loss

    register_loss("focal", focal, task="classification")
    check_loss("focal")
    register_loss("anywhere", lambda out, y: F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))
                  if y.dtype == torch.int64 else F.mse_loss(out, y))
    check_loss("anywhere")
    check_loss(focal, task="classification")
    register_loss("classes_only", focal)   # says "any task" but indexes outputs by class
    with pytest.raises(UserError, match=r"loss 'classes_only' .* fails on a tiny batch \(outputs \(4, 1\), "
                                        r"targets \(4, 1\)\)"):
        check_loss("classes_only")
    with pytest.raises(UserError, match="loss 'nothing' is not registered"):
        check_loss("nothing")
