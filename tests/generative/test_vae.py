"""The VAE: its loss pieces against hand computations and torch.distributions, the
reparameterization, training on digits, deterministic figures and seeded samples."""
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from danlu.errors import RecipeError
from danlu.generative._vae import VAE, as_images, kl_to_standard_normal, reconstruction_nll, vae_samples
from danlu.models import build_model
from danlu.recipe import Recipe

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "digits_vae.yaml"


def digits(n: int = 400) -> torch.Tensor:
    """The first ``n`` scikit-learn digits as (n, 1, 8, 8) pixels in [0, 1], as danlu loads them."""
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().data[:n] / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)


def tiny_vae(shape=(1, 8, 8), latent_dim=2, beta=1.0, seed=0) -> VAE:
    torch.manual_seed(seed)
    return VAE(shape, latent_dim=latent_dim, hidden=[32], beta=beta)


def test_kl_matches_torch_distributions():
    gen = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(5, 3, generator=gen) * 2, torch.randn(5, 3, generator=gen)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)
    assert torch.allclose(kl_to_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4)), torch.zeros(2))


def test_reconstruction_is_the_bernoulli_negative_log_likelihood():
    gen = torch.Generator().manual_seed(2)
    logits, x = torch.randn(4, 1, 3, 3, generator=gen) * 3, torch.rand(4, 1, 3, 3, generator=gen)
    p = torch.sigmoid(logits.flatten(1))
    by_hand = -(x.flatten(1) * p.log() + (1 - x.flatten(1)) * (1 - p).log()).sum(dim=1)
    torch.testing.assert_close(reconstruction_nll(logits.flatten(1), x), by_hand)


def test_objective_is_reconstruction_plus_beta_kl_with_the_global_rng():
    model, x = tiny_vae(beta=0.25), digits(16)
    torch.manual_seed(7)
    loss = model.objective(x, None)
    torch.manual_seed(7)
    eps = torch.randn(len(x), model.latent_dim)
    recon, kl = model.terms(x, eps)
    torch.testing.assert_close(loss, (recon + 0.25 * kl).mean())
    assert (kl > 0).all()
    torch.manual_seed(8)
    assert not torch.equal(model.objective(x, None), loss)    # fresh noise: another estimate


def test_gradient_reaches_mean_and_variance_through_the_sample():
    model, x = tiny_vae(), digits(16)
    model.objective(x, None).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    head = model.encoder[-1].weight.grad                     # rows: mu units, then log-variance units
    assert head[:2].abs().sum() > 0 and head[2:].abs().sum() > 0
    # with beta = 0 the log-variance learns only through z = mu + sigma * eps: the reparameterization
    model = tiny_vae(beta=0.0)
    model.objective(x, None).backward()
    assert model.encoder[-1].weight.grad[2:].abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 5), (6,)])
def test_shapes_and_range(shape):
    model = tiny_vae(shape, latent_dim=3)
    x = torch.rand(5, *shape, generator=torch.Generator().manual_seed(0))
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 3) and model.latent_dim == 3
    out = model.decode(mu)
    assert out.shape == (5, *shape) and out.min() >= 0 and out.max() <= 1
    model.eval()
    assert torch.equal(model(x), model(x)) and torch.equal(model(x), out)   # forward: decode of the mean


def test_training_a_few_epochs_lowers_the_loss():
    x = digits(400)
    model = tiny_vae()
    before = model.figures(x)["loss"]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            model.objective(x[i:i + 50], None).backward()
            opt.step()
    after = model.figures(x)
    assert before > 40                        # about 64 * ln 2: every pixel a coin flip
    assert after["loss"] < 0.75 * before
    assert after["loss"] == pytest.approx(after["reconstruction"] + after["kl"])


def test_figures_are_deterministic_and_leave_the_global_rng_alone():
    model, x = tiny_vae(beta=2.0), digits(64)
    state = torch.get_rng_state()
    first, second = model.figures(x), model.figures(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == second and set(first) == {"loss", "reconstruction", "kl"}
    assert first["loss"] == pytest.approx(first["reconstruction"] + 2.0 * first["kl"])


def test_samples_are_named_by_their_seed():
    model = tiny_vae()
    model.train()
    a, b, c = vae_samples(model, 6, seed=3), vae_samples(model, 6, seed=3), vae_samples(model, 6, seed=4)
    assert a.shape == (6, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert model.training                      # the caller's mode is kept


def test_standardised_inputs_are_refused_with_the_fix():
    model = tiny_vae()
    with pytest.raises(RecipeError, match="data.scale: none"):
        model.objective(torch.randn(4, 1, 8, 8), None)


def test_flat_rows_become_pictures():
    assert as_images(torch.zeros(2, 64)).shape == (2, 1, 8, 8)
    assert as_images(torch.zeros(2, 6)).shape == (2, 1, 1, 6)
    assert as_images(torch.zeros(2, 3, 4, 5)).shape == (2, 3, 4, 5)


def test_recipe_keys_build_the_model():
    recipe = Recipe.from_yaml(RECIPE)
    assert recipe.model.kind == "vae" and recipe.data.scale == "none"
    info = type("Info", (), {"input_shape": (1, 8, 8), "categorical": []})()
    model = build_model({"kind": "vae", "latent_dim": 4, "hidden": [16, 8], "beta": 0.5}, info, 10)
    assert isinstance(model, VAE) and model.latent_dim == 4 and model.beta == 0.5
    assert model.encoder[-1].out_features == 8 and model.decoder[-1].out_features == math.prod((1, 8, 8))
    with pytest.raises(RecipeError, match="latent_dim"):
        build_model({"kind": "vae", "latent_dim": 0}, info, 10)
    with pytest.raises(RecipeError, match=r"hidden\[1\]"):
        build_model({"kind": "vae", "hidden": [16, 0]}, info, 10)
