"""--overwrite replaces only a folder danlu created, never the user's folders; run names stay
inside output.runs_dir (issue 12, items 1 and 2)."""
import hashlib
import json
from pathlib import Path

import pytest

from danlu import Recipe
from danlu._rundir import MARKER, lock_run, read_marker
from danlu.cli import main
from danlu.errors import RecipeError

RECIPE = ("data: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [8]}\n"
          "train: {epochs: 1, batch_size: 32}\noutput: {progress: none}\n")


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` (relative path -> sha256), hidden ones included."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def project(tmp_path):
    """A user's project folder: a recipe beside files that are not danlu's."""
    p = tmp_path / "project"
    (p / "data").mkdir(parents=True)
    (p / "recipe.yaml").write_text(RECIPE)
    (p / "notes.md").write_text("my notes\n")
    (p / "data" / "rows.bin").write_bytes(bytes(range(256)))
    return p


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_overwrite_never_deletes_an_unmarked_user_folder(project, capsys):
    before = snapshot(project)
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(project), "--overwrite"]) == 2
    err = one_line_error(capsys)
    assert "not created by danlu" in err and "delete it by hand" in err
    assert snapshot(project) == before


@pytest.mark.parametrize("where", ["cwd", "parent", "home"])
def test_overwrite_never_touches_the_working_directory_its_parents_or_home(project, where, monkeypatch,
                                                                          capsys):
    # even a folder that carries danlu's marker is refused when it is one of these
    (project / MARKER).write_text(json.dumps({"run_id": "x" * 32}))
    (project / "sub").mkdir()
    before = snapshot(project)
    run_dir = str(project)
    if where == "cwd":
        monkeypatch.chdir(project)
        run_dir = "."
    elif where == "parent":
        monkeypatch.chdir(project / "sub")
        run_dir = ".."
    else:
        monkeypatch.setenv("HOME", str(project))
        monkeypatch.chdir(project.parent)
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", run_dir, "--overwrite"]) == 2
    err = one_line_error(capsys)
    assert "never replaces" in err
    assert {"cwd": "working directory", "parent": "above the working directory", "home": "home"}[where] in err
    assert snapshot(project) == before


def test_an_existing_run_is_refused_without_overwrite_and_replaced_with_it(project, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    first = read_marker(run)
    assert first is not None and first["made"] is True
    before = snapshot(run)
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 2
    err = one_line_error(capsys)
    assert "--overwrite" in err and snapshot(run) == before
    capsys.readouterr()
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run), "--overwrite",
                 "--set", "train.epochs=2"]) == 0
    second = read_marker(run)
    assert second["run_id"] != first["run_id"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2   # the new run, not the old one
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # nothing set aside is left


def test_a_run_that_existed_empty_is_replaced_in_place(project, tmp_path):
    run = tmp_path / "given"
    run.mkdir()
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    assert read_marker(run)["made"] is False
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run), "--overwrite"]) == 0
    assert (run / "summary.json").is_file() and (run / MARKER).is_file()


def test_a_failed_overwrite_puts_the_old_run_back(project, tmp_path, monkeypatch, capsys):
    import errno

    from danlu.training import _checkpoint as ck

    run = tmp_path / "run"
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    before = snapshot(run)
    write = ck.atomic_write_text

    def full(path, text):   # the disk fills up while the new run's recipe is written
        if Path(path).name == "recipe.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write(path, text)

    monkeypatch.setattr(ck, "atomic_write_text", full)
    capsys.readouterr()
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run), "--overwrite"]) == 2
    assert "no space left" in one_line_error(capsys)
    assert snapshot(run) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_run_being_written_is_not_replaced(project, tmp_path, capsys):
    import os

    run = tmp_path / "run"
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    before = snapshot(run)
    with lock_run(run):
        capsys.readouterr()
        assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run), "--overwrite"]) == 2
        err = one_line_error(capsys)
    assert f"process {os.getpid()}" in err
    assert snapshot(run) == before


def test_overwrite_through_a_symbolic_link_is_refused(project, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    before = snapshot(run)
    (tmp_path / "link").symlink_to(run)
    capsys.readouterr()
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(tmp_path / "link"), "--overwrite"]) == 2
    assert "symbolic link" in one_line_error(capsys)
    assert snapshot(run) == before and (tmp_path / "link").is_symlink()


def test_overwrite_keeps_a_data_file_the_run_reads(tmp_path, capsys):
    run = tmp_path / "run"
    recipe = tmp_path / "r.yaml"
    rows = "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(60))
    recipe.write_text(RECIPE.replace("{source: sklearn, name: iris}", f"{{source: csv, path: {run / 'd.csv'}}}"))
    run.mkdir()
    (run / "d.csv").write_text("a,b,y\n" + rows + "\n")
    (run / MARKER).write_text(json.dumps({"run_id": "y" * 32}))
    assert main(["train", str(recipe), "--run-dir", str(run), "--overwrite"]) == 2
    assert "reads" in one_line_error(capsys)
    assert (run / "d.csv").is_file()


def test_ensemble_quantize_and_distill_folders_follow_the_same_rule(project, tmp_path, capsys):
    from danlu.combine import ensemble
    from danlu.errors import UserError

    before = snapshot(project)
    with pytest.raises(UserError, match="not created by danlu"):
        ensemble(["no-such-run"], "soft-vote", project, overwrite=True, progress=False)
    run = tmp_path / "run"
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["quantize", str(run), "-o", str(project), "--overwrite", "--progress", "none"]) == 2
    assert "not created by danlu" in one_line_error(capsys)
    out = tmp_path / "q"
    assert main(["quantize", str(run), "-o", str(out), "--progress", "none"]) == 0
    first = read_marker(out)["run_id"]
    assert main(["quantize", str(run), "-o", str(out), "--overwrite", "--progress", "none"]) == 0
    assert read_marker(out)["run_id"] != first
    capsys.readouterr()
    alone = tmp_path / "student-alone"   # distill trains the student alone into <run-dir>-alone
    alone.mkdir()
    (alone / "mine.txt").write_text("keep me")
    assert main(["distill", "--student", str(project / "recipe.yaml"), "--teacher", str(run), "--run-dir",
                 str(tmp_path / "student"), "--overwrite", "--progress", "none"]) == 2
    assert "not created by danlu" in one_line_error(capsys)
    assert (alone / "mine.txt").read_text() == "keep me" and not (tmp_path / "student").exists()
    assert snapshot(project) == before


def test_finetune_follows_the_same_rule(project, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(project / "recipe.yaml"), "--run-dir", str(run)]) == 0
    recipe = tmp_path / "ft.yaml"
    recipe.write_text(RECIPE + f"base: {{run: {run}, mode: probe}}\n")
    before = snapshot(project)
    capsys.readouterr()
    assert main(["finetune", str(recipe), "--run-dir", str(project), "--overwrite"]) == 2
    assert "not created by danlu" in one_line_error(capsys)
    assert snapshot(project) == before


# -- names -------------------------------------------------------------------------------------

BAD_NAMES = ["../../x", "../x", "/tmp/x", "a/b", "a\\b", "..", ".", "", "   ", "a\x00b", "x\ny"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_run_name_may_not_leave_runs_dir(name):
    with pytest.raises(RecipeError, match="plain folder name"):
        Recipe.from_dict({"name": name, "data": {"source": "sklearn", "name": "iris"}})


@pytest.mark.parametrize("name", ["../../escaped", "/abs/escaped", "sub/escaped"])
def test_cli_refuses_a_traversing_name_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (work / "r.yaml").write_text(RECIPE)
    assert main(["train", "r.yaml", "--set", f"name={name}"]) == 2
    assert "plain folder name" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "r.yaml"]


@pytest.mark.parametrize("name", ["iris-1_a.b", "丹炉", "run.v2"])
def test_plain_names_are_kept_inside_runs_dir(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(RECIPE)
    assert main(["train", "r.yaml", "--set", f"name={name}", "--set", "output.runs_dir=out"]) == 0
    assert main(["train", "r.yaml", "--set", f"name={name}", "--set", "output.runs_dir=out"]) == 0
    made = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert made == sorted([name, f"{name}-2"])   # the default path is numbered, never replaced
    assert all(read_marker(tmp_path / "out" / m) for m in made)
