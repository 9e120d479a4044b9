"""LoRA adapters: exact start, frozen base, merge == unmerged, adapter files, recipe hook."""
import pytest
import torch
from torch import nn

from danlu.errors import CheckpointError, RecipeError
from danlu.models import MLP
from danlu.recipe import Recipe
from danlu.transfer import (LoRALinear, add_lora, load_adapters, lora_from_recipe, lora_state_dict, merge_lora,
                            save_adapters, trainable_parameters, unmerge_lora)


def _mlp(seed=0, hidden=(32, 16)):
    torch.manual_seed(seed)
    return MLP((12,), 3, hidden=list(hidden))


def _randomise_adapters(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.copy_(torch.randn(m.lora_B.shape, generator=gen) * 0.1)


def test_wrapped_model_starts_exactly_at_the_base():
    model = _mlp()
    x = torch.randn(7, 12)
    before = model(x).detach()
    add_lora(model, rank=4, alpha=8, verbose=False)
    assert torch.equal(model(x), before)
    assert isinstance(model.body[0], LoRALinear) and isinstance(model.body[2], LoRALinear)
    assert isinstance(model.head, nn.Linear) and not isinstance(model.head, LoRALinear)


def test_lora_linear_matches_the_hand_written_formula():
    torch.manual_seed(3)
    base = nn.Linear(6, 5)
    W, b = base.weight.detach().clone(), base.bias.detach().clone()
    layer = LoRALinear(base, rank=2, alpha=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    expected = x @ (W + (6 / 2) * layer.lora_B @ layer.lora_A).T + b
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_only_adapters_and_head_get_gradients():
    model = add_lora(_mlp(), rank=2, verbose=False)
    base_w = model.body[0].weight.detach().clone()
    loss = model(torch.randn(8, 12)).pow(2).sum()
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"body.0.lora_A", "body.0.lora_B", "body.2.lora_A", "body.2.lora_B",
                         "head.weight", "head.bias"}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.step()
    assert torch.equal(model.body[0].weight, base_w)   # frozen base untouched by the optimizer
    n_train, n_total = trainable_parameters(model)
    assert n_train == sum(p.numel() for n, p in model.named_parameters() if n in with_grad)
    assert n_total == sum(p.numel() for p in model.parameters())


def test_without_head_training_only_adapters_learn():
    model = add_lora(_mlp(), rank=2, target_modules=["body.*", "head"], train_head=False, verbose=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{m}.lora_{k}" for m in ("body.0", "body.2", "head") for k in "AB"}


def test_merge_gives_the_same_outputs_and_unmerge_restores_the_base():
    model = add_lora(_mlp(), rank=4, verbose=False)
    base = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(("lora_A", "lora_B"))}
    _randomise_adapters(model)
    x = torch.randn(16, 12)
    with torch.no_grad():
        unmerged = model(x)
        merge_lora(model)
        assert not torch.allclose(model.body[0].weight, base["body.0.weight"])
        merged = model(x)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    for k, v in base.items():
        torch.testing.assert_close(model.state_dict()[k], v, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), unmerged, atol=1e-5, rtol=1e-5)


def test_adapter_file_round_trip_is_small(tmp_path):
    model = add_lora(_mlp(hidden=(256, 256)), rank=4, verbose=False)
    _randomise_adapters(model)
    path = save_adapters(model, tmp_path / "adapters.safetensors")
    assert path.stat().st_size < 1_000_000
    keys = set(lora_state_dict(model))
    assert "body.0.weight" not in keys and "body.0.lora_A" in keys
    fresh = add_lora(_mlp(hidden=(256, 256)), rank=4, verbose=False)   # same base weights (seed), new adapters
    x = torch.randn(5, 12)
    assert not torch.allclose(fresh(x), model(x))
    load_adapters(fresh, path)
    torch.testing.assert_close(fresh(x), model(x))
    wrong_rank = add_lora(_mlp(hidden=(256, 256)), rank=2, verbose=False)
    with pytest.raises(CheckpointError, match="rank"):
        load_adapters(wrong_rank, path)


def test_load_into_a_merged_model_replaces_the_old_update(tmp_path):
    model = add_lora(_mlp(), rank=2, verbose=False)
    _randomise_adapters(model, seed=1)
    path = save_adapters(model, tmp_path / "a.safetensors")
    other = add_lora(_mlp(), rank=2, verbose=False)
    _randomise_adapters(other, seed=2)
    merge_lora(other)
    load_adapters(other, path)
    x = torch.randn(3, 12)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), atol=1e-5, rtol=1e-5)


def test_bad_targets_and_double_wrapping_are_refused():
    with pytest.raises(RecipeError, match="matches no nn.Linear"):
        add_lora(_mlp(), target_modules=["encoder.*"], verbose=False)
    model = add_lora(_mlp(), verbose=False)
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, verbose=False)


def test_recipe_section_is_validated_and_applied():
    recipe = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"},
                               "lora": {"enabled": True, "rank": 2, "alpha": 4}})
    assert recipe.lora.rank == 2 and recipe.lora.train_head is True and recipe.lora.target_modules is None
    model = lora_from_recipe(_mlp(), recipe.lora)
    assert isinstance(model.body[0], LoRALinear) and model.body[0].scaling == 2
    off = Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"}})
    assert not any(isinstance(m, LoRALinear) for m in lora_from_recipe(_mlp(), off.lora).modules())
    with pytest.raises(RecipeError, match="lora.rank"):
        Recipe.from_dict({"data": {"source": "sklearn", "name": "iris"}, "lora": {"rank": 0}})


@pytest.fixture
def lora_hook():
    """LoRA needs no patching: the run applies it through danlu.transfer's registered callback
    (LoRAAdapters.transform_model), for training and when a finished run is loaded."""
    return None


def test_training_from_a_recipe_changes_adapters_only(tmp_path, lora_hook):
    from danlu.training import load_model, train
    from danlu.models import build_model

    recipe = Recipe.from_dict({
        "seed": 0, "device": "cpu",
        "data": {"source": "sklearn", "name": "iris"},
        "model": {"kind": "mlp", "hidden": [16]},
        "optimizer": {"kind": "adam", "lr": 0.01},
        "train": {"epochs": 3, "batch_size": 32},
        "lora": {"enabled": True, "rank": 2, "train_head": False},
        "output": {"progress": "none"},
    })
    run = train(recipe, tmp_path / "run")
    model, _pipe, _meta, _recipe = load_model(run.path)
    torch.manual_seed(0)                                # the same initial weights as the run's build
    initial = build_model(recipe.model, model_info(run.path), 3)
    torch.testing.assert_close(model.body[0].weight, initial.body[0].weight)
    assert torch.equal(model.head.weight, initial.head.weight)
    assert model.body[0].lora_B.abs().sum() > 0          # the adapters did learn


def model_info(run_dir):
    from danlu.data import Pipeline

    return Pipeline.load(run_dir).info
