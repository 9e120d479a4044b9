"""A file named index.sqlite is danlu's only when danlu created it (issue 12, finding F5).

The runs index lives in the runs folder a run was created in, never in a folder further up; a
file of that name that danlu did not create — the user's notes, another program's database, a
link — is left byte for byte, and the run (and ``danlu runs``) still succeed; an index of
danlu's that is damaged is moved aside, not deleted, and rebuilt from the run folders.
"""
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

import danlu
from danlu import _rundir
from danlu._index import (APPLICATION_ID, COLUMNS, INDEX_FILE, ForeignIndex, index_root_for, index_run,
                          list_runs, owner_of)
from danlu.cli import main

USER_BYTES = b"the user's own notes, in a file that happens to be called index.sqlite\n"
RECIPE = {"name": "tiny", "seed": 0, "data": {"source": "sklearn", "name": "iris"},
          "model": {"kind": "mlp", "hidden": [8]}, "optimizer": {"kind": "adam", "lr": 0.01},
          "train": {"epochs": 2, "batch_size": 32, "early_stopping": {"enabled": False}},
          "checkpoint": {"every_epochs": 1, "keep_last": 2}, "output": {"progress": "none"},
          "monitors": {"gradients": {"enabled": False}}}


class _Interrupt:
    """Stops training after the first epoch (and its checkpoint), as Ctrl-C would."""

    def on_epoch_end(self, state):
        if state.epoch >= 1:
            raise KeyboardInterrupt


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished run, copied by the tests that only need a run folder."""
    base = tmp_path_factory.mktemp("index_safety")
    return danlu.train(RECIPE, base / "made" / "run").path


def _recipe_file(folder: Path, runs: Path) -> Path:
    import yaml

    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "output": {**RECIPE["output"], "runs_dir": str(runs)}}))
    return path


def _indexed(root: Path) -> set:
    with sqlite3.connect(root / INDEX_FILE) as conn:
        return {p for (p,) in conn.execute("SELECT path FROM runs")}


def _warnings(err: str) -> list:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    return [line for line in lines if line.startswith("danlu: warning:")]


def test_a_users_file_above_the_runs_folder_is_left_alone_by_resume_train_and_runs(tmp_path, capsys):
    # F5: ROOT/index.sqlite is the user's; the runs are in ROOT/runs, which has no index yet
    user = tmp_path / INDEX_FILE
    user.write_bytes(USER_BYTES)
    runs = tmp_path / "runs"
    recipe = _recipe_file(tmp_path, runs)
    with pytest.raises(KeyboardInterrupt):
        danlu.train(RECIPE, runs / "cut", callbacks=[_Interrupt()])
    assert not (runs / INDEX_FILE).exists()

    assert main(["resume", str(runs / "cut")]) == 0
    assert (runs / "cut" / "summary.json").is_file()
    assert user.read_bytes() == USER_BYTES
    assert owner_of(runs / INDEX_FILE) == "danlu" and _indexed(runs) == {"cut"}

    assert main(["train", str(recipe)]) == 0                # the default folder: runs/tiny
    assert main(["runs", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert {line.split()[1] for line in out.strip().splitlines()[-2:]} == {"cut", "tiny"}
    assert user.read_bytes() == USER_BYTES
    assert _indexed(runs) == {"cut", "tiny"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [INDEX_FILE, "recipe.yaml", "runs"]


def test_a_users_file_in_the_runs_folder_is_left_alone_and_the_run_still_succeeds(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    user = runs / INDEX_FILE
    user.write_bytes(USER_BYTES)
    recipe = _recipe_file(tmp_path, runs)
    capsys.readouterr()
    assert main(["train", str(recipe), "--run-dir", str(runs / "a")]) == 0
    assert (runs / "a" / "summary.json").is_file()
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and str(user) in warned[0] and "not danlu's runs index" in warned[0]

    for extra in ([], ["--rebuild"]):
        assert main(["runs", "--runs-dir", str(runs), *extra]) == 0
        res = capsys.readouterr()
        assert [line.split()[1] for line in res.out.strip().splitlines()[2:]] == ["a"]
        assert len(_warnings(res.err)) == 1
    assert user.read_bytes() == USER_BYTES
    assert sorted(p.name for p in runs.iterdir()) == ["a", INDEX_FILE]


def _foreign_sqlite(path: Path, kind: str) -> None:
    conn = sqlite3.connect(path)
    if kind == "another table":     # a database of the user's with its own table called runs
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, who TEXT)")
        conn.execute("INSERT INTO runs (who) VALUES ('mine')")
    else:                           # danlu's very table, but in another program's file
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID + 1}")
        conn.execute("PRAGMA user_version = 1")
        conn.execute(f"CREATE TABLE runs ({', '.join(COLUMNS)})")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("kind", ["another table", "another application", "empty file", "link", "folder"])
def test_a_foreign_file_named_like_the_index_is_never_written(finished, tmp_path, kind, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs / "a")
    index = runs / INDEX_FILE
    target = tmp_path / "elsewhere.txt"
    if kind in ("another table", "another application"):
        _foreign_sqlite(index, kind)
    elif kind == "empty file":
        index.write_bytes(b"")
    elif kind == "link":
        target.write_bytes(USER_BYTES)
        index.symlink_to(target)
    else:
        index.mkdir()
        (index / "keep.txt").write_bytes(USER_BYTES)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in [index, target, index / "keep.txt"] if p.is_file()}

    assert owner_of(index) == "foreign"
    with pytest.raises(ForeignIndex, match="not danlu's runs index"):
        index_run(runs / "a")
    assert [row["path"] for row in list_runs(runs, rebuild=True)] == ["a"]
    assert len(_warnings(capsys.readouterr().err)) == 1

    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in before}
    assert after == before
    assert index.is_symlink() == (kind == "link")
    assert sorted(p.name for p in runs.iterdir()) == ["a", INDEX_FILE]


def _damage(path: Path, where: str) -> bytes:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    if where == "schema page":      # the header stays (it says the file is danlu's), the rest is garbage
        data[100:] = b"not a database at all " * ((len(data) - 100) // 22 + 1)
    else:                           # the page of the runs table
        data[page:2 * page] = b"\xff" * page
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("where", ["schema page", "table page"])
def test_a_damaged_index_of_danlus_is_moved_aside_and_rebuilt(finished, tmp_path, where, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs / "a")
    shutil.copytree(finished, runs / "b")
    assert {row["path"] for row in list_runs(runs)} == {"a", "b"}
    damaged = _damage(runs / INDEX_FILE, where)

    assert {row["path"] for row in list_runs(runs)} == {"a", "b"}
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and "damaged" in warned[0]
    assert (runs / f"{INDEX_FILE}.damaged").read_bytes() == damaged      # set aside, not deleted
    assert owner_of(runs / INDEX_FILE) == "danlu" and _indexed(runs) == {"a", "b"}
    with sqlite3.connect(runs / INDEX_FILE) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_index_from_before_the_application_id_is_still_danlus(finished, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs / "a")
    conn = sqlite3.connect(runs / INDEX_FILE)   # as danlu wrote it before: format 1, the runs table, no id
    conn.execute(f"CREATE TABLE runs ({', '.join(f'{c} TEXT PRIMARY KEY' if c == 'path' else c for c in COLUMNS)})")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (path, stamp) VALUES ('gone', '-')")
    conn.commit()
    conn.close()
    assert owner_of(runs / INDEX_FILE) == "danlu"
    assert [row["path"] for row in list_runs(runs)] == ["a"]
    with sqlite3.connect(runs / INDEX_FILE) as conn:
        assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    assert sorted(p.name for p in runs.iterdir()) == ["a", INDEX_FILE]


def test_the_index_is_the_runs_folders_never_one_further_up(finished, tmp_path):
    # an index of danlu's higher up (here: made by listing tmp_path) is not the run's either
    shutil.copytree(finished, tmp_path / "old")
    list_runs(tmp_path)
    above = (tmp_path / INDEX_FILE).read_bytes()
    runs = tmp_path / "runs"
    shutil.copytree(finished, runs / "a")
    assert index_run(runs / "a") == (runs / INDEX_FILE).resolve()
    assert (tmp_path / INDEX_FILE).read_bytes() == above
    # a run inside a folder danlu made to hold runs (cv, tune) belongs to the runs folder holding it
    _rundir.plan_dir(runs / "cv-x", flag="--out", kind="cv").create()
    shutil.copytree(finished, runs / "cv-x" / "fold-1")
    assert index_root_for(runs / "cv-x" / "fold-1") == runs.resolve()
    index_run(runs / "cv-x" / "fold-1")
    assert _indexed(runs) == {"a", "cv-x/fold-1"}
    # ... but a folder of the user's is no runs folder of danlu's: its runs are indexed in it
    shutil.copytree(finished, runs / "mine" / "b")
    assert index_root_for(runs / "mine" / "b") == (runs / "mine").resolve()
    assert not os.path.lexists(runs / "cv-x" / INDEX_FILE)


def test_runs_are_listed_when_no_index_can_be_written(finished, tmp_path, monkeypatch, capsys):
    import errno

    from danlu import _index

    runs = tmp_path / "runs"
    shutil.copytree(finished, runs / "a")

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(_index, "_create", read_only)
    assert [row["path"] for row in list_runs(runs)] == ["a"]
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and "Read-only file system" in warned[0]
    assert sorted(p.name for p in runs.iterdir()) == ["a"]
