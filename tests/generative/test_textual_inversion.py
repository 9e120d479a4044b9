"""Textual inversion: one condition vector is learned with the model frozen, the denoising loss of
the concept's images falls, the result is reproducible and safe on disk (safetensors, never
overwritten), and `danlu generate --concept` draws it."""
import json

import numpy as np
import pytest
import torch

import danlu
from danlu.cli import main
from danlu.errors import UserError
from danlu.generative._diffusion import Diffusion
from danlu.generative._inversion import Concept, concept_loss, learn_concept, load_concept, save_concept

DIGITS = {"source": "sklearn", "name": "digits", "scale": "none", "split": {"validation": 0.1, "test": 0.1}}


def tiny(seed: int = 0) -> Diffusion:
    torch.manual_seed(seed)
    return Diffusion((1, 8, 8), 10, timesteps=20, channels=8, blocks=1, embed_dim=8).eval()


def sevens(n: int = 8) -> torch.Tensor:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data[d.target == 7][:n] / 16.0, dtype=torch.float32).reshape(n, 1, 8, 8)


def test_only_the_vector_learns_and_the_loss_on_the_concept_falls():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    rng = torch.get_rng_state()
    concept = learn_concept(model, sevens(), "seven", steps=60, lr=0.05, seed=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)           # the model is frozen
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert torch.equal(torch.get_rng_state(), rng)                           # a local generator only
    assert concept.vector.shape == (8,)
    loss = concept.meta["loss"]
    assert loss["learned"] < loss["start"]
    # the reported figures are the loss function's own, on the same fixed steps and noise
    assert loss["learned"] == pytest.approx(concept_loss(model, sevens(), concept.vector))


def test_same_seed_same_vector_other_seed_other_vector():
    a = learn_concept(tiny(), sevens(), "a", steps=20, seed=3)
    b = learn_concept(tiny(), sevens(), "b", steps=20, seed=3)
    c = learn_concept(tiny(), sevens(), "c", steps=20, seed=4)
    assert torch.equal(a.vector, b.vector)
    assert not torch.equal(a.vector, c.vector)


def test_images_must_fit_the_model():
    with pytest.raises(UserError, match=r"shape \(1, 4, 4\)"):
        learn_concept(tiny(), torch.rand(3, 1, 4, 4), "x", steps=1)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        learn_concept(tiny(), sevens() * 16, "x", steps=1)
    flat = sevens().reshape(8, 64)   # rows of pixels are read as the model's images
    assert learn_concept(tiny(), flat, "x", steps=1).vector.shape == (8,)


def test_save_and_load_round_trip_without_pickle(tmp_path):
    concept = Concept("seven", torch.arange(8, dtype=torch.float32), {"steps": 5, "loss": {"learned": 0.5}})
    path = save_concept(concept, tmp_path / "c" / "seven.safetensors", "runs/x")
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path))["concept"], concept.vector)    # plain safetensors
    back = load_concept(path, tiny())
    assert back.name == "seven" and torch.equal(back.vector, concept.vector)
    assert back.meta["steps"] == 5 and back.meta["run"] == "runs/x"
    with pytest.raises(UserError, match="already exists"):
        save_concept(concept, path, "runs/x")
    assert torch.equal(load_concept(path).vector, concept.vector)           # the refused write left it intact
    with pytest.raises(UserError, match="size 8, but this model's conditions have size 4"):
        load_concept(path, Diffusion((1, 8, 8), 10, timesteps=20, channels=8, blocks=1, embed_dim=4))


def test_foreign_and_missing_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(8)}, str(other))
    with pytest.raises(UserError, match="not a danlu concept file"):
        load_concept(other)
    with pytest.raises(UserError, match="concept file not found"):
        load_concept(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_concept(tmp_path / "junk.safetensors")


@pytest.fixture(scope="module")
def diffusion_run(tmp_path_factory):
    recipe = {"name": "tiny_diffusion", "seed": 0, "data": DIGITS, "train": {"epochs": 1, "batch_size": 128},
              "model": {"kind": "diffusion", "timesteps": 20, "channels": 8, "blocks": 1, "embed_dim": 8}}
    return danlu.train(recipe, tmp_path_factory.mktemp("ti") / "diffusion", progress="none").path


def test_cli_learns_saves_and_generate_draws_the_concept(diffusion_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    d = load_digits()
    rows = tmp_path / "sevens.csv"
    np.savetxt(rows, d.data[d.target == 7][:6], fmt="%g", delimiter=",", header=",".join(d.feature_names),
               comments="")
    args = ["textual-inversion", diffusion_run, "--images", rows, "--name", "my-seven", "--steps", 10,
            "--progress", "none"]
    assert main(list(map(str, args))) == 0
    path = diffusion_run / "concepts" / "my-seven.safetensors"
    assert path.is_file() and f"concept: {path}" in capsys.readouterr().out
    assert main(list(map(str, args))) == 2                                  # never overwritten ...
    assert "already exists" in capsys.readouterr().err
    assert main(list(map(str, args + ["--overwrite"]))) == 0                # ... unless asked
    capsys.readouterr()

    out = tmp_path / "concept.png"
    assert main(["generate", str(diffusion_run), "--concept", str(path), "--steps", "5", "-n", "2",
                 "-o", str(out), "--progress", "none"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["concept_name"] == "my-seven" and "--concept" in record["command"]
    assert "concept: my-seven" in capsys.readouterr().out
    # the saved command draws the same picture again
    again = tmp_path / "again.png"
    command = record["command"].split()[1:]
    assert main(command + ["-o", str(again), "--progress", "none"]) == 0
    assert again.read_bytes() == out.read_bytes()
    # --prompt "<name>" is the concept saved under that name in the run
    token = tmp_path / "token.png"
    assert main(["generate", str(diffusion_run), "--prompt", "<my-seven>", "--steps", "5", "-n", "2",
                 "-o", str(token), "--progress", "none"]) == 0
    assert token.read_bytes() == out.read_bytes()
    assert "is the concept 'my-seven'" in capsys.readouterr().out
    assert main(["generate", str(diffusion_run), "--prompt", "<nobody>", "-n", "1", "-o", str(tmp_path / "n.png")]) == 2
    assert "no concept 'nobody'" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--name", "bad name"], "use letters, digits"),
    (["--name", "x", "-o", "x.pt"], "ending in .safetensors"),
])
def test_cli_refuses_bad_names_and_outputs(diffusion_run, tmp_path, capsys, args, message):
    rows = tmp_path / "rows.npy"
    np.save(rows, np.zeros((2, 64)))
    assert main(["textual-inversion", str(diffusion_run), "--images", str(rows), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
