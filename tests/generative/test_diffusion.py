"""Conditional diffusion: the schedule, the sampler steps against the Gaussian posterior computed
by hand, seeds and ENSD, classifier-free guidance, deterministic figures, prompt weighting, and
(on a fixed seed) that guidance makes a separately trained classifier recognise the label."""
import math

import pytest
import torch

from danlu.data import DataInfo
from danlu.errors import RecipeError
from danlu.generative._diffusion import Diffusion, make_betas
from danlu.generative._prompt import class_descriptions, match_prompt
from danlu.generative._samplers import SamplerSettings, ancestral_step, ddim_step, sample, timestep_sequence
from danlu.models import build_model


def tiny(seed: int = 0, **kw) -> Diffusion:
    """An untrained model: determinism, seeds and guidance need no good model."""
    torch.manual_seed(seed)
    params = dict(timesteps=50, channels=8, blocks=1, embed_dim=8) | kw
    return Diffusion((1, 8, 8), 10, **params).eval()


def labels(model, *values) -> torch.Tensor:
    return model.conditions(torch.tensor(values))


# --- schedule and sampler arithmetic ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_destroys_the_image_gradually(kind):
    alpha_bar = torch.cumprod(1 - make_betas(kind, 200), 0)
    assert alpha_bar[0] > 0.99 and alpha_bar[-1] < 0.01          # starts almost clean, ends almost pure noise
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()


def test_timestep_sequence_runs_from_noisiest_to_clean():
    assert timestep_sequence(200, 5) == [199, 149, 100, 50, 0]
    assert timestep_sequence(200, 1) == [199]
    with pytest.raises(ValueError, match="at most the model's 200"):
        timestep_sequence(200, 201)


def _posterior(x0, x_t, a_t, a_prev):
    """Mean and std of q(x_prev | x_t, x0) by Bayes' rule for two Gaussians (the oracle):
    x_prev ~ N(sqrt(a_prev) x0, 1 - a_prev), x_t | x_prev ~ N(sqrt(r) x_prev, 1 - r), r = a_t / a_prev."""
    r, prior_mean, prior_var = a_t / a_prev, math.sqrt(a_prev) * x0, 1 - a_prev
    gain = math.sqrt(r) * prior_var / (r * prior_var + 1 - r)
    return prior_mean + gain * (x_t - math.sqrt(r) * prior_mean), math.sqrt(prior_var - gain * math.sqrt(r) * prior_var)


