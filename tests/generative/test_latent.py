"""``danlu latent RUN`` and the latent-space helpers it shares with the autoencoder."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import danlu
from danlu.cli import main
from danlu.generative._vae import default_pair, interpolation, latent_means, map_points

DIGITS = {"source": "sklearn", "name": "digits", "scale": "none"}


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """A tiny VAE with a 3-unit latent (so the map goes through PCA), trained for two epochs."""
    recipe = {"seed": 0, "data": DIGITS, "model": {"kind": "vae", "latent_dim": 3, "hidden": [32]},
              "train": {"epochs": 2, "batch_size": 128}, "checkpoint": {"every_epochs": 0}}
    return danlu.train(recipe, tmp_path_factory.mktemp("vae") / "run", overwrite=True, progress="none").path


def png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
        return img.size


def strip_size(count: int, side: int = 8, scale: int = 8) -> tuple[int, int]:
    """(width, height) of save_grid's one-row strip of ``count`` images, 1-pixel padding."""
    return (count * (side + 1) + 1) * scale, (side + 2) * scale


def test_training_writes_the_vae_pictures(vae_run):
    assert png_size(vae_run / "plots" / "samples.png") == ((8 * 9 + 1) * 8,) * 2   # 8 x 8 samples
    assert png_size(vae_run / "plots" / "latent_map.png") == (640, 560)


def test_latent_writes_map_and_strip(vae_run, tmp_path, capsys):
    out = tmp_path / "map.png"
    assert main(["latent", str(vae_run), "-o", str(out), "--steps", "5", "--split", "validation"]) == 0
    printed = capsys.readouterr().out
    strip = tmp_path / "map.interpolation.png"
    assert f"latent map: {out}" in printed and f"interpolation: {strip}" in printed
    assert png_size(out) == (640, 560)
    assert png_size(strip) == strip_size(5 + 2)
    assert main(["latent", str(vae_run)]) == 0              # defaults: the run's own plots folder
    assert png_size(vae_run / "plots" / "interpolation.png") == strip_size(10 + 2)


def test_latent_keeps_the_users_files(vae_run, tmp_path, capsys):
    out = tmp_path / "mine.png"
    out.write_bytes(b"precious")
    assert main(["latent", str(vae_run), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert main(["latent", str(vae_run), "-o", str(out), "--overwrite", "--between", "0", "1"]) == 0
    assert png_size(out) == (640, 560)


@pytest.mark.parametrize("argv, message", [
    (["--between", "0", "5000"], "give row numbers 0 to"),
    (["--steps", "1"], "--steps must be >= 2"),
])
def test_latent_bad_arguments_are_one_line_and_write_nothing(vae_run, tmp_path, capsys, argv, message):
    out = tmp_path / "map.png"
    assert main(["latent", str(vae_run), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_latent_refuses_a_classifier(tmp_path, capsys):
    recipe = {"seed": 0, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [4]},
              "train": {"epochs": 1}, "checkpoint": {"every_epochs": 0}}
    run = danlu.train(recipe, tmp_path / "mlp", progress="none").path
    assert main(["latent", str(run)]) == 2
    err = capsys.readouterr().err
    assert "'mlp' has no latent space" in err and "vae or autoencoder" in err
    assert not (run / "plots" / "latent_map.png").exists()


class CodeOnly(nn.Module):
    """An autoencoder-like model: ``encode`` returns the code itself, not (mu, logvar)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def encode(self, x):
        return x.flatten(1)[:, :2] * self.scale

    def decode(self, code):
        return torch.sigmoid(code.sum(1, keepdim=True)).expand(-1, 4).reshape(-1, 1, 2, 2)


def test_autoencoder_codes_are_taken_as_they_are():
    model, x = CodeOnly(), torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 1.0]]).view(2, 1, 2, 2)
    torch.testing.assert_close(latent_means(model, x), torch.tensor([[0.0, 2.0], [2.0, 0.0]]))
    strip = interpolation(model, x[0], x[1], steps=3)
    assert strip.shape == (5, 1, 2, 2)
    torch.testing.assert_close(strip[0], x[0])
    torch.testing.assert_close(strip[-1], x[1])
    torch.testing.assert_close(strip[1:4, 0, 0, 0], torch.sigmoid(torch.tensor([2.0, 2.0, 2.0])))


def test_map_is_the_latent_or_its_principal_components():
    gen = torch.Generator().manual_seed(0)
    two = torch.randn(30, 2, generator=gen)
    points, axes = map_points(two)
    assert np.array_equal(points, two.numpy().astype(np.float64)) and axes == ("z1", "z2")
    many = torch.randn(40, 5, generator=gen) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.1])
    points, axes = map_points(many)
    centred = many.double().numpy() - many.double().numpy().mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T                              # projections on the top two directions
    assert np.allclose(np.abs(points), np.abs(expected), atol=1e-4) and axes[0].startswith("PC1")


def test_default_pair_takes_the_first_other_label():
    assert default_pair(np.array([3, 3, 7, 1])) == (0, 2)
    assert default_pair(np.array([5, 5])) == (0, 1)
