"""Write faults at every write site of checkpoints and of the final model: a full disk (ENOSPC), a
read-only disk (EROFS), a refused permission (EACCES) or a SIGKILL in the middle of a write leave
the run's previous state loadable, nothing half-written behind, and one line (exit 2) for the user;
`danlu resume` then finishes the run bit-identical to a run that was never interrupted."""
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import danlu
from danlu import _integrity as integrity
from danlu.cli import main
from danlu.errors import UserError
from danlu.recipe import Recipe
from danlu.training import _checkpoint as ck

RECIPE = {"seed": 4, "data": {"source": "sklearn", "name": "iris"}, "model": {"kind": "mlp", "hidden": [16]},
          "optimizer": {"kind": "adamw", "lr": 0.01}, "train": {"epochs": 3, "batch_size": 32},
          "checkpoint": {"every_epochs": 1, "keep_last": 3}, "output": {"progress": "none"}}
ROOT = Path(__file__).resolve().parents[2]


def _recipe(**changes):
    return Recipe.from_dict({**RECIPE, **changes})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same recipe, never interrupted."""
    return danlu.train(_recipe(), tmp_path_factory.mktemp("reference") / "run").path


def _assert_same_as(reference, run):
    assert (run / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert integrity.read_json(run / "summary.json")["test"] == integrity.read_json(reference / "summary.json")["test"]


def _leftovers(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*")
                  if p.name.startswith((".tmp-", ".old-")) or p.name.endswith(".tmp"))


class Fault:
    """Make the ``nth`` call of ``module.name`` whose path argument matches ``match`` fail with
    ``code`` (after writing half a file, where the call writes one)."""

    def __init__(self, monkeypatch, module, name, match, code, nth=1, arg=0):
        self.real, self.match, self.code, self.nth, self.arg, self.seen = getattr(module, name), match, code, nth, arg, 0
        self.half_file = name != "replace"   # a rename writes no data
        monkeypatch.setattr(module, name, self)

    def __call__(self, *args, **kwargs):
        path = Path(args[self.arg])
        if self.match(path):
            self.seen += 1
            if self.seen == self.nth:
                if self.half_file:
                    path.write_bytes(b"\0" * 100)   # half a file, as a full disk leaves it
                raise OSError(self.code, os.strerror(self.code), str(path))
        return self.real(*args, **kwargs)


# where: (module, function, which path, which call, path argument)
SITES = {
    "checkpoint weights": (ck, "save_tensors", lambda p: p.parent.name.startswith(".tmp-step") and
                           p.name == "model.safetensors", 2, 0),
    "checkpoint state tensors": (ck, "save_tensors", lambda p: p.name == "state.safetensors", 2, 0),
    "checkpoint state.json": (ck, "_fsync_file", lambda p: p.name == "state.json", 2, 0),
    "checkpoint manifest": (ck, "_fsync_file", lambda p: p.name == "manifest.json", 2, 0),
    "checkpoint rename": (os, "replace", lambda p: p.name.startswith(".tmp-step"), 2, 0),
    "final weights": (ck, "save_tensors", lambda p: p.name == ".model.safetensors.tmp", 1, 0),
    "final model.json": (os, "replace", lambda p: p.name == ".model.json.tmp", 1, 0),
    "final summary": (os, "replace", lambda p: p.name == ".summary.json.tmp", 1, 0),
    "run manifest": (os, "replace", lambda p: p.name == ".manifest.json.tmp", 12, 0),
}
CODES = [errno.ENOSPC, errno.EROFS, errno.EACCES]
WORDS = {errno.ENOSPC: "space", errno.EROFS: "read-only", errno.EACCES: "permission"}


@pytest.mark.parametrize("site", sorted(SITES))
def test_a_refused_write_leaves_the_previous_state_and_resume_is_bit_identical(site, reference, tmp_path,
                                                                               monkeypatch):
    module, name, match, nth, arg = SITES[site]
    code = CODES[sorted(SITES).index(site) % len(CODES)]
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        fault = Fault(patch, module, name, match, code, nth, arg)
        with pytest.raises(UserError) as caught:
            danlu.train(_recipe(), run)
    assert fault.seen >= nth, "the fault was not reached"
    message = str(caught.value)
    assert "\n" not in message and str(run) in message and WORDS[code] in message.lower()
    assert _leftovers(run) == []
    done = ck.list_checkpoints(run / "checkpoints")
    assert done, "the checkpoints written before the fault are kept"
    ck.read_checkpoint(done[-1])                          # the previous state still loads
    assert not (run / "summary.json").exists() or site == "run manifest"
    resumed = danlu.resume(run) if not (run / "summary.json").exists() else danlu.resume(run, done[-1].name)
    assert resumed.summary["run"]["epochs"] == 3
    _assert_same_as(reference, run)


def test_a_full_disk_mid_checkpoint_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(_recipe().to_yaml())
    Fault(monkeypatch, ck, "save_tensors", lambda p: p.name == "state.safetensors", errno.ENOSPC, nth=2)
    assert main(["train", str(recipe), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("danlu: error: ") and len(err.splitlines()) == 1, err
    assert "space" in err.lower()
    assert [p.name for p in ck.list_checkpoints(tmp_path / "run" / "checkpoints")] == ["step-00000004"]


# ---------------------------------------------------------------------------------------------
# A SIGKILL between the steps of a write
# ---------------------------------------------------------------------------------------------

def _train_killed(recipe_path, run, point):
    env = {**os.environ, "DANLU_KILL_AT": point, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "danlu", "train", str(recipe_path), "--run-dir", str(run)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("point", ["before_replace/model.safetensors:1", "after_replace/summary.json:1"])
def test_a_kill_inside_the_final_writes_then_resume_is_bit_identical(point, reference, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(_recipe().to_yaml())
    run = tmp_path / "run"
    proc = _train_killed(recipe, run, point)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ck.read_checkpoint(ck.list_checkpoints(run / "checkpoints")[-1])
    if point.startswith("after_replace"):
        # killed after summary.json was renamed into place, before its checksum became its own: the
        # manifest still accepts it (pending), so the finished run loads as it is
        assert "pending" in integrity.read_manifest(run)["files"]["summary.json"]
        assert danlu.evaluate(run, "test")["test"] == integrity.read_json(reference / "summary.json")["test"]
    else:
        assert not (run / "summary.json").exists()
    danlu.resume(run)
    _assert_same_as(reference, run)


# ---------------------------------------------------------------------------------------------
# A real full disk: a small tmpfs (needs root and mount; skipped elsewhere)
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


class FillDisk:
    """After the checkpoint of epoch ``epoch`` (callbacks given to train run after the
    checkpointer), fill the disk but for ``spare`` bytes."""

    def __init__(self, filler: Path, epoch: int, spare: int):
        self.filler, self.epoch, self.spare = filler, epoch, spare

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            ck.wait_for_writes()   # the epoch's checkpoint is written on a background thread: on disk first
            free = os.statvfs(self.filler.parent).f_bavail * os.statvfs(self.filler.parent).f_frsize
            with open(self.filler, "wb") as fh:
                fh.write(b"\0" * max(0, free - self.spare))


@pytest.mark.parametrize("epoch,where", [(1, "checkpoint"), (3, "final model")])
def test_a_real_full_disk_then_resume_is_bit_identical(small_disk, tmp_path, epoch, where):
    big = _recipe(model={"kind": "mlp", "hidden": [256, 256]})
    reference = danlu.train(big, tmp_path / "reference").path
    run = small_disk / "run"
    filler = small_disk / "filler"
    with pytest.raises(UserError, match="space"):
        danlu.train(big, run, callbacks=[FillDisk(filler, epoch, spare=64 * 1024)])
    assert _leftovers(run) == []
    assert len(ck.list_checkpoints(run / "checkpoints")) == epoch
    filler.unlink()
    danlu.resume(run)
    _assert_same_as(reference, run)
