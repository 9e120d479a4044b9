"""A run that cannot start leaves nothing behind, and the environment's failures are one line
(issue 12, items 7 and 8)."""
import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from danlu import _rundir
from danlu.cli import main
from danlu.training import _checkpoint as ck

RECIPE = ("data: {source: sklearn, name: iris}\nmodel: {kind: mlp, hidden: [8]}\n"
          "train: {epochs: 1, batch_size: 32}\noutput: {progress: none}\n")


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- item 8: a start that fails leaves nothing ------------------------------------------------

# errors that are only found once the model, loss and optimizer are built from the data
LATE_ERRORS = [["model.kind=cnn"], ["train.early_stopping.monitor=val_r2"], ["model.hidden=[-5]"]]


@pytest.mark.parametrize("overrides", LATE_ERRORS)
def test_a_recipe_error_leaves_no_run_and_the_same_run_dir_then_works(recipe, tmp_path, overrides, capsys):
    run = tmp_path / "deep" / "run"
    sets = [a for item in overrides for a in ("--set", item)]
    assert main(["train", str(recipe), "--run-dir", str(run), *sets]) == 2
    one_line_error(capsys)
    assert not (tmp_path / "deep").exists()
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 0
    assert (run / "summary.json").is_file()


def test_a_folder_that_existed_empty_is_left_empty(recipe, tmp_path, capsys):
    run = tmp_path / "given"
    run.mkdir()
    assert main(["train", str(recipe), "--run-dir", str(run), "--set", "model.kind=cnn"]) == 2
    one_line_error(capsys)
    assert run.is_dir() and list(run.iterdir()) == []


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission denied")])
@pytest.mark.parametrize("existed", [False, True])
def test_a_failure_while_the_run_is_created_removes_what_was_made(recipe, tmp_path, monkeypatch, capsys, code,
                                                                  words, existed):
    run = tmp_path / "a" / "run"
    if existed:
        run.mkdir(parents=True)
    write = ck.atomic_write_text

    def failing(path, text):
        if Path(path).name == "recipe.yaml":
            raise OSError(code, "injected", str(path))
        write(path, text)

    monkeypatch.setattr(ck, "atomic_write_text", failing)
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 2
    assert words in one_line_error(capsys)
    if existed:
        assert tree(tmp_path / "a") == ["run"]        # kept, and empty again
    else:
        assert not (tmp_path / "a").exists()          # the folders this run made are gone
    monkeypatch.undo()
    assert main(["train", str(recipe), "--run-dir", str(run)]) == 0


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied")])
def test_a_failure_to_make_the_folder_is_one_line(recipe, tmp_path, monkeypatch, capsys, code, words):
    def failing(folder: Path, *args, **kwargs):
        raise OSError(code, "injected", str(folder))

    monkeypatch.setattr(_rundir.Path, "mkdir", failing)
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "x" / "run")]) == 2
    err = one_line_error(capsys)
    assert words in err and str(tmp_path / "x") in err
    monkeypatch.undo()
    assert tree(tmp_path) == ["r.yaml"]


# -- item 7: one line for places that cannot be written ----------------------------------------

def test_runs_dir_that_is_a_file(recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    assert main(["train", str(recipe)]) == 2
    err = one_line_error(capsys)
    assert "runs: is a file" in err and "output.runs_dir" in err
    assert (tmp_path / "runs").read_text() == "not a folder"


def test_run_dir_below_a_file(recipe, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "f" / "sub" / "run")]) == 2
    assert "is a file" in one_line_error(capsys)
    assert (tmp_path / "f").read_text() == "x"


def test_run_dir_that_is_a_file(recipe, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "f"), "--overwrite"]) == 2
    assert "is a file" in one_line_error(capsys)
    assert (tmp_path / "f").read_text() == "x"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finished")
    (tmp / "r.yaml").write_text(RECIPE)
    assert main(["train", str(tmp / "r.yaml"), "--run-dir", str(tmp / "run")]) == 0
    rows = tmp / "rows.csv"
    rows.write_text("sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n")
    return tmp / "run", rows


def test_predict_output_in_a_place_that_cannot_hold_it(finished_run, tmp_path, capsys):
    run, rows = finished_run
    (tmp_path / "f").write_text("x")
    assert main(["predict", str(run), str(rows), "-o", str(tmp_path / "f" / "out.csv")]) == 2
    assert "is a file" in one_line_error(capsys)
    (tmp_path / "d").mkdir()
    assert main(["predict", str(run), str(rows), "-o", str(tmp_path / "d")]) == 2
    assert "is a folder" in one_line_error(capsys)
    assert tree(tmp_path) == ["d", "f"]


def test_predict_write_failure_leaves_nothing(finished_run, tmp_path, monkeypatch, capsys):
    run, rows = finished_run
    out = tmp_path / "new" / "out.csv"

    def full(path, text):   # a temporary file is begun, then the disk is full
        Path(path).with_name(f".{Path(path).name}.tmp").write_text(text[:3])
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ck, "atomic_write_text", full)
    assert main(["predict", str(run), str(rows), "-o", str(out)]) == 2
    assert "no space left" in one_line_error(capsys)
    assert tree(tmp_path) == []


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (tests run as root, so chmod would not stop a write); skipped where
    mounting is not permitted."""
    folder = tmp_path / "ro"
    folder.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("mounting a read-only tmpfs is not permitted here")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


def test_read_only_places_are_one_line(read_only, recipe, finished_run, capsys):
    run, rows = finished_run
    assert main(["train", str(recipe), "--run-dir", str(read_only / "run")]) == 2
    err = one_line_error(capsys)
    assert "read-only" in err and str(read_only / "run") in err
    assert main(["predict", str(run), str(rows), "-o", str(read_only / "out.csv")]) == 2
    assert "read-only" in one_line_error(capsys)
    assert main(["quantize", str(run), "-o", str(read_only / "q"), "--progress", "none"]) == 2
    assert "read-only" in one_line_error(capsys)
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("verb", ["train", "resume"])
def test_a_full_disk_during_the_run_is_one_line_and_keeps_the_run(recipe, tmp_path, monkeypatch, capsys, verb):
    run = tmp_path / "run"
    if verb == "resume":
        assert main(["train", str(recipe), "--run-dir", str(run)]) == 0
        (run / "summary.json").unlink()   # as if stopped before its first checkpoint
        shutil.rmtree(run / "checkpoints")
    capsys.readouterr()

    def full(snap):
        raise OSError(errno.ENOSPC, "No space left on device", str(snap.root))

    monkeypatch.setattr(ck, "write_snapshot", full)   # every checkpoint write, foreground or background
    args = ["train", str(recipe), "--run-dir", str(run)] if verb == "train" else ["resume", str(run)]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "no space left" in err and f"danlu resume {run}" in err
    assert (run / "recipe.yaml").is_file()   # the run had started: it stays, to be resumed
    monkeypatch.undo()
    assert main(["resume", str(run)]) == 0
