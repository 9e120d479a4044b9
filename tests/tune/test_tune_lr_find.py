"""The learning-rate finder: the sweep, the suggestion rules, the files and the command."""
import json
import math
import os

import numpy as np
import pytest

from danlu.errors import UserError
from danlu.recipe import Recipe
from danlu.tune import lr_find, suggest
from danlu.tune._lr_find import default_out_dir

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {"name": "tiny", "seed": 0, "data": {"source": "sklearn", "name": "iris"},
        "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"kind": "sgd", "lr": 0.1},
        "train": {"batch_size": 16}, "output": {"progress": "none"}}


def test_sweep_suggests_a_rate_inside_the_range_and_writes_the_plot(tmp_path):
    result = lr_find(Recipe.from_dict(TINY), min_lr=1e-5, max_lr=10.0, steps=40, out_dir=tmp_path / "find")
    assert 1e-5 <= result.suggested <= 10.0
    assert result.lrs[0] == pytest.approx(1e-5)
    ratios = np.array(result.lrs[1:]) / np.array(result.lrs[:-1])
    assert np.allclose(ratios, (10.0 / 1e-5) ** (1 / 39))          # one geometric step per batch
    assert len(result.losses) == len(result.smoothed) == len(result.lrs) <= 40
    assert (tmp_path / "find" / "lr_find.png").read_bytes()[:8] == PNG
    saved = json.loads((tmp_path / "find" / "lr_find.json").read_text())
    assert saved["suggested"] == result.suggested and saved["lrs"] == result.lrs
    assert result.set_line() == f"--set optimizer.lr={result.suggested:.3g}"


def test_sweep_stops_when_the_loss_explodes():
    recipe = Recipe.from_dict(TINY)
    result = lr_find(recipe, min_lr=1e-3, max_lr=1e6, steps=60)
    assert result.stopped_early
    assert len(result.lrs) < 60
    finite = [v for v in result.smoothed if math.isfinite(v)]
    # it stopped at the first point beyond 4x the best smoothed loss (or at a non-finite loss)
    assert not math.isfinite(result.losses[-1]) or finite[-1] > 4 * min(finite)
    assert result.suggested < result.lrs[-1]


def test_same_seed_same_sweep():
    a = lr_find(Recipe.from_dict(TINY), min_lr=1e-4, max_lr=1.0, steps=16)
    b = lr_find(Recipe.from_dict(TINY), min_lr=1e-4, max_lr=1.0, steps=16)
    assert a.losses == b.losses


def _curve(lrs, knee=1e-3, wall=1.0):
    """A textbook sweep: flat, a fall centred at ``knee`` (per decade), a blow-up at ``wall``."""
    x = np.log10(lrs)
    fall = 1 / (1 + np.exp(-(x - np.log10(knee)) * 3))
    return 2.0 - 1.5 * fall + np.where(lrs > wall, (lrs / wall) ** 2, 0.0)


def test_steepest_rule_finds_the_middle_of_the_fall():
    lrs = np.geomspace(1e-7, 10, 100)
    losses = _curve(lrs)
    result = suggest(lrs.tolist(), losses.tolist(), losses.tolist())
    assert result.rule == "steepest"
    assert 10 ** -3.3 < result.suggested < 10 ** -2.7       # the knee at 1e-3
    assert result.min_loss_lr == pytest.approx(lrs[np.argmin(losses)])


def test_min10_rule_and_fallback_when_the_curve_never_falls():
    lrs = np.geomspace(1e-7, 10, 100)
    losses = _curve(lrs)
    result = suggest(lrs.tolist(), losses.tolist(), losses.tolist(), rule="min10")
    assert result.suggested == pytest.approx(result.min_loss_lr / 10)
    rising = (1.0 + lrs).tolist()            # lowest at the very start: nothing to descend
    fallback = suggest(lrs.tolist(), rising, rising)
    assert fallback.rule == "min10" and fallback.steepest_lr is None
    assert fallback.suggested == pytest.approx(lrs[0] / 10)


@pytest.mark.parametrize("kwargs", [dict(min_lr=1.0, max_lr=0.1), dict(steps=3), dict(rule="valley")])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserError):
        lr_find(Recipe.from_dict(TINY), **kwargs)


def test_default_output_folder_never_replaces_one(tmp_path):
    recipe = Recipe.from_dict({**TINY, "output": {"runs_dir": str(tmp_path)}})
    first = default_out_dir(recipe)
    assert first == tmp_path / "lr-find-tiny"
    first.mkdir()
    (first / "lr_find.json").write_text("{}")
    assert default_out_dir(recipe) == tmp_path / "lr-find-tiny-2"


def test_command_writes_into_a_new_folder_and_prints_the_set_line(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {source: sklearn, name: iris}\nmodel: {kind: logistic}\n"
                      f"output: {{runs_dir: {tmp_path / 'runs'}}}\n")
    taken = tmp_path / "runs" / "lr-find-r"
    taken.mkdir(parents=True)
    (taken / "keep.txt").write_text("mine")
    env = {"OMP_NUM_THREADS": "1"}
    done = run_cli("lr-find", recipe, "--steps", "30", "--progress", "none", env=env)
    assert done.returncode == 0, done.stderr
    assert "--set optimizer.lr=" in done.stdout
    assert (taken / "keep.txt").read_text() == "mine" and sorted(os.listdir(taken)) == ["keep.txt"]
    assert (tmp_path / "runs" / "lr-find-r-2" / "lr_find.png").is_file()
    bad = run_cli("lr-find", recipe, "--min", "1", "--max", "0.5", env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--min" in bad.stderr
