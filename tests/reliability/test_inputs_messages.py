"""Messages that say what is wrong: a directory where a file is expected, a busy port (one line,
exit 2, no banner first), seeds numpy and torch cannot take."""
import socket

import numpy as np
import pytest
from inputs_kit import tiny_iris_run

from danlu.cli import main
from danlu.errors import RecipeError
from danlu.recipe import Recipe


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    return tiny_iris_run(tmp_path_factory)


def _fails(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlu: error: ") and "\n" not in err and "Traceback" not in err
    return err


# --- a directory where a file is expected ---------------------------------------------------------

def test_recipe_path_is_a_directory(tmp_path, capsys):
    err = _fails(capsys, "train", tmp_path)
    assert "is a directory, expected a recipe file" in err and "not found" not in err


@pytest.mark.parametrize("source, extra", [("csv", ""), ("npy", ", label: -1")])
def test_data_path_is_a_directory(tmp_path, capsys, source, extra):
    folder = tmp_path / ("table.csv" if source == "csv" else "arrays.npy")
    folder.mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{source: {source}, path: {folder}{extra}}}\n", encoding="utf-8")
    err = _fails(capsys, "train", recipe, "--run-dir", tmp_path / "run")
    assert str(folder) in err and "is a directory, expected a" in err and "not found" not in err
    assert not (tmp_path / "run").exists()


def test_predict_input_is_a_directory(iris_run, tmp_path, capsys):
    folder = tmp_path / "rows.csv"
    folder.mkdir()
    err = _fails(capsys, "predict", iris_run, folder)
    assert "is a directory, expected a file" in err and "not found" not in err


def test_predict_output_is_a_directory(iris_run, tmp_path, capsys):
    rows = tmp_path / "rows.npy"
    np.save(rows, np.array([[5.1, 3.5, 1.4, 0.2]]))
    out = tmp_path / "out"
    out.mkdir()
    err = _fails(capsys, "predict", iris_run, rows, "-o", out)
    assert str(out) in err and ("is a directory" in err or "is a folder" in err) and "not found" not in err


def test_checkpoint_given_as_a_file(iris_run, capsys):
    err = _fails(capsys, "resume", iris_run, "--checkpoint", iris_run / "recipe.yaml")
    assert "is a file, expected a checkpoint folder" in err


def test_data_functions_say_directory_too(tmp_path):
    from danlu.data._csv import read_csv
    from danlu.data._sources import read_arrays
    from danlu.errors import DataError

    with pytest.raises(DataError, match="is a directory, expected a CSV file"):
        read_csv(tmp_path)
    with pytest.raises(DataError, match=r"is a directory, expected a \.npy or \.npz file"):
        read_arrays(tmp_path)


# --- a busy port ----------------------------------------------------------------------------------

def test_busy_port_is_one_line_before_any_banner(iris_run, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = _fails(capsys, "serve", iris_run, "--port", port)
    assert f"port {port}" in err and "in use" in err and "--port" in err
    assert "POST /predict" not in err and "http://" not in err   # no "listening" banner first


def test_bind_port_refuses_a_busy_port_and_takes_a_free_one():
    from danlu.errors import UserError
    from danlu.serve._server import bind_port

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} on 127.0.0.1 is already in use"):
            bind_port("127.0.0.1", port)
    sock = bind_port("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_unknown_host_is_one_line(iris_run, capsys):
    err = _fails(capsys, "serve", iris_run, "--host", "no-such-host.invalid", "--port", "8123")
    assert "--host no-such-host.invalid" in err


@pytest.mark.parametrize("mb", ["nan", "inf", "-1", "0"])
def test_max_body_must_be_a_finite_positive_size(iris_run, capsys, mb):
    assert "--max-body-mb" in _fails(capsys, "serve", iris_run, "--max-body-mb", mb)


# --- seeds ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [2**70, 2**32, -1, -(2**40)])
def test_seed_out_of_range_is_blamed_on_the_seed(tmp_path, seed, capsys):
    with pytest.raises(RecipeError, match=r"seed must be (>= 0|<= 4294967295)"):
        Recipe.from_dict({"data": {"name": "iris"}, "seed": seed})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {source: sklearn, name: iris}\n", encoding="utf-8")
    err = _fails(capsys, "train", recipe, "--set", f"seed={seed}", "--run-dir", tmp_path / "run")
    assert "seed must be" in err and "split" not in err


def test_largest_seed_is_accepted_by_numpy_and_torch():
    import torch

    seed = Recipe.from_dict({"data": {"name": "iris"}, "seed": 2**32 - 1}).seed
    np.random.default_rng(seed)
    np.random.RandomState(seed)
    torch.manual_seed(seed)
    assert Recipe.from_dict({"data": {"name": "iris"}}).with_overrides(["seed=4_294_967_295"]).seed == seed