def test_steps_with_the_true_noise_match_the_posterior_and_ddim_keeps_the_noise():
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 1, 8, 8, generator=gen) * 1.6 - 0.8
    eps, z = torch.randn(2, 1, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    a_t, a_prev = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    x0, eps, z = x0.double(), eps.double(), z.double()
    x_t = a_t.sqrt() * x0 + (1 - a_t).sqrt() * eps
    mean, std = _posterior(x0, x_t, float(a_t), float(a_prev))
    # ancestral: the posterior mean with DDPM's sigma^2 = beta (issue 16: no longer DDIM eta 1's beta_tilde)
    beta = 1 - a_t / a_prev
    torch.testing.assert_close(ancestral_step(x_t, eps, a_t, a_prev, 1.0, z), mean + beta.sqrt() * z)
    torch.testing.assert_close(ancestral_step(x_t, eps, a_t, a_prev, 0.0, None), mean)
    # DDIM with eta 0 moves along the same noise; with eta 1 it is the posterior again
    same_noise = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    torch.testing.assert_close(ddim_step(x_t, eps, a_t, a_prev, 0.0, None), same_noise)
    torch.testing.assert_close(ddim_step(x_t, eps, a_t, a_prev, 1.0, z), mean + std * z)


# --- seeds, ENSD, guidance --------------------------------------------------------------------

def test_fixed_seed_gives_identical_samples_and_image_i_uses_seed_plus_i():
    model = tiny()
    cond = labels(model, 3, 3, 3, 3)
    for sampler in ("ddim", "ancestral"):
        settings = SamplerSettings(sampler=sampler, steps=6, cfg_scale=3, seed=42, ensd=5)
        first = sample(model, cond, 4, settings)
        assert torch.equal(first, sample(model, cond, 4, settings))
        assert first.shape == (4, 1, 8, 8) and first.min() >= 0 and first.max() <= 1
        alone = sample(model, cond[2:3], 1, SamplerSettings(sampler=sampler, steps=6, cfg_scale=3, seed=44, ensd=5))
        torch.testing.assert_close(alone[0], first[2])
        other = sample(model, cond, 4, SamplerSettings(sampler=sampler, steps=6, cfg_scale=3, seed=43, ensd=5))
        assert not torch.allclose(other, first)


def test_ensd_changes_ancestral_but_not_ddim_eta_0_samples():
    model = tiny()
    cond = labels(model, 1, 7)

    def draw(sampler, ensd, eta=None):
        settings = SamplerSettings(sampler=sampler, steps=6, eta=eta, cfg_scale=2, seed=9, ensd=ensd)
        return sample(model, cond, 2, settings)

    assert torch.equal(draw("ddim", 0), draw("ddim", 31337))
    assert not torch.allclose(draw("ancestral", 0), draw("ancestral", 31337))
    assert not torch.allclose(draw("ddim", 0, eta=1.0), draw("ddim", 31337, eta=1.0))   # eta > 0 adds noise
    assert torch.equal(draw("ancestral", 31337), draw("ancestral", 31337))


def test_cfg_scale_0_ignores_the_label_and_other_scales_follow_it():
    model = tiny()

    def draw(label, scale):
        return sample(model, labels(model, label, label), 2, SamplerSettings(steps=5, cfg_scale=scale, seed=1))

    assert torch.equal(draw(3, 0), draw(7, 0))
    assert torch.equal(draw(3, 0), sample(model, None, 2, SamplerSettings(steps=5, cfg_scale=0, seed=1)))
    assert not torch.allclose(draw(3, 1), draw(7, 1))
    assert not torch.allclose(draw(3, 7), draw(7, 7))


def test_guidance_mixes_the_two_noise_predictions():
    from danlu.generative._samplers import guided_eps

    model = tiny()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    cond = labels(model, 2, 5)
    t = torch.tensor([10, 10])
    with torch.no_grad():
        eps_c, eps_u = model.eps(x, t, cond), model.eps(x, t, model.null_conditions(2))
        torch.testing.assert_close(guided_eps(model, x, 10, cond, 4.0), eps_u + 4.0 * (eps_c - eps_u))
        torch.testing.assert_close(guided_eps(model, x, 10, cond, 1.0), eps_c)


# --- training objective and figures -------------------------------------------------------------

def test_objective_draws_from_the_global_rng_and_figures_do_not():
    model, x, y = tiny().train(), torch.rand(16, 1, 8, 8), torch.arange(16) % 10
    torch.manual_seed(5)
    loss = model.objective(x, y)
    loss.backward()
    assert loss.ndim == 0 and loss > 0 and model.net.stem.weight.grad is not None
    torch.manual_seed(5)
    assert torch.equal(model.objective(x, y), loss)
    state = torch.get_rng_state()
    first, second = model.eval().figures(x, y), model.figures(x, y)
    assert first == second and set(first) == {"loss", "loss_uncond"}
    assert torch.equal(torch.get_rng_state(), state)


def test_builder_checks_the_data():
    image = DataInfo(task="classification", kind="image", input_shape=(1, 8, 8), n_classes=10,
                     classes=list(range(10)), feature_names=[])
    model = build_model({"kind": "diffusion", "channels": 8, "blocks": 1, "timesteps": 20}, image, out_dim=10)
    assert isinstance(model, Diffusion) and model.forward(torch.rand(3, 1, 8, 8)).shape == (3, 1, 8, 8)
    flat = DataInfo(task="classification", kind="tabular", input_shape=(64,), n_classes=10,
                    classes=list(range(10)), feature_names=[])
    with pytest.raises(RecipeError, match="data.shape"):
        build_model({"kind": "diffusion"}, flat, out_dim=10)
    with pytest.raises(RecipeError, match="schedule"):
        build_model({"kind": "diffusion", "schedule": "cosin"}, image, out_dim=10)


# --- prompts ------------------------------------------------------------------------------------

def test_prompt_weights_are_a_softmax_of_the_best_description():
    classes = [0, 1, 2]
    texts = {d: class_descriptions(d) for d in classes}
    assert "a handwritten two" in texts[2] and "手写数字2" in texts[2]

    def encode(batch):
        """Unit vectors: the prompt is one axis; class c's descriptions lie at angles to it."""
        similarity = {"prompt": 1.0}
        for c in classes:
            for k, text in enumerate(texts[c]):
                similarity[text] = 0.5 + 0.1 * c - 0.01 * k     # best description: the first of each class
        rows = [[similarity[t], math.sqrt(1 - similarity[t] ** 2)] for t in batch]
        return torch.tensor(rows)

    match = match_prompt("prompt", classes, temperature=0.1, encode=encode)
    expected = torch.softmax(torch.tensor([0.5, 0.6, 0.7]) / 0.1, 0)
    torch.testing.assert_close(torch.tensor(match.weights), expected)
    assert [c for c, _ in match.top(2)] == [2, 1] and match.summary(1).startswith("2 (")


# --- guidance makes the label recognisable (fixed seed) ----------------------------------------

def test_guidance_raises_the_share_a_classifier_assigns_to_the_label(tmp_path):
    """A small model trained a few seconds: at scale 0 the classifier finds the requested label about
    as often as chance; with guidance far more often. The judge, a nearest-neighbour classifier on the
    real pixels (about 98 % accurate on digits), never sees a generated image."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    import danlu

    recipe = {"name": "tiny_diffusion", "seed": 0,
              "data": {"source": "sklearn", "name": "digits", "scale": "none",
                       "split": {"validation": 0.1, "test": 0.0}},
              "model": {"kind": "diffusion", "timesteps": 100, "channels": 16, "blocks": 2, "embed_dim": 32},
              "optimizer": {"kind": "adam", "lr": 0.003},
              "train": {"epochs": 6, "batch_size": 64}}
    run = danlu.train(recipe, tmp_path / "run", overwrite=True, progress="none")
    assert set(run.summary["validation"]) == {"loss", "loss_uncond"}
    assert run.summary["validation"]["loss"] < run.summary["validation"]["loss_uncond"]   # the label helps
    assert (tmp_path / "run" / "plots" / "samples.png").is_file()

    from danlu.training import load_model

    model = load_model(tmp_path / "run")[0]
    digits = load_digits()
    judge = KNeighborsClassifier(5).fit(digits.data / 16, digits.target)
    wanted = torch.arange(10).repeat_interleave(15)

    def share(scale):
        settings = SamplerSettings(steps=10, cfg_scale=scale, seed=0)
        images = sample(model, model.conditions(wanted), len(wanted), settings)
        return float((judge.predict(images.reshape(len(wanted), -1).numpy()) == wanted.numpy()).mean())

    unguided, guided = share(0), share(5)
    assert unguided < 0.25                          # chance is 0.1
    assert guided > unguided + 0.25 and guided > 0.4
